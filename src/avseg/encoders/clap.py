"""MS-CLAP 2023 audio branch: HTS-AT plus the CLAP projection, one 1024-d embedding per second.

AV2T-SAM's audio cue ``f_CLAP`` is the MS-CLAP 2023 audio embedding of each
frame's 1-second window (Elizalde et al., "Natural Language Supervision for
General-Purpose Audio Representations", 2023). This module ports that branch
so that it loads ``CLAP_weights_2023.pth`` (Hugging Face ``microsoft/msclap``)
without the ``msclap`` package, which pins numpy<2, transformers<5 and
torchaudio. The network is HTS-AT (Chen et al., ICASSP 2022: a Swin
Transformer over a folded log-mel image, with a token-semantic head) followed
by CLAP's projection head.

What msclap actually runs, read from its code (``CLAPWrapper``, ``models/clap.py``,
``models/htsat.py``, ``models/config.py``) and reproduced here:

- ``HTSATWrapper`` ignores the audio settings of ``config_2023.yml`` and builds
  HTS-AT from HTS-AT's own ``config.py``: 1024-point periodic-Hann STFT,
  320 hop, 64 Slaney mel bands from 50 Hz to 14 kHz *designed for 32 kHz*.
  CLAP 2023 feeds 44.1 kHz audio (the yml's ``sampling_rate``; its
  ``fmax: 8000`` is unused), so the filterbank sees bin ``k`` at
  ``k * 32000 / 1024`` Hz: in real Hz the bands span 68.9 Hz to 19.3 kHz.
  The weights were trained that way, so :class:`ClapAudioConfig` keeps the
  two rates apart (``sample_rate`` and ``filterbank_rate``).
- Log-mel is ``10 log10(max(mel power, 1e-10))`` with no top-dB clamp, then
  a batch norm over mel bins with its running statistics.
- HTS-AT wants 1024 frames; a 1-s window at 44.1 kHz has 138 (centred
  frames), which are stretched bicubically (``align_corners=True``) to 1024
  and folded into four 256-frame chunks stacked along frequency, giving a
  256x256 image. msclap averages overlapping crops for inputs over 1024
  frames (about 7.4 s); that path is not ported (``ValueError``).
- The audio embedding is HTS-AT's ``latent_output`` (the mean of the final
  normalised tokens) through CLAP's projection, returned *before* any L2
  normalisation, exactly what ``CLAPWrapper.get_audio_embeddings`` returns.
  AV2T-SAM caches that and L2-normalises it in its ``Projector``.
- The token-semantic head gives AudioSet clip-wise probabilities
  (:meth:`ClapAudio.tag`); it does not feed the embedding.

How AV2T-SAM makes its windows (``utils/avs_dataset_{s4,m3}.py`` calls
``get_audio_embeddings_single``, i.e. ``load_audio_into_tensors``): resample
the file to 44.1 kHz with torchaudio's default ``Resample``, cut five
consecutive 1-s windows, zero-pad the last, and embed each window as its own
1-s clip. msclap's ``get_audio_embeddings`` would instead repeat a short clip
up to its 7-s ``duration`` (and randomly crop longer ones); AV2T-SAM does not
use it and neither do we. :class:`ClapAudioEncoder` follows AV2T-SAM for any
number of seconds. It takes mono audio; AV2T-SAM flattens a stereo window
into one vector (left channel, then right), which we do not copy.

Resampling reproduces torchaudio's default (a Hann-windowed sinc with 6 zero
crossings and a cutoff at 99% of the lower Nyquist) rather than
:func:`avseg.audio.resample`, for the reason that module matches resampy for
VGGish: the features must be the ones the model was trained on. The two
differ little in the passband but torchaudio's short filter lets images of
the upsampled spectrum through at -40 to -60 dB, and the log-mel front end
sees those bands (up to 19.3 kHz): with avseg's filter, embeddings of 16 kHz
input differ from the official path by a third of their scale.

The weights file holds ``{"model": state_dict}`` of the whole CLAP model.
:meth:`ClapAudio.from_official` takes the audio keys
(``audio_encoder.base.htsat.*``, ``audio_encoder.projection.*``) strictly and
ignores, by design, the text branch (``caption_encoder.*``), ``logit_scale``
and HTS-AT's ``head.*`` (a linear classifier msclap builds but bypasses
because the token-semantic head replaces it). Tensors that are functions of
the configuration (STFT kernels, ``melW``, relative-position indices, shift
masks) are recomputed here and the file's copies must agree with them, which
checks the front end and geometry against the weights.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avseg.audio import second_windows
from avseg.encoders.vggish import _mismatches
from avseg.errors import AvsegError, ConfigError
from avseg.loading import read_torch_weights

LOG_FLOOR = 1e-10
"""Power floor before ``10 log10``: torchlibrosa's ``amin`` (with ``ref=1`` and no top-dB clamp)."""

