"""Audio perturbations for the preference evaluation.

A model that segments what sounds must change its masks when the sound
changes. These perturbations replace a clip's audio while keeping its frames
and masks:

* ``mute``: all zeros.
* ``wgn{SNR}`` (e.g. ``wgn10``, ``wgn40``): additive white Gaussian noise at
  that signal-to-noise ratio in dB, relative to the clip's own mean power.
  A clip with no signal power (already silent) has no defined SNR and is left
  unchanged.
* ``swap``: the audio of another clip of the same dataset. Clip ``i`` gets
  the audio of clip ``permutation[i]``, where the permutation is a seeded
  random derangement (no clip keeps its own audio), trimmed or zero-padded to
  the clip's length and resampled to its rate.

Negative audio, AVSBench-Robust's conditions (Li et al., arXiv 2502.00358;
``dataset_generation/audio_processing.py`` in ``jiali-home/AVSBench-Robust``):
the clip's own sound is replaced by a sound that its visible objects do not make,
so the right answer is an empty mask.

* ``silence``: all zeros (the official ``AudioSegment.silent``: digital
  silence, the same signal as ``mute``).
* ``noise``: ambient noise at :data:`NOISE_RMS`. The official generator writes
  full-scale white noise; avseg draws, per clip, one source from a
  :class:`NoiseBank`: synthetic *pink* (power ~ 1/f) or *brown* (power ~ 1/f^2)
  noise, shaped from seeded Gaussian noise in the frequency domain, plus the
  noise recordings in ``--noise-dir`` (any file :mod:`avseg.media` can decode,
  cut at a seeded offset, looped when shorter than the clip). Every source is
  scaled to the same RMS so that the condition does not depend on recording
  level.
* ``offscreen``: the audio of another clip of a *different* category (no
  category in common), chosen at random per clip: the official rule
  ("Find videos that don't share categories with current video"). The
  official script compares broad groups of AVSBench's class names (music,
  human, animal, device) and also avoids one "least suitable" group per group;
  avseg compares the categories themselves (a guitar clip may hear a violin),
  since that table only covers AVSBench's names. A clip's categories are
  what sounds in it: the names in ``clip.meta["sounding_labels"]`` (per frame,
  filled by the readers) over all its frames, else ``meta["category"]``. Where
  the reader also knows what is visible (``meta["visible_labels"]``: the
  synthetic benchmark), the donor must not sound like anything visible in the
  clip either: a visible but silent object's own sound is not off-screen audio,
  and a model that segments that object follows the sound. A
  split with one category only cannot be paired and is an error; a split whose
  reader names no category at all (real MS3) cannot run the condition (see
  :func:`offscreen_donors`).

Noise, the swap permutation and the off-screen donors are deterministic given
the seed and the clip index, so every run of an evaluation sees the same
perturbed audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from avseg.audio import resample
from avseg.data.clip import Clip
from avseg.errors import AvsegError, ConfigError

NEGATIVE_CONDITIONS = ("silence", "noise", "offscreen")
"""AVSBench-Robust's negative audio, in the order its paper lists them."""
NOISE_RMS = 0.1
"""Ambient noise level: -20 dBFS RMS, a loud but unclipped background (Gaussian peaks stay under 1)."""
COLOURS = {"pink": 1.0, "brown": 2.0}
"""Synthetic noise colours: the exponent of the power spectrum ``1 / f^exponent``."""

_WGN = re.compile(r"^wgn(-?\d+(?:\.\d+)?)$")


def mute(waveform: np.ndarray) -> np.ndarray:
    return np.zeros_like(waveform)


def white_noise(waveform: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(np.square(waveform, dtype=np.float64))) if waveform.size else 0.0
    if power == 0.0:
        return waveform.copy()
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), waveform.shape)
    return (waveform + noise).astype(np.float32)


def fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(waveform))] = waveform[:length]
    return out


def derangement(count: int, seed: int) -> np.ndarray:
    """A seeded random permutation with no fixed point (identity when ``count < 2``)."""
    if count < 2:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    while True:
        permutation = rng.permutation(count)
        if not np.any(permutation == np.arange(count)):
            return permutation


