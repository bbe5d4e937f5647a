"""Audio front ends: resampling, VGGish log-mel examples, per-second windows (levels: :mod:`avseg.silence`).

The VGGish front end follows the official VGGish/AVSBench parameters
(16 kHz mono; 25 ms periodic-Hann window, 10 ms hop, 512-point FFT magnitude;
64 HTK-mel bands from 125 to 7500 Hz with the DC bin zeroed; ``log(mel +
0.01)``; non-overlapping 96-frame (0.96 s) examples). It is written here with
numpy and checked against the official implementation (see the parity notes
in the repository history); it is not a copy of it.

Resampling is polyphase (:func:`scipy.signal.resample_poly`) with our own
Kaiser-windowed sinc low-pass: 50 zero crossings, cutoff at 91.73% of the
lower Nyquist, beta 13. These match the response of ``resampy``'s
``kaiser_best`` table, which the official front end uses. Measured against
the official front end on noise and natural-sound clips, log-mel examples
agree to within 0.017 (max abs) for 8, 22.05, 32, 44.1 and 48 kHz input; a
synthetic log sweep, whose near-silent bands magnify tiny differences through
the log, reaches 0.27. SciPy's default filter (10 zero crossings, cutoff at
Nyquist) differs by up to 0.5 in the top mel bands and by 2.3 for 8 kHz input. Output
length is ``floor(n * to / from)``, as resampy's. At 16 kHz input nothing is
resampled and the examples are bit-identical to the official front end.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd
from typing import Literal

import numpy as np
from scipy.signal import firwin, resample_poly

VGGISH_SAMPLE_RATE = 16000
VGGISH_WINDOW_SECONDS = 0.025
VGGISH_HOP_SECONDS = 0.010
VGGISH_MEL_BANDS = 64
VGGISH_MEL_MIN_HZ = 125.0
VGGISH_MEL_MAX_HZ = 7500.0
VGGISH_LOG_OFFSET = 0.01
VGGISH_EXAMPLE_FRAMES = 96


RESAMPLE_ZERO_CROSSINGS = 50
RESAMPLE_ROLLOFF = 0.9173
RESAMPLE_KAISER_BETA = 13.0


@lru_cache(maxsize=16)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """Low-pass FIR at the upsampled rate ``up * from_rate``."""
    max_rate = max(up, down)
    taps = 2 * RESAMPLE_ZERO_CROSSINGS * max_rate + 1
    return firwin(taps, RESAMPLE_ROLLOFF / max_rate, window=("kaiser", RESAMPLE_KAISER_BETA))


def resample(waveform: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a 1-D float waveform between any two integer rates."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate or waveform.size == 0:
        return waveform.copy()
    common = gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // common, int(from_rate) // common
    out = resample_poly(waveform.astype(np.float64), up, down, window=_resampling_filter(up, down))
    return out[: len(waveform) * up // down].astype(np.float32)


def second_windows(waveform: np.ndarray, sample_rate: int, num_seconds: int) -> np.ndarray:
    """Cut ``num_seconds`` consecutive 1-s windows, zero-padding past the end.

    Returns float32 ``(num_seconds, sample_rate)``. Window ``l`` covers
    ``[l, l+1)`` seconds, the audio that belongs to AVSBench frame ``l``.
    """
    length = num_seconds * sample_rate
    out = np.zeros(length, dtype=np.float32)
    take = min(length, len(waveform))
    out[:take] = waveform[:take]
    return out.reshape(num_seconds, sample_rate)


def _frame(signal: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Non-padded sliding windows along axis 0: ``(1 + (n - window) // hop, window, ...)``."""
    count = 1 + (signal.shape[0] - window) // hop if signal.shape[0] >= window else 0
    if count == 0:
        return np.zeros((0, window) + signal.shape[1:], dtype=signal.dtype)
    starts = np.arange(count)[:, None] * hop + np.arange(window)[None, :]
    return signal[starts]


def _hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hertz, dtype=np.float64) / 700.0)