SHIFT_MASK = -100.0
"""Score added between tokens of different regions in a shifted window (HTS-AT's value, not -inf)."""

RESAMPLE_ZERO_CROSSINGS = 6
"""Half-length of torchaudio's default resampling filter, in zero crossings of its sinc."""
RESAMPLE_ROLLOFF = 0.99
"""Cutoff of torchaudio's default resampling filter, as a fraction of the lower Nyquist frequency."""

_HTSAT = "audio_encoder.base.htsat."
_PROJECTION = "audio_encoder.projection."
_IGNORED = re.compile(rf"^(?!audio_encoder\.)|^{re.escape(_HTSAT)}head\.")
"""Checkpoint keys left out by design: the text branch, ``logit_scale`` and HTS-AT's bypassed ``head``."""
_DERIVED_TOLERANCE = 1e-4
"""Largest allowed difference between a recomputed tensor and the file's, relative to its largest value."""


@dataclass(frozen=True)
class ClapAudioConfig:
    """Sizes of the MS-CLAP audio branch; the defaults are CLAP 2023's (HTS-AT with Swin-T widths)."""

    sample_rate: int = 44100
    """Rate of the waveform fed to the network."""
    filterbank_rate: int = 32000
    """Rate the mel filterbank is designed for (HTS-AT's config, not CLAP's input rate)."""
    n_fft: int = 1024
    hop: int = 320
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    spec_size: int = 256
    """Side of the square image the spectrogram is folded into."""
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    mlp_ratio: float = 4.0
    num_classes: int = 527
    projection_dim: int = 1024

    def __post_init__(self):
        problem = self._problem()
        if problem:
            raise ConfigError(f"ClapAudioConfig: {problem}")

    def _problem(self) -> str:
        if min(self.sample_rate, self.filterbank_rate, self.n_fft, self.hop, self.mel_bins) < 1:
            return "rates, FFT size, hop and mel bins must be positive"
        if not 0 <= self.fmin < self.fmax <= self.filterbank_rate / 2:
            return f"need 0 <= fmin < fmax <= filterbank_rate / 2, got {self.fmin}, {self.fmax}"
        if self.spec_size % self.mel_bins or self.spec_size % self.patch_size:
            return f"spec_size {self.spec_size} must be a multiple of mel_bins and patch_size"
        if not self.depths or len(self.depths) != len(self.num_heads):
            return "depths and num_heads must be non-empty and of equal length"
        if self.token_grid % self.freq_ratio:
            return f"the final {self.token_grid}x{self.token_grid} token grid must split into {self.freq_ratio} chunks"
        for stage, heads in enumerate(self.num_heads):
            resolution = self.spec_size // self.patch_size >> stage
            if (self.embed_dim << stage) % heads:
                return f"stage {stage}: width {self.embed_dim << stage} is not divisible by {heads} heads"
            if resolution > self.window_size and resolution % self.window_size:
                return f"stage {stage}: resolution {resolution} is not a multiple of window_size {self.window_size}"
        return ""

    @classmethod
    def tiny(cls) -> ClapAudioConfig:
        """A 27k-parameter branch at 8 kHz (3 stages, shifted windows, 1-s = 126 frames) for tests."""
        return cls(
            sample_rate=8000,
            filterbank_rate=8000,
            n_fft=256,
            hop=64,
            mel_bins=16,
            fmin=50.0,
            fmax=3800.0,
            spec_size=64,
            embed_dim=8,
            depths=(1, 2, 1),
            num_heads=(1, 2, 2),
            window_size=4,
            num_classes=10,
            projection_dim=32,
        )

    @property
    def freq_ratio(self) -> int:
        """How many time chunks are stacked along frequency in the image."""
        return self.spec_size // self.mel_bins

    @property
    def max_frames(self) -> int:
        """Spectrogram frames the image holds; shorter inputs are stretched to it."""
        return self.spec_size * self.freq_ratio

    @property
    def token_grid(self) -> int:
        """Side of the final token grid."""
        return self.spec_size // self.patch_size >> (len(self.depths) - 1)

    @property
    def width(self) -> int:
        """Width of the final tokens (HTS-AT's embedding, the projection's input)."""
        return self.embed_dim << (len(self.depths) - 1)

    @property
    def dim(self) -> int:
        """Size of the output embedding."""
        return self.projection_dim


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


