"""Procedural audio-visual scenes: the content of the synthetic benchmark.

Each object class pairs a visual identity (shape, colour, texture) with a
sound signature (pitch, harmonic timbre, noise band, rhythm). A scene places
a few objects on a textured background; every object sounds or stays silent
independently in each second, and the ground truth for frame ``l`` is the
union of the objects that sound during second ``l``. Every class is silent
about half the time it is visible, so a model that segments "objects that
usually sound" cannot score well: the audio must decide.

Time is continuous: :func:`render_frame` draws the scene at any instant ``t``
(seconds). A plain scene is piecewise constant, as the official layouts are:
objects move and sounds switch only at whole seconds, so the frame at ``t``
is the frame of second ``floor(t)``. A *motion* scene (``avseg synth
--motion``) moves its objects continuously and ``MOTION_SPEEDUP`` times
faster, and each object sounds over intervals that start and stop at
arbitrary instants (alternating on/off durations drawn from an exponential
with mean ``MEAN_RUN_S``, at least ``MIN_RUN_S``, so a switch rarely falls on
a second boundary); its sounding state at ``t`` is whether ``t`` lies in one
of the intervals.

Everything is a pure function of a :class:`numpy.random.Generator`, so a seed
reproduces a dataset bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUDIO_RATE = 16000
MOTION_SPEEDUP = 6.0
"""Motion scenes: velocity std 0.18 of the frame per second (plain: 0.03), so an object moves about
its own radius within a second and a mask held over the second misses much of it."""
MEAN_RUN_S, MIN_RUN_S = 1.5, 0.3
"""Motion scenes: mean and shortest duration of one sounding or silent run, in seconds."""


@dataclass(frozen=True)
class ObjectClass:
    name: str
    shape: str
    color: tuple[int, int, int]
    texture: str
    pitch_hz: float
    timbre: str
    """``harmonic`` (all partials, 1/k), ``odd`` (odd partials), ``pure`` or ``noise`` (band around the pitch)."""
    rhythm_hz: float
    """Amplitude-modulation rate; 0 is a steady sound."""


CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("bell", "circle", (230, 60, 50), "solid", 880.0, "pure", 2.0),
    ObjectClass("drum", "square", (60, 120, 230), "stripes", 110.0, "noise", 4.0),
    ObjectClass("flute", "triangle", (240, 200, 40), "solid", 660.0, "pure", 0.0),
    ObjectClass("guitar", "diamond", (150, 80, 200), "checker", 196.0, "harmonic", 3.0),
    ObjectClass("dog", "ring", (60, 190, 90), "solid", 440.0, "odd", 5.0),
    ObjectClass("siren", "cross", (240, 130, 40), "stripes", 1200.0, "pure", 1.0),
    ObjectClass("engine", "hexagon", (120, 120, 120), "dots", 70.0, "odd", 0.0),
    ObjectClass("bird", "ellipse", (40, 200, 210), "dots", 2400.0, "harmonic", 6.0),
)


@dataclass
class SceneObject:
    cls: ObjectClass
    class_index: int
    center: np.ndarray
    velocity: np.ndarray
    radius: float
    sounding: np.ndarray
    """bool ``(seconds,)``: sounding in second ``l`` (motion scenes: at that second's sampling instant)."""
    gain: float
    intervals: tuple[tuple[float, float], ...] | None = None
    """Motion scenes: the ``[start, end)`` times (seconds) in which the object sounds; None for plain scenes."""

    def sounding_at(self, time: float) -> bool:
        if self.intervals is None:
            return bool(self.sounding[min(int(time), len(self.sounding) - 1)])
        return any(start <= time < end for start, end in self.intervals)


@dataclass
class Scene:
    objects: list[SceneObject]
    background: np.ndarray
    """float32 ``(H, W, 3)``."""
    seconds: int
    size: int
    motion: bool = False

    @property
    def sounding(self) -> np.ndarray:
        """bool ``(seconds, objects)``."""
        return np.stack([o.sounding for o in self.objects], axis=1)


def make_scene(
    rng: np.random.Generator,
    size: int,
    seconds: int,
    num_objects: int,
    single_source: bool = False,
    silent: bool = False,
    motion: bool = False,
) -> Scene:
    """Sample a scene.

    Args:
        single_source: exactly one object sounds, for the whole clip (S4).
        silent: nothing sounds at all (a clip whose every mask is empty).
        motion: continuous, faster motion and sounding intervals at arbitrary
            times (see the module doc); its per-second ``sounding`` is left
            empty for :func:`sample_sounding` to fill at the sampling instants.
            A plain scene draws the same random numbers as before this option.
    """
    picks = rng.choice(len(CLASSES), size=num_objects, replace=False)
    objects = []
    for index in picks:
        radius = size * rng.uniform(0.12, 0.2)
        objects.append(
            SceneObject(
                cls=CLASSES[index],
                class_index=int(index),
                center=rng.uniform(radius, size - radius, 2),
                velocity=rng.normal(0.0, size * 0.03, 2),
                radius=radius,
                sounding=np.zeros(seconds, dtype=bool),
                gain=rng.uniform(0.6, 1.0),
            )
        )
    if motion:
        _sample_intervals(rng, objects, seconds, single_source, silent)
    elif single_source:
        objects[int(rng.integers(num_objects))].sounding[:] = True
    elif not silent:
        for obj in objects:
            # A persistent on/off process with a stationary probability of 1/2.
            state = rng.random() < 0.5
            for second in range(seconds):
                obj.sounding[second] = state
                if rng.random() < 0.3:
                    state = not state
    return Scene(objects, _background(rng, size), seconds, size, motion)


def _sample_intervals(rng: np.random.Generator, objects: list[SceneObject], seconds: int, single_source: bool, silent: bool) -> None:
    """Motion scenes: faster objects and sounding intervals with arbitrary on/off times."""
    source = int(rng.integers(len(objects))) if single_source else -1
    for k, obj in enumerate(objects):
        obj.velocity = obj.velocity * MOTION_SPEEDUP
        if single_source or silent:
            obj.intervals = ((0.0, float(seconds)),) if k == source else ()
            continue
        intervals, time, state = [], 0.0, rng.random() < 0.5
        while time < seconds:
            end = min(float(seconds), time + MIN_RUN_S + rng.exponential(MEAN_RUN_S - MIN_RUN_S))
            if state:
                intervals.append((time, end))
            time, state = end, not state
        obj.intervals = tuple(intervals)


def sample_sounding(scene: Scene, times: list[float]) -> None:
    """Motion scenes: per-second ``sounding`` = the state at each second's sampling instant ``times[l]``."""
    for obj in scene.objects:
        obj.sounding = np.array([obj.sounding_at(t) for t in times], dtype=bool)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(40, 200, 3)
    tilt = rng.uniform(-40, 40, 3)
    ramp = np.linspace(-0.5, 0.5, size)[:, None, None]
    noise = rng.normal(0.0, 6.0, (size, size, 1))
    return np.clip(base + tilt * ramp + noise, 0, 255).astype(np.float32)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx**2 + dy**2 < r**2
    if shape == "square":
        return np.maximum(ax, ay) < 0.85 * r
    if shape == "diamond":
        return ax + ay < r
    if shape == "triangle":
        return (dy < 0.8 * r) & (ax < 0.6 * (dy + r))
    if shape == "ring":
        distance = np.sqrt(dx**2 + dy**2)
        return (distance < r) & (distance > 0.55 * r)
    if shape == "cross":
        return ((ax < 0.3 * r) & (ay < r)) | ((ay < 0.3 * r) & (ax < r))
    if shape == "hexagon":
        return np.maximum(0.866 * ax + 0.5 * ay, ay) < 0.9 * r
    if shape == "ellipse":
        return (dx / r) ** 2 + (dy / (0.6 * r)) ** 2 < 1
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, color: np.ndarray, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    period = max(2, int(r / 3))
    if texture == "solid":
        pattern = np.zeros_like(x, dtype=bool)
    elif texture == "stripes":
        pattern = ((x + y) // period) % 2 == 1
    elif texture == "checker":
        pattern = ((x // period) + (y // period)) % 2 == 1
    elif texture == "dots":
        pattern = ((x % period) - period / 2) ** 2 + ((y % period) - period / 2) ** 2 < (period / 3) ** 2
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return np.where(pattern[..., None], color * 0.55, color)


def render_frame(scene: Scene, time: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame shown at ``time`` (seconds) and each object's visible pixels.

    Returns ``(image uint8 (H,W,3), visible bool (objects,H,W))``. Objects later
    in the list are drawn on top and hide what lies under them. A plain scene
    shows the frame of second ``floor(time)``.
    """
    if not scene.motion:
        time = int(time)
    size = scene.size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = scene.background.copy()
    visible = np.zeros((len(scene.objects), size, size), dtype=bool)
    for k, obj in enumerate(scene.objects):
        cx, cy = _bounce(obj.center + obj.velocity * time, obj.radius, size)
        inside = _shape_mask(obj.cls.shape, x - cx, y - cy, obj.radius)
        visible[:k] &= ~inside
        visible[k] = inside
        colour = _texture(obj.cls.texture, np.array(obj.cls.color, dtype=np.float32), x, y, obj.radius)
        image = np.where(inside[..., None], colour, image)
    return np.clip(image, 0, 255).astype(np.uint8), visible


def _bounce(position: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Reflect a position off the frame edges so objects stay in view."""
    low, high = radius, size - radius
    span = high - low
    folded = np.mod(position - low, 2 * span)
    return low + np.where(folded > span, 2 * span - folded, folded)


def _signature(obj: SceneObject, rng: np.random.Generator, num_samples: int) -> np.ndarray:
    t = np.arange(num_samples) / AUDIO_RATE
    cls = obj.cls
    if cls.timbre == "noise":
        spectrum = np.fft.rfft(rng.normal(0.0, 1.0, num_samples))
        freqs = np.fft.rfftfreq(num_samples, 1 / AUDIO_RATE)
        spectrum[(freqs < cls.pitch_hz * 0.5) | (freqs > cls.pitch_hz * 4)] = 0
        tone = np.fft.irfft(spectrum, num_samples)
    else:
        partials = {"pure": [1], "odd": [1, 3, 5, 7], "harmonic": [1, 2, 3, 4, 5]}[cls.timbre]
        tone = sum(np.sin(2 * np.pi * cls.pitch_hz * k * t) / k for k in partials if cls.pitch_hz * k < AUDIO_RATE / 2)
    tone = tone / (np.sqrt(np.mean(tone**2)) + 1e-12)
    if cls.rhythm_hz > 0:
        tone = tone * (0.55 + 0.45 * np.sin(2 * np.pi * cls.rhythm_hz * t))
    return tone


def render_audio(scene: Scene, rng: np.random.Generator, noise_rms: float = 0.005) -> np.ndarray:
    """float32 mono at :data:`AUDIO_RATE`: the sounding objects per second, plus noise.

    Each sounding segment (a second, or a motion scene's interval) fades in
    and out over 10 ms so it does not click.
    """
    num_samples = scene.seconds * AUDIO_RATE
    mix = rng.normal(0.0, noise_rms, num_samples)
    ramp = np.linspace(0.0, 1.0, AUDIO_RATE // 100)
    fade = np.ones(AUDIO_RATE)
    fade[: len(ramp)], fade[-len(ramp) :] = ramp, ramp[::-1]
    for obj in scene.objects:
        if obj.intervals is None:
            if not obj.sounding.any():
                continue
            gate = np.concatenate([fade * on for on in obj.sounding])
        elif obj.intervals:
            gate = _interval_gate(obj.intervals, num_samples, ramp)
        else:
            continue
        mix += 0.12 * obj.gain * gate * _signature(obj, rng, num_samples)
    return np.clip(mix, -1.0, 1.0).astype(np.float32)


def _interval_gate(intervals: tuple[tuple[float, float], ...], num_samples: int, ramp: np.ndarray) -> np.ndarray:
    gate = np.zeros(num_samples)
    for start, end in intervals:
        first, last = round(start * AUDIO_RATE), min(num_samples, round(end * AUDIO_RATE))
        segment = np.ones(last - first)
        edge = min(len(ramp), len(segment) // 2)
        segment[:edge], segment[len(segment) - edge :] = ramp[:edge], ramp[:edge][::-1]
        gate[first:last] = segment
    return gate
