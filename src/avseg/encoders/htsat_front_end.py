"""HTS-AT's front end as MS-CLAP 2023 runs it: torchaudio resampling, then log-mel power.

What msclap computes before HTS-AT, read from its code (``HTSATWrapper``,
``models/htsat.py``, ``models/config.py``) and reproduced here without
torchaudio, torchlibrosa or librosa:

- ``HTSATWrapper`` ignores the audio settings of ``config_2023.yml`` and builds
  HTS-AT from HTS-AT's own ``config.py``: 1024-point periodic-Hann STFT,
  320 hop, 64 Slaney mel bands from 50 Hz to 14 kHz *designed for 32 kHz*.
  CLAP 2023 feeds 44.1 kHz audio (the yml's ``sampling_rate``; its
  ``fmax: 8000`` is unused), so the filterbank sees bin ``k`` at
  ``k * 32000 / 1024`` Hz: in real Hz the bands span 68.9 Hz to 19.3 kHz.
  The weights were trained that way, so :class:`~avseg.encoders.clap.ClapAudioConfig`
  keeps the two rates apart (``sample_rate`` and ``filterbank_rate``).
- Log-mel is ``10 log10(max(mel power, 1e-10))`` with no top-dB clamp (the
  batch norm over mel bins that follows belongs to HTS-AT).

Resampling reproduces torchaudio's default (a Hann-windowed sinc with 6 zero
crossings and a cutoff at 99% of the lower Nyquist) rather than
:func:`avseg.audio.resample`, for the reason that module matches resampy for
VGGish: the features must be the ones the model was trained on. The two
differ little in the passband but torchaudio's short filter lets images of
the upsampled spectrum through at -40 to -60 dB, and the log-mel front end
sees those bands (up to 19.3 kHz): with avseg's filter, embeddings of 16 kHz
input differ from the official path by a third of their scale.

transformers' ``ClapFeatureExtractor`` cannot stand in: it is LAION CLAP's
numpy pipeline (48 kHz, 480 hop, a filterbank designed for the input rate).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_FLOOR = 1e-10
"""Power floor before ``10 log10``: torchlibrosa's ``amin`` (with ``ref=1`` and no top-dB clamp)."""

RESAMPLE_ZERO_CROSSINGS = 6
"""Half-length of torchaudio's default resampling filter, in zero crossings of its sinc."""
RESAMPLE_ROLLOFF = 0.99
"""Cutoff of torchaudio's default resampling filter, as a fraction of the lower Nyquist frequency."""


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz >= 1000.0, log, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0), mel * 200.0 / 3.0)


def _mel_filterbank(rate: int, n_fft: int, bands: int, fmin: float, fmax: float) -> torch.Tensor:
    """``(n_fft // 2 + 1, bands)`` area-normalised (Slaney) triangular filters, as ``librosa.filters.mel``."""
    bins_hz = np.arange(n_fft // 2 + 1) * rate / n_fft
    edges = _slaney_mel_to_hz(np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), bands + 2))
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_hz[:, None] - lower) / (center - lower)
    falling = (upper - bins_hz[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (upper - lower)
    return torch.from_numpy(weights.astype(np.float32))


def _dft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary periodic-Hann-windowed DFT rows, each ``(n_fft // 2 + 1, 1, n_fft)``."""
    samples = np.arange(n_fft)
    phase = 2.0 * np.pi * ((np.arange(n_fft // 2 + 1)[:, None] * samples) % n_fft) / n_fft
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * samples / n_fft)
    real, imag = np.cos(phase) * hann, -np.sin(phase) * hann
    return tuple(torch.from_numpy(kernel[:, None, :].astype(np.float32)) for kernel in (real, imag))


class MelSettings(Protocol):
    """What the front end reads of :class:`~avseg.encoders.clap.ClapAudioConfig` (named here, not imported:
    the encoder imports this module)."""

    n_fft: int
    hop: int
    filterbank_rate: int
    mel_bins: int
    fmin: float
    fmax: float


class LogMel(nn.Module):
    """HTS-AT's front end: ``(N, samples)`` waveform to ``(N, frames, mel_bins)`` log-mel power in dB.

    A centred (reflect-padded) STFT computed as one strided convolution with
    the windowed DFT rows, as torchlibrosa does, then the Slaney filterbank.
    Both are fixed functions of the config, kept as non-persistent buffers.
    """

    def __init__(self, config: MelSettings):
        super().__init__()
        self.n_fft, self.hop = config.n_fft, config.hop
        self.register_buffer("dft", torch.cat(_dft_kernels(config.n_fft)), persistent=False)
        filterbank = _mel_filterbank(config.filterbank_rate, config.n_fft, config.mel_bins, config.fmin, config.fmax)
        self.register_buffer("filterbank", filterbank, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        padded = F.pad(waveform[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real, imag = F.conv1d(padded, self.dft, stride=self.hop).chunk(2, dim=1)
        power = (real**2 + imag**2).transpose(1, 2)  # (N, frames, bins)
        return 10.0 * torch.log10((power @ self.filterbank).clamp(min=LOG_FLOOR))


def resample_like_torchaudio(waveform: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a 1-D waveform as ``torchaudio.transforms.Resample(from_rate, to_rate)`` does by default.

    Output ``j`` sits at input position ``p = j * from / to`` and is the sum of
    ``x[i] * c * sinc(c (i - p)) * cos²(π c (i - p) / 12)`` over ``|c (i - p)| <= 6``,
    where ``c = 0.99 * min(from, to) / from`` is the cutoff as a fraction of
    the input's Nyquist frequency and the signal is zero outside its ends.
    Output length is ``ceil(n * to / from)``.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return waveform.copy()
    common = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // common, int(from_rate) // common
    cutoff = min(up, down) * RESAMPLE_ROLLOFF / down
    reach = math.ceil(RESAMPLE_ZERO_CROSSINGS / cutoff)
    # Output up * q + k is tap row k over input samples [down * q - reach, down * q + down + reach).
    delta = np.arange(-reach, reach + down) - np.arange(up)[:, None] * down / up  # (i - p) in input samples
    argument = np.clip(cutoff * delta, -RESAMPLE_ZERO_CROSSINGS, RESAMPLE_ZERO_CROSSINGS)
    taps = cutoff * np.sinc(argument) * np.cos(np.pi * argument / (2 * RESAMPLE_ZERO_CROSSINGS)) ** 2
    padded = torch.from_numpy(np.pad(waveform, (reach, reach + down)))
    frames = F.conv1d(padded[None, None], torch.from_numpy(taps.astype(np.float32))[:, None], stride=down)
    return frames[0].T.reshape(-1)[: math.ceil(up * len(waveform) / down)].numpy()
