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

Noise and the swap permutation are deterministic given the seed and the clip
index, so every run of an evaluation sees the same perturbed audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from avseg.audio import resample
from avseg.data.clip import Clip
from avseg.errors import ConfigError

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
        if name in ("normal", "mute", "swap") or _WGN.match(name):
            return cls(name)
        raise ConfigError(f"unknown audio perturbation {name!r}; use normal, mute, swap or wgnDB (e.g. wgn10)")

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


class PerturbedClips(Sequence[Clip]):
    """A view of a clip sequence whose audio is perturbed on access."""

    def __init__(self, clips: Sequence[Clip], perturbation: Perturbation | str, seed: int = 0):
        self.clips = clips
        self.perturbation = perturbation if isinstance(perturbation, Perturbation) else Perturbation.parse(perturbation)
        self.seed = seed
        self.permutation = derangement(len(clips), seed) if self.perturbation.name == "swap" else None

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        clip = self.clips[index]
        name = self.perturbation.name
        if name == "normal":
            return clip
        if name == "mute":
            waveform = mute(clip.waveform)
        elif name == "swap":
            donor = self.clips[int(self.permutation[index])]
            waveform = fit_length(resample(donor.waveform, donor.sample_rate, clip.sample_rate), len(clip.waveform))
        else:
            rng = np.random.default_rng([self.seed, index])
            waveform = white_noise(clip.waveform, self.perturbation.snr_db, rng)
        perturbed = clip.with_audio(waveform)
        perturbed.meta["perturbation"] = name
        return perturbed
