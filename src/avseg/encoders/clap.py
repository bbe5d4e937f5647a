"""MS-CLAP 2023 audio branch: HTS-AT plus the CLAP projection, one 1024-d embedding per second.

AV2T-SAM's audio cue ``f_CLAP`` is the MS-CLAP 2023 audio embedding of each
frame's 1-second window (Elizalde et al., "Natural Language Supervision for
General-Purpose Audio Representations", 2023). This module loads that branch
from ``CLAP_weights_2023.pth`` (Hugging Face ``microsoft/msclap``) without the
``msclap`` package, which pins numpy<2, transformers<5 and torchaudio. The
network is HTS-AT (Chen et al., ICASSP 2022: a Swin Transformer over a folded
log-mel image, with a token-semantic head) followed by CLAP's projection head.

HTS-AT itself is transformers' :class:`~transformers.ClapAudioModel` (LAION
CLAP's copy of the same HTS-AT code). Without fusion it is msclap's network
layer for layer: batch norm over mel bins, bicubic stretch and folding into
the square image (``reshape_mel2img``), a 4x4 patch convolution with layer
norm, Swin stages (pre-norm window attention with a relative-position bias,
half-window shifts with the -100 mask, no shift or partition when the window
covers the grid, GELU MLP, patch merging in Swin's order), the final norm and
the token map regrouped by frequency chunk; its ``pooler_output`` is msclap's
``latent_output``. msclap's fused ``attn.qkv`` rows are transformers'
``query``, ``key`` and ``value`` stacked, so the weights load exactly (the
scores differ only by where the ``1/sqrt(head_dim)`` is applied). Three parts
are ours because transformers' cannot hold MS-CLAP's: the front end
(:mod:`avseg.encoders.htsat_front_end`; ``ClapFeatureExtractor`` is LAION's),
the token-semantic head (``tscam_conv``, which transformers leaves out) and
the projection (transformers' ``ClapProjectionLayer`` is
``linear2(act(linear1 x))`` with biases, no residual and no layer norm). transformers sizes every stage's
relative-position table by ``window_size``, so each stage's grid must be at
least one window wide (HTS-AT's own code would shrink the window instead).

What msclap actually runs after its front end, read from its code
(``CLAPWrapper``, ``models/clap.py``, ``models/htsat.py``) and reproduced here:

- Log-mel is batch-normalised over mel bins with its running statistics.
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

The weights file holds ``{"model": state_dict}`` of the whole CLAP model.
:meth:`ClapAudio.from_official` takes the audio keys
(``audio_encoder.base.htsat.*``, ``audio_encoder.projection.*``) strictly and
ignores, by design, the text branch (``caption_encoder.*``), ``logit_scale``
and HTS-AT's ``head.*`` (a linear classifier msclap builds but bypasses
because the token-semantic head replaces it). Tensors that are functions of
the configuration (STFT kernels, ``melW``, relative-position indices, shift
masks) are recomputed here and the file's copies must agree with them, which
checks the front end and transformers' window geometry against the weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import ClapAudioConfig as HtsatConfig
from transformers import ClapAudioModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from avseg.audio import second_windows
from avseg.encoders.htsat_front_end import LogMel, resample_like_torchaudio
from avseg.encoders.vggish import _mismatches
from avseg.errors import AvsegError, ConfigError
from avseg.loading import read_torch_weights

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
            if resolution < self.window_size or resolution % self.window_size:
                return f"stage {stage}: resolution {resolution} is not a positive multiple of window_size {self.window_size}"
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

    def transformers_config(self) -> HtsatConfig:
        """The transformers configuration of this HTS-AT, without fusion and with every dropout off."""
        return HtsatConfig(
            spec_size=self.spec_size,
            num_mel_bins=self.mel_bins,
            patch_size=self.patch_size,
            patch_stride=self.patch_size,
            patch_embeds_hidden_size=self.embed_dim,
            depths=list(self.depths),
            num_attention_heads=list(self.num_heads),
            window_size=self.window_size,
            mlp_ratio=self.mlp_ratio,
            hidden_size=self.width,
            num_classes=self.num_classes,
            enable_fusion=False,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            drop_path_rate=0.0,
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

    Our log-mel front end, transformers' HTS-AT (see the module docstring),
    and CLAP's projection of HTS-AT's pooled final tokens. Every dropout is
    off and training-only parts of msclap (SpecAugment, mixup, random crops)
    are left out: this is a frozen feature extractor.
    """

    def __init__(self, config: ClapAudioConfig | None = None):
        super().__init__()
        self.config = config = config or ClapAudioConfig()
        self.log_mel = LogMel(config)
        self.htsat = ClapAudioModel(config.transformers_config())
        frequency_rows = config.token_grid // config.freq_ratio
        self.token_semantic = nn.Conv2d(config.width, config.num_classes, kernel_size=(frequency_rows, 3), padding=(0, 1))
        self.projection = Projection(config.width, config.projection_dim)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.projection(self._encode(waveform).pooler_output)

    def tag(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(N, num_classes)`` clip-wise AudioSet probabilities from the token-semantic head."""
        return torch.sigmoid(self.token_semantic(self.tokens(waveform)).flatten(2).mean(dim=2))

    def tokens(self, waveform: torch.Tensor) -> torch.Tensor:
        """Final normalised tokens as a ``(N, width, frequency rows, time columns)`` map."""
        return self._encode(waveform).last_hidden_state

    def _encode(self, waveform: torch.Tensor) -> BaseModelOutputWithPooling:
        log_mel = self.log_mel(waveform)
        frames, config = log_mel.shape[1], self.config
        if frames > config.max_frames:
            samples = config.max_frames * config.hop - 1
            raise ValueError(f"input is {frames} frames; at most {config.max_frames} frames ({samples} samples) fit HTS-AT's image")
        return self.htsat(log_mel[:, None])

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
        ours = {key: _official_key(key) for key in model.state_dict()}
        expected = _derived_tensors(model)
        for key, tensor in model.state_dict().items():  # query, key and value come in that order: stack them as msclap
            official, part = ours[key]
            expected[official] = torch.cat([expected[official], tensor]) if part else tensor
        problems = _mismatches(expected, found)
        if problems:
            raise AvsegError(f"{path}: does not fit the MS-CLAP audio branch: {problems}")
        for key, tensor in _derived_tensors(model).items():
            error = (found[key].double() - tensor.double()).abs().max().item()
            if error > _DERIVED_TOLERANCE * max(tensor.abs().max().item(), 1.0):
                raise AvsegError(f"{path}: {key} differs from this port's by {error:.3g}; the weights use another front end or geometry")
        loaded = {key: found[official] if part is None else found[official].chunk(3)[part] for key, (official, part) in ours.items()}
        model.load_state_dict(loaded, strict=True)
        return model


_RENAMES = (
    (r"^htsat\.audio_encoder\.batch_norm\.", "bn0."),
    (r"^htsat\.audio_encoder\.", ""),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.attention\.self\.(query|key|value)\.", ".attn.qkv."),
    (r"\.attention\.self\.", ".attn."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"^token_semantic\.", "tscam_conv."),
)
_QKV = ("query", "key", "value")


def _official_key(key: str) -> tuple[str, int | None]:
    """The msclap checkpoint name of one of our state-dict keys, and which third of msclap's fused qkv it is."""
    if key.startswith("projection."):
        return _PROJECTION + re.sub(r"^norm\.", "layer_norm.", key.removeprefix("projection.")), None
    fused = re.search(r"\.attention\.self\.(query|key|value)\.", key)
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return _HTSAT + key, _QKV.index(fused.group(1)) if fused else None


def _derived_tensors(model: ClapAudio) -> dict[str, torch.Tensor]:
    """The checkpoint's configuration-determined tensors (front end and window geometry), recomputed."""
    real, imag = model.log_mel.dft.chunk(2)
    tensors = {
        _HTSAT + "spectrogram_extractor.stft.conv_real.weight": real,
        _HTSAT + "spectrogram_extractor.stft.conv_imag.weight": imag,
        _HTSAT + "logmel_extractor.melW": model.log_mel.filterbank,
    }
    htsat = model.htsat.audio_encoder
    for stage_index, (stage, (height, width)) in enumerate(zip(htsat.layers, htsat.input_resolutions)):
        for block_index, block in enumerate(stage.blocks):
            prefix = f"{_HTSAT}layers.{stage_index}.blocks.{block_index}."
            tensors[prefix + "attn.relative_position_index"] = block.attention.self.relative_position_index
            block.set_shift_and_window_size((height, width))  # what its forward does: no shift when one window covers the grid
            mask = block.get_attn_mask(height, width, torch.float32, real.device)
            if mask is not None:
                tensors[prefix + "attn_mask"] = mask
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
        weight = self.network.projection.linear1.weight
        chunks = windows.to(weight.device, weight.dtype).split(self.batch_windows)
        return torch.cat([self.network(chunk) for chunk in chunks])