@dataclass(frozen=True)
class Perturbation:
    name: str

    @classmethod
    def parse(cls, name: str) -> Perturbation:
        name = name.strip().lower()
        if name in ("normal", "mute", "swap", *NEGATIVE_CONDITIONS) or _WGN.match(name):
            return cls(name)
        raise ConfigError(f"unknown audio perturbation {name!r}; use normal, mute, swap, wgnDB (e.g. wgn10), silence, noise or offscreen")

    @property
    def snr_db(self) -> float | None:
        match = _WGN.match(self.name)
        return float(match.group(1)) if match else None


def parse_perturbations(spec: str | Sequence[str]) -> list[Perturbation]:
    """``"mute,wgn10,wgn40,swap"`` -> perturbations (duplicates removed, order kept)."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    seen: dict[str, Perturbation] = {}
    for name in names:
        if name.strip():
            perturbation = Perturbation.parse(name)
            seen.setdefault(perturbation.name, perturbation)
    return list(seen.values())


def coloured_noise(num_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as ``1 / f^exponent`` (1: pink, 2: brown), at :data:`NOISE_RMS`."""
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, max(num_samples, 2)))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = np.inf  # no DC offset
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n=max(num_samples, 2))[:num_samples]
    return scale_to_rms(noise)


def scale_to_rms(waveform: np.ndarray, rms: float = NOISE_RMS) -> np.ndarray:
    level = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))) if waveform.size else 0.0
    return (waveform * (rms / level)).astype(np.float32) if level > 0 else np.asarray(waveform, np.float32)


