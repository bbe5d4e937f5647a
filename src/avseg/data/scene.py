"""Procedural audio-visual scenes: the content of the synthetic benchmark.

Each object class pairs a visual identity (shape, colour, texture) with a
sound signature (pitch, harmonic timbre, noise band, rhythm). A scene places
a few objects on a textured background; every object sounds or stays silent
independently in each second, and the ground truth for frame ``l`` is the
union of the objects that sound during second ``l``. Every class is silent
about half the time it is visible, so a model that segments "objects that
usually sound" cannot score well: the audio must decide.

Everything is a pure function of a :class:`numpy.random.Generator`, so a seed
reproduces a dataset bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUDIO_RATE = 16000


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
    """bool ``(seconds,)``."""
    gain: float


@dataclass
class Scene:
    objects: list[SceneObject]
    background: np.ndarray
    """float32 ``(H, W, 3)``."""
    seconds: int
    size: int

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
) -> Scene:
    """Sample a scene.

    Args:
        single_source: exactly one object sounds, for the whole clip (S4).
        silent: nothing sounds at all (a clip whose every mask is empty).
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
    if single_source:
        objects[int(rng.integers(num_objects))].sounding[:] = True
    elif not silent:
        for obj in objects:
            # A persistent on/off process with a stationary probability of 1/2.
            state = rng.random() < 0.5
            for second in range(seconds):
                obj.sounding[second] = state
                if rng.random() < 0.3:
                    state = not state
    return Scene(objects, _background(rng, size), seconds, size)


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


def render_frame(scene: Scene, second: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame shown at ``second`` and each object's visible pixels.

    Returns ``(image uint8 (H,W,3), visible bool (objects,H,W))``. Objects later
    in the list are drawn on top and hide what lies under them.
    """
    size = scene.size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = scene.background.copy()
    visible = np.zeros((len(scene.objects), size, size), dtype=bool)
    for k, obj in enumerate(scene.objects):
        cx, cy = _bounce(obj.center + obj.velocity * second, obj.radius, size)
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

    Each sounding segment fades in and out over 10 ms so seconds do not click.
    """
    num_samples = scene.seconds * AUDIO_RATE
    mix = rng.normal(0.0, noise_rms, num_samples)
    fade = np.ones(AUDIO_RATE)
    ramp = np.linspace(0.0, 1.0, AUDIO_RATE // 100)
    fade[: len(ramp)], fade[-len(ramp) :] = ramp, ramp[::-1]
    for obj in scene.objects:
        if not obj.sounding.any():
            continue
        gate = np.concatenate([fade * on for on in obj.sounding])
        mix += 0.12 * obj.gain * gate * _signature(obj, rng, num_samples)
    return np.clip(mix, -1.0, 1.0).astype(np.float32)