def vggish_mel_matrix(
    num_spectrogram_bins: int = 257,
    sample_rate: int = VGGISH_SAMPLE_RATE,
    num_bands: int = VGGISH_MEL_BANDS,
    lower_hz: float = VGGISH_MEL_MIN_HZ,
    upper_hz: float = VGGISH_MEL_MAX_HZ,
) -> np.ndarray:
    """``(num_spectrogram_bins, num_bands)`` triangular HTK-mel weights, built in the mel domain."""
    bins_mel = _hertz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins))[:, None]
    edges = np.linspace(_hertz_to_mel(lower_hz), _hertz_to_mel(upper_hz), num_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no pitch information
    return weights


def vggish_log_mel(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel spectrogram ``(frames, 64)`` float64 of a mono waveform in [-1, 1]."""
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono waveform (S,), got shape {waveform.shape}")
    if sample_rate != VGGISH_SAMPLE_RATE:
        waveform = resample(waveform, sample_rate, VGGISH_SAMPLE_RATE)
    window = int(round(VGGISH_SAMPLE_RATE * VGGISH_WINDOW_SECONDS))
    hop = int(round(VGGISH_SAMPLE_RATE * VGGISH_HOP_SECONDS))
    fft_length = 1 << int(np.ceil(np.log2(window)))
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window) / window)  # periodic
    frames = _frame(waveform.astype(np.float64), window, hop)
    magnitude = np.abs(np.fft.rfft(frames * hann, fft_length))
    mel = magnitude @ vggish_mel_matrix(fft_length // 2 + 1)
    return np.log(mel + VGGISH_LOG_OFFSET)


def vggish_examples(
    waveform: np.ndarray,
    sample_rate: int,
    num_examples: int | None = None,
    pad: Literal["repeat", "zeros"] = "repeat",
) -> np.ndarray:
    """VGGish input examples ``(E, 96, 64)`` float32, one per 0.96 s.

    With ``num_examples`` the result has exactly that many: extra examples are
    dropped (the official code raises instead), and missing ones are padded.
    ``pad="repeat"`` repeats the last example, as AVSBench S4/MS3 preprocessing
    does; ``pad="zeros"`` appends all-zero examples, as the AVSS loader does
    for its 5-second clips in 10-frame batches. Audio shorter than one example
    counts as one example of silence (``log(0.01)``) before repeat-padding.
    """
    if pad not in ("repeat", "zeros"):
        raise ValueError(f"pad must be 'repeat' or 'zeros', got {pad!r}")
    log_mel = vggish_log_mel(waveform, sample_rate)
    examples = _frame(log_mel, VGGISH_EXAMPLE_FRAMES, VGGISH_EXAMPLE_FRAMES)
    if num_examples is not None:
        missing = num_examples - len(examples)
        if missing > 0 and pad == "zeros":
            filler = np.zeros((missing, VGGISH_EXAMPLE_FRAMES, VGGISH_MEL_BANDS))
        elif missing > 0:
            if len(examples) == 0:
                examples = np.full((1, VGGISH_EXAMPLE_FRAMES, VGGISH_MEL_BANDS), np.log(VGGISH_LOG_OFFSET))
            filler = np.repeat(examples[-1:], num_examples - len(examples), axis=0)
        else:
            filler = examples[:0]
        examples = np.concatenate([examples, filler])[:num_examples]
    return examples.astype(np.float32)


def frame_examples(waveform: np.ndarray, sample_rate: int, num_frames: int, windowed: bool) -> np.ndarray:
    """One VGGish example per frame, ``(num_frames, 96, 64)`` float32, from a clip's waveform.

    ``windowed=False``: the waveform is the clip's contiguous track and frame ``k`` hears its ``k``-th 0.96-s
    example, repeat-padded, as AVSBench's preprocessing (``audio_log_mel``) frames it. ``windowed=True``: the
    waveform is one window per frame laid end to end (``avseg segment`` at dense rates: each frame's second of
    audio centred on it, :mod:`avseg.engine.dense`); frame ``k`` hears the first example of its own window.
    Framing such a waveform as one track would drift 0.04 s a frame into the previous frame's window (a whole
    second by the 25th frame of a call)."""
    if not windowed:
        return vggish_examples(waveform, sample_rate, num_examples=num_frames)
    if num_frames < 1 or len(waveform) % num_frames:
        raise ValueError(f"{len(waveform)} samples are not {num_frames} equal windows")
    windows = np.asarray(waveform, dtype=np.float32).reshape(num_frames, -1)
    return np.concatenate([vggish_examples(window, sample_rate, num_examples=1) for window in windows])