class NoiseBank:
    """Ambient noise sources: the synthetic colours, then the recordings found in ``noise_dir``.

    ``noise_dir`` is searched recursively; every file that :func:`avseg.media.read_audio`
    decodes to a non-silent track is a source (``files`` lists them, for the report). A
    folder without one is an error, before any evaluation.
    """

    def __init__(self, noise_dir: str | Path | None = None):
        self.names: list[str] = list(COLOURS)
        self.recordings: list[tuple[np.ndarray, int]] = []
        self.files: list[str] = []
        if noise_dir is not None:
            self._read_folder(Path(noise_dir))

    def _read_folder(self, folder: Path) -> None:
        from avseg.media import read_audio

        if not folder.is_dir():
            raise ConfigError(f"--noise-dir: {folder} is not a folder")
        tried = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            tried += 1
            try:
                waveform, rate = read_audio(path)
            except AvsegError:
                continue
            if waveform.size and np.any(waveform):
                self.recordings.append((waveform, rate))
                self.files.append(str(path))
                self.names.append(path.name)
        if not self.recordings:
            raise ConfigError(f"--noise-dir: {folder} holds no readable audio ({tried} files tried; any audio or video file with a non-silent track will do)")

    def sample(self, num_samples: int, sample_rate: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        """``(source name, noise)``: one source drawn at random, ``num_samples`` long at :data:`NOISE_RMS`."""
        choice = int(rng.integers(len(self.names)))
        if choice < len(COLOURS):
            return self.names[choice], coloured_noise(num_samples, COLOURS[self.names[choice]], rng)
        waveform, rate = self.recordings[choice - len(COLOURS)]
        waveform = resample(waveform, rate, sample_rate)
        start = int(rng.integers(len(waveform)))
        looped = np.resize(np.roll(waveform, -start), num_samples)  # np.resize repeats a shorter track
        return self.names[choice], scale_to_rms(looped)


def clip_categories(clip: Clip) -> frozenset[str]:
    """What sounds in a clip: the names in ``meta['sounding_labels']`` over its frames, else ``meta['category']``."""
    per_frame = clip.meta.get("sounding_labels")
    if per_frame is not None:
        return frozenset(str(name) for names in per_frame for name in names)
    category = clip.meta.get("category")
    return frozenset([str(category)]) if category else frozenset()


def clip_visible(clip: Clip) -> frozenset[str]:
    """What can be seen in a clip (``meta['visible_labels']`` over its frames), where the reader knows it."""
    return frozenset(str(name) for names in clip.meta.get("visible_labels", ()) for name in names)


def offscreen_donors(clips: Sequence[Clip], seed: int) -> tuple[np.ndarray, list[int]] | None:
    """For each clip, a clip that sounds and has no category in common with it, nor with anything
    visible in it where that is known (seeded random choice).

    Returns ``(donors, unmatched)``. A clip where nothing sounds (a silent MS3 clip) takes any
    clip that sounds. A clip whose categories every other sounding clip shares is *unmatched*:
    like the official MS3 script ("No suitable contrast found ... Falling back to random
    misalignment"), it takes a random other sounding clip, and ``unmatched`` lists it so that
    the report can say how many. ``None`` when no clip names a category (the reader supplies
    none, e.g. real MS3): the condition cannot be built, and the caller says so. One category
    only is an error: no clip could be paired.
    """
    categories = [clip_categories(clip) for clip in clips]
    if not any(categories):
        return None
    distinct = sorted(set().union(*categories))
    if len(distinct) < 2:
        raise ConfigError(f"off-screen audio needs two categories; these clips have only one ({distinct[0]})")
    donors, unmatched = np.zeros(len(clips), dtype=np.int64), []
    for index, own in enumerate(categories):
        avoid = own | clip_visible(clips[index])
        candidates = [k for k, other in enumerate(categories) if other and not other & avoid]
        if not candidates:
            unmatched.append(index)
            candidates = [k for k, other in enumerate(categories) if other and k != index]
        if not candidates:
            raise ConfigError(f"off-screen audio needs another clip that sounds; {clips[index].id or 'a clip'} has none to borrow from in these {len(clips)} clips")
        donors[index] = candidates[int(np.random.default_rng([seed, index]).integers(len(candidates)))]
    return donors, unmatched


def borrowed_audio(donor: Clip, clip: Clip) -> np.ndarray:
    return fit_length(resample(donor.waveform, donor.sample_rate, clip.sample_rate), len(clip.waveform))


class PerturbedClips(Sequence[Clip]):
    """A view of a clip sequence whose audio is perturbed on access.

    ``noise`` is the :class:`NoiseBank` of the ``noise`` condition (the synthetic
    colours when not given). ``offscreen`` on clips without categories raises;
    ``unmatched`` lists the clips it had to pair with a clip sharing a category.
    """

    def __init__(self, clips: Sequence[Clip], perturbation: Perturbation | str, seed: int = 0, noise: NoiseBank | None = None):
        self.clips = clips
        self.perturbation = perturbation if isinstance(perturbation, Perturbation) else Perturbation.parse(perturbation)
        self.seed = seed
        self.noise = noise or NoiseBank()
        name = self.perturbation.name
        self.permutation = derangement(len(clips), seed) if name == "swap" else None
        self.unmatched: list[int] = []
        if name == "offscreen":
            pairing = offscreen_donors(clips, seed)
            if pairing is None:
                raise ConfigError("off-screen audio needs clip categories; this dataset's reader gives none")
            self.permutation, self.unmatched = pairing

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        clip = self.clips[index]
        name = self.perturbation.name
        if name == "normal":
            return clip
        meta = {"perturbation": name}
        if name in ("mute", "silence"):
            waveform = mute(clip.waveform)
        elif name in ("swap", "offscreen"):
            donor = self.clips[int(self.permutation[index])]
            waveform = borrowed_audio(donor, clip)
            meta["audio_from"] = donor.id
        elif name == "noise":
            meta["noise"], waveform = self.noise.sample(len(clip.waveform), clip.sample_rate, np.random.default_rng([self.seed, index]))
        else:
            rng = np.random.default_rng([self.seed, index])
            waveform = white_noise(clip.waveform, self.perturbation.snr_db, rng)
        perturbed = clip.with_audio(waveform)
        perturbed.meta.update(meta)
        return perturbed