class LogMel(nn.Module):
    """HTS-AT's front end: ``(N, samples)`` waveform to ``(N, frames, mel_bins)`` log-mel power in dB.

    A centred (reflect-padded) STFT computed as one strided convolution with
    the windowed DFT rows, as torchlibrosa does, then the Slaney filterbank.
    Both are fixed functions of the config, kept as non-persistent buffers.
    """

    def __init__(self, config: ClapAudioConfig):
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


def _relative_position_index(window: int) -> torch.Tensor:
    """``(window², window²)`` row of the bias table for each query/key pair of a window."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    delta_rows = rows[:, None] - rows[None, :] + window - 1
    delta_cols = cols[:, None] - cols[None, :] + window - 1
    return delta_rows * (2 * window - 1) + delta_cols


def _to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` to ``(B, windows, window², C)``, windows in row-major order."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.transpose(2, 3).reshape(batch, -1, window * window, channels)


def _from_windows(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    batch, channels = windows.shape[0], windows.shape[-1]
    x = windows.view(batch, height // window, width // window, window, window, channels)
    return x.transpose(2, 3).reshape(batch, height, width, channels)


def _shift_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """``(windows, window², window²)`` additive mask keeping attention inside each region the roll brought together."""
    band = torch.zeros(resolution, dtype=torch.long)
    band[resolution - window :] = 1
    band[resolution - shift :] = 2
    regions = (band[:, None] * 3 + band[None, :])[None, :, :, None]
    regions = _to_windows(regions, window)[0, :, :, 0]
    different = regions[:, :, None] != regions[:, None, :]
    return different.float() * SHIFT_MASK


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows, with a learned relative-position bias (Swin)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.position_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("position_index", _relative_position_index(window), persistent=False)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, windows, tokens, C)`` in and out; ``mask`` is ``(windows, tokens, tokens)`` or ``None``."""
        batch, count, tokens, dim = windows.shape
        head_dim = dim // self.heads
        qkv = self.qkv(windows).view(batch, count, tokens, 3, self.heads, head_dim)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5)  # each (B, windows, heads, tokens, head_dim)
        scores = (query * head_dim**-0.5) @ key.transpose(-2, -1)
        scores = scores + self.position_bias[self.position_index].permute(2, 0, 1)
        if mask is not None:
            scores = scores + mask[:, None]
        out = scores.softmax(dim=-1) @ value
        return self.proj(out.transpose(2, 3).reshape(batch, count, tokens, dim))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP on a square token grid.

    As in Swin and HTS-AT, a window as large as the grid takes the whole grid
    and is never shifted.
    """

    def __init__(self, dim: int, heads: int, resolution: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.resolution = resolution
        self.window = min(window, resolution)
        self.shift = shift if resolution > window else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(dim, hidden), act=nn.GELU(), fc2=nn.Linear(hidden, dim)))
        mask = _shift_mask(resolution, self.window, self.shift) if self.shift else None
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        side, shift = self.resolution, self.shift
        y = self.norm1(x).view(batch, side, side, dim)
        y = torch.roll(y, (-shift, -shift), dims=(1, 2))
        y = _from_windows(self.attn(_to_windows(y, self.window), self.mask), self.window, side, side)
        y = torch.roll(y, (shift, shift), dims=(1, 2))
        x = x + y.reshape(batch, tokens, dim)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Halve the grid: each 2x2 neighbourhood (order: top-left, bottom-left, top-right, bottom-right) to one token of twice the width."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, dim = x.shape
        half = self.resolution // 2
        x = x.view(batch, half, 2, half, 2, dim).permute(0, 1, 3, 4, 2, 5)  # (B, h, w, dw, dh, C)
        return self.reduction(self.norm(x.reshape(batch, half * half, 4 * dim)))


class SwinStage(nn.Module):
    """Blocks alternating plain and half-window-shifted attention, then an optional patch merge."""

    def __init__(self, config: ClapAudioConfig, index: int):
        super().__init__()
        dim = config.embed_dim << index
        resolution = config.spec_size // config.patch_size >> index
        window = config.window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim, config.num_heads[index], resolution, window, window // 2 * (block % 2), config.mlp_ratio)
            for block in range(config.depths[index])
        )
        self.merge = PatchMerging(dim, resolution) if index < len(config.depths) - 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.merge(x) if self.merge is not None else x


class Projection(nn.Module):
    """CLAP's projection head: ``LayerNorm(h + W2 GELU(h))`` with ``h = W1 x``, both linear maps bias-free."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear1 = nn.Linear(dim_in, dim_out, bias=False)
        self.linear2 = nn.Linear(dim_out, dim_out, bias=False)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.linear1(x)
        return self.norm(hidden + self.linear2(F.gelu(hidden)))


class ClapAudio(nn.Module):
    """The MS-CLAP 2023 audio branch: ``(N, samples)`` at ``config.sample_rate`` in, ``(N, dim)`` embeddings out.

    HTS-AT (log-mel, batch norm over mel bins, folding into a square image,
    4x4 patch embedding, four Swin stages with patch merging, final norm) and
    CLAP's projection of the mean final token. Training-only parts of msclap
    (SpecAugment, mixup, dropout, stochastic depth, random crops) are left
    out: this port is a frozen feature extractor.
    """

    def __init__(self, config: ClapAudioConfig | None = None):
        super().__init__()
        self.config = config = config or ClapAudioConfig()
        self.log_mel = LogMel(config)
        self.mel_norm = nn.BatchNorm1d(config.mel_bins)
        self.patch_embed = nn.Conv2d(1, config.embed_dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.patch_norm = nn.LayerNorm(config.embed_dim)
        self.stages = nn.ModuleList(SwinStage(config, index) for index in range(len(config.depths)))
        self.norm = nn.LayerNorm(config.width)
        frequency_rows = config.token_grid // config.freq_ratio
        self.token_semantic = nn.Conv2d(config.width, config.num_classes, kernel_size=(frequency_rows, 3), padding=(0, 1))
        self.projection = Projection(config.width, config.projection_dim)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.projection(self.tokens(waveform).mean(dim=(2, 3)))

    def tag(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(N, num_classes)`` clip-wise AudioSet probabilities from the token-semantic head."""
        return torch.sigmoid(self.token_semantic(self.tokens(waveform)).flatten(2).mean(dim=2))

    def tokens(self, waveform: torch.Tensor) -> torch.Tensor:
        """Final normalised tokens as a ``(N, width, frequency rows, time columns)`` map."""
        x = self.log_mel(waveform)
        x = self.mel_norm(x.transpose(1, 2)).transpose(1, 2)
        x = self.patch_embed(self._fold(x)).flatten(2).transpose(1, 2)
        x = self.patch_norm(x)
        for stage in self.stages:
            x = stage(x)
        return self._unfold(self.norm(x))

    def _fold(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``(N, frames, mel)`` to the ``(N, 1, spec, spec)`` image: ``freq_ratio`` time chunks stacked along frequency."""
        batch, frames, mel = log_mel.shape
        config = self.config
        if frames > config.max_frames:
            samples = config.max_frames * config.hop - 1
            raise ValueError(f"input is {frames} frames; at most {config.max_frames} frames ({samples} samples) fit HTS-AT's image")
        image = log_mel[:, None]
        if frames < config.max_frames:  # align_corners keeps the mel axis exactly as it is
            image = F.interpolate(image, size=(config.max_frames, mel), mode="bicubic", align_corners=True)
        image = image.view(batch, config.freq_ratio, config.spec_size, mel).transpose(2, 3)
        return image.reshape(batch, 1, config.spec_size, config.spec_size)

    def _unfold(self, tokens: torch.Tensor) -> torch.Tensor:
        """Undo the folding on the final ``(N, grid², width)`` tokens: ``(N, width, grid / freq_ratio, grid * freq_ratio)``."""
        batch, _, width = tokens.shape
        grid, chunks = self.config.token_grid, self.config.freq_ratio
        grid_map = tokens.transpose(1, 2).reshape(batch, width, chunks, grid // chunks, grid)
        return grid_map.transpose(2, 3).reshape(batch, width, grid // chunks, chunks * grid)

    @classmethod
    def from_official(cls, path: str | PathLike, config: ClapAudioConfig | None = None) -> ClapAudio:
        """Load the audio branch of an msclap checkpoint such as ``CLAP_weights_2023.pth``.

        Accepts the file's ``{"model": state_dict}`` or a bare CLAP state
        dict. Raises :class:`AvsegError` naming the file if it is missing or
        unreadable, if any audio key is missing, unexpected or of the wrong
        shape, or if a recomputed tensor disagrees with the file's.
        """
        state = read_torch_weights(path, "CLAP weights")
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise AvsegError(f"{path}: expected a CLAP state dict, got {type(state).__name__}")
        found = {key: value for key, value in state.items() if not _IGNORED.search(str(key))}

        model = cls(config)
        ours = {_official_key(key): key for key in model.state_dict()}
        derived = _derived_tensors(model)
        expected = {official: model.state_dict()[key] for official, key in ours.items()} | derived
        problems = _mismatches(expected, found)
        if problems:
            raise AvsegError(f"{path}: does not fit the MS-CLAP audio branch: {problems}")
        for key, tensor in derived.items():
            error = (found[key].double() - tensor.double()).abs().max().item()
            if error > _DERIVED_TOLERANCE * max(tensor.abs().max().item(), 1.0):
                raise AvsegError(f"{path}: {key} differs from this port's by {error:.3g}; the weights use another front end or geometry")
        model.load_state_dict({key: found[official] for official, key in ours.items()}, strict=True)
        return model


_RENAMES = (
    (r"^mel_norm\.", "bn0."),
    (r"^patch_embed\.", "patch_embed.proj."),
    (r"^patch_norm\.", "patch_embed.norm."),
    (r"^stages\.", "layers."),
    (r"\.merge\.", ".downsample."),
    (r"\.position_bias$", ".relative_position_bias_table"),
    (r"^token_semantic\.", "tscam_conv."),
)


def _official_key(key: str) -> str:
    """The msclap checkpoint name of one of our state-dict keys."""
    if key.startswith("projection."):
        return _PROJECTION + re.sub(r"^norm\.", "layer_norm.", key.removeprefix("projection."))
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return _HTSAT + key


def _derived_tensors(model: ClapAudio) -> dict[str, torch.Tensor]:
    """The checkpoint's configuration-determined tensors (front end and window geometry), recomputed."""
    real, imag = model.log_mel.dft.chunk(2)
    tensors = {
        _HTSAT + "spectrogram_extractor.stft.conv_real.weight": real,
        _HTSAT + "spectrogram_extractor.stft.conv_imag.weight": imag,
        _HTSAT + "logmel_extractor.melW": model.log_mel.filterbank,
    }
    for stage_index, stage in enumerate(model.stages):
        for block_index, block in enumerate(stage.blocks):
            prefix = f"{_HTSAT}layers.{stage_index}.blocks.{block_index}."
            tensors[prefix + "attn.relative_position_index"] = block.attn.position_index
            if block.mask is not None:
                tensors[prefix + "attn_mask"] = block.mask
    return tensors


class ClapAudioEncoder(nn.Module):
    """A frozen :class:`ClapAudio` that turns a waveform into one embedding per second (AV2T-SAM's ``f_CLAP``).

    The waveform is resampled to ``config.sample_rate`` (as torchaudio does,
    see :func:`resample_like_torchaudio`) and cut into
    consecutive 1-s windows, the last zero-padded, and window ``l`` (audio
    ``[l, l+1)`` s) gives the embedding of frame ``l``; seconds past the end
    of the audio are windows of silence. Embeddings are not L2-normalised
    (AV2T-SAM normalises them in its projector).

    The network stays in eval mode with gradients off even when a parent
    module is put in training mode: it has a batch norm whose running
    statistics must be used.
    """

    batch_windows = 16
    """Windows per forward pass (bounds memory on long clips)."""

    def __init__(self, network: ClapAudio):
        super().__init__()
        self.network = network.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> ClapAudioEncoder:
        super().train(mode)
        self.network.eval()
        return self

    @property
    def dim(self) -> int:
        return self.network.config.dim

    @torch.no_grad()
    def embed(self, waveform: np.ndarray, sample_rate: int, num_seconds: int) -> torch.Tensor:
        """``(num_seconds, dim)`` float embeddings of a mono waveform in [-1, 1], on the network's device."""
        if num_seconds < 1:
            raise ValueError(f"num_seconds must be at least 1, got {num_seconds}")
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1 or waveform.size == 0:
            raise AvsegError(f"CLAP audio encoder: expected a non-empty mono waveform, got shape {waveform.shape}")
        if not np.isfinite(waveform).all():
            raise AvsegError("CLAP audio encoder: the waveform contains NaN or infinite samples")
        rate = self.network.config.sample_rate
        audio = resample_like_torchaudio(waveform, sample_rate, rate)
        windows = torch.from_numpy(second_windows(audio, rate, num_seconds))
        weight = self.network.patch_embed.weight
        chunks = windows.to(weight.device, weight.dtype).split(self.batch_windows)
        return torch.cat([self.network(chunk) for chunk in chunks])
