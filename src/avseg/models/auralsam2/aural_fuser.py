"""The AuralFuser: audio and SAM 2's feature pyramid, fused level by level into prompts for SAM 2's decoder.

Per clip of N frames (the frames are one group: the audio blocks attend across them, and the fusion
attends from every frame to every frame's audio)::

    audio  a  = [VGGish(left) | VGGish(right)]                    (N, 256)
    level l   (FPN 256x256, 128x128, 64x64 at 1024 input; 64x64 after the patch embedding, l = 0, 1, 2)
        x  = patch_embed_l(fpn_l)                                  (N, 4096, 256)
        x  = x + pos                      (l = 0)
        x  = smooth_l(x + x_{l-1}) + pos  (l > 0: the cascade)
        x  = PVT-v2 blocks (3, 6, 12 deep)(x);   a = audio blocks (3 deep)(a + p1d)
        x, a = fusion_l(x + pos, a + p1d)         the bidirectional audio-visual fusion, zero-initialised gates
    visual prompts x_0, x_1, x_2 and audio prompts a_0, a_1, a_2 (the decoder takes them deepest first)

``pos`` is SAM 2's 2-D sine encoding of the 64x64 grid, ``p1d`` the 1-D sine encoding of position 0
(``[0, 1, 0, 1, ...]``), added as the release adds them. Two projection heads map the visual and
audio prompts into a 128-d space for the audio-guided contrastive loss (training only).

Decisions (the release's code, ``model/aural_fuser.py`` at 64a16dd, wins over the paper's words):

- **Memory-order reshapes, kept.** The fusion module turns its channel-first maps into attention rows
  with ``reshape(1, -1, 128)`` and back with ``view`` without permuting channels to the end, so a "token"
  is a run of 128 values of one channel map, and all frames of the clip share one attention. The
  released weights were trained with that arithmetic, so :class:`AudioVisualFusion` reproduces it
  exactly, named as what it is.
- **A clip of one frame works.** The release squeezes every singleton axis, which breaks the shapes
  when the clip has one frame; we keep the frame axis explicitly (identical results for two or more).
- **Parameters the release builds but never runs are kept**, so its checkpoints load strictly: the
  audio blocks' depth-wise convolution and spatial-reduction layers, and the fusion's ``g`` and
  ``align_channel_back``. They receive no gradient.

**The Ref-AVS variant** (the release's ``ref-avs.code/model/aural_fuser.py``, ``text_width`` set): the referring
expression's token features (the frozen text encoder's ``last_hidden_state``, all 25 padded positions) pass
through ``text_projection`` (768 -> 1024 -> 256, GELU) and are appended to the clip's audio rows, so the audio
blocks and the fusion attend over ``N + 25`` rows; the decoder takes the first ``N`` (one per frame). Its
contrastive heads are MLPs (linear, GELU, LayerNorm, linear) on the fusion's *gated update* of the visual map
(not the fused map) and on the audio rows of the frames. One release bug is done right: its visual head
L2-normalises each channel over the 4096 pixels (``normalize(dim=1)`` of a ``(N, pixels, 128)`` tensor); we
normalise each pixel's embedding, as its audio head and the AVS variant do and as the cosine similarities of
the contrastive loss need. The heads are used only by the training loss; inference is unchanged by this.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.sam2_video.modeling_sam2_video import (
    Sam2VideoPositionEmbeddingSine,
)

WIDTH = 256
"""SAM 2's FPN width, which is the fuser's width and the stereo VGGish width (the release fixes all three at 256)."""


def audio_position(width: int = WIDTH) -> torch.Tensor:
    """The release's 1-D sine encoding of position 0 (``positionalencoding1d(256, 1)``): ``[0, 1, 0, 1, ...]``."""
    position = torch.zeros(1, 1)
    frequencies = torch.exp(torch.arange(0, width, 2, dtype=torch.float) * -(math.log(10000.0) / width))
    encoding = torch.zeros(1, width)
    encoding[:, 0::2] = torch.sin(position * frequencies)
    encoding[:, 1::2] = torch.cos(position * frequencies)
    return encoding[0]


class SpatialReductionAttention(nn.Module):
    """PVT-v2's attention: keys and values from the map strided down by ``reduction`` (a conv and a LayerNorm)."""

    def __init__(self, dim: int, heads: int, reduction: int, dropout: float, bias: bool = True):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, dim * 2, bias=bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.reduction = reduction
        if reduction > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=reduction, stride=reduction)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, height: int, width: int, reduce: bool = True) -> torch.Tensor:
        batch, tokens, dim = x.shape
        source = x
        if reduce and self.reduction > 1:
            source = self.sr(x.transpose(1, 2).reshape(batch, dim, height, width)).flatten(2).transpose(1, 2)
            source = self.norm(source)
        q = self.q(x).view(batch, tokens, self.heads, -1).transpose(1, 2)
        k, v = self.kv(source).view(batch, -1, 2, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, tokens, dim)))


class DepthwiseConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, dim = x.shape
        return self.dwconv(x.transpose(1, 2).view(batch, dim, height, width)).flatten(2).transpose(1, 2)


class ConvMlp(nn.Module):
    """PVT-v2's MLP: a 3x3 depth-wise convolution between the two linear layers (``spatial=False``: none, as the
    release's audio MLP, which builds the convolution but never runs it)."""

    def __init__(self, dim: int, hidden: int, dropout: float, spatial: bool = True):
        super().__init__()
        self.spatial = spatial
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, height: int = 0, width: int = 0) -> torch.Tensor:
        x = self.fc1(x)
        if self.spatial:
            x = self.dwconv(x, height, width)
        return self.drop(self.fc2(self.drop(F.gelu(x))))


class PyramidBlock(nn.Module):
    """A PVT-v2 block over one level's 64x64 tokens (pre-norm attention with spatial reduction, then the conv MLP)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, reduction: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SpatialReductionAttention(dim, heads, reduction, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvMlp(dim, dim * mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), height, width)
        return x + self.mlp(self.norm2(x), height, width)


class AudioBlock(nn.Module):
    """The 1-D audio block: the clip's frames (one 256-d vector each) attend to each other, then an MLP.
    Built like :class:`PyramidBlock` (the release's ``OneDBlock``), without spatial reduction or convolution."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, reduction: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SpatialReductionAttention(dim, heads, reduction, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvMlp(dim, dim * mlp_ratio, dropout, spatial=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``(N, dim)`` -> ``(N, dim)``: the N frames are the attention's sequence."""
        x = audio[None]
        x = x + self.attn(self.norm1(x), 0, 0, reduce=False)
        return (x + self.mlp(self.norm2(x)))[0]


class AudioVisualFusion(nn.Module):
    """The bidirectional fusion (TPAVI-style, the release's ``AudioVisualFusionModule``): the visual map attends
    to the clip's audio, the audio to the clip's visual map, each added back through a zero-initialised
    gate (a 1x1 convolution and a BatchNorm whose scale and shift start at 0), then a LayerNorm.

    Both attentions run over all frames at once with rows made by memory-order reshapes (see the module
    docstring), and each is normalised by its number of rows (the release's ``f / f.size(1)``), not softmaxed.
    """

    def __init__(self, dim: int = WIDTH):
        super().__init__()
        inner = self.inner = dim // 2
        self.align_channel = nn.Conv1d(dim, dim, kernel_size=1)
        self.align_channel_back = nn.Conv1d(dim, inner, kernel_size=1)  # built, never run (see the module docstring)
        self.norm_layer = nn.LayerNorm(dim)
        self.g = nn.Conv3d(dim, inner, kernel_size=1)  # built, never run
        self.W_z = nn.Sequential(nn.Conv3d(inner, dim, kernel_size=1), nn.BatchNorm3d(dim))
        self.W_z2 = nn.Sequential(nn.Conv1d(inner, dim, kernel_size=1), nn.BatchNorm1d(dim))
        for gate in (self.W_z[1], self.W_z2[1]):
            nn.init.zeros_(gate.weight)
            nn.init.zeros_(gate.bias)
        self.norm_layer2 = nn.LayerNorm(dim)
        self.q_frame, self.k_frame, self.v_frame = (nn.Conv3d(dim, inner, kernel_size=1) for _ in range(3))
        self.q_audio, self.k_audio, self.v_audio = (nn.Conv1d(dim, inner, kernel_size=1) for _ in range(3))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(N, H*W, dim)`` visual tokens and ``(M, dim)`` audio rows (M = N, or N + the expression's tokens) -> the
        fused pair, same shapes, and the gated visual update ``(N, dim, 1, H, W)`` (what the Ref-AVS heads project)."""
        frames, _, dim = visual.shape
        frame = visual.transpose(1, 2).reshape(frames, dim, 1, height, width)
        audio = self.align_channel(audio[..., None])  # (N, dim, 1)

        def rows(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(1, -1, self.inner)  # memory order, as the release

        q_frame, k_frame, v_frame = rows(self.q_frame(frame)), rows(self.k_frame(frame)), rows(self.v_frame(frame))
        q_audio, k_audio, v_audio = rows(self.q_audio(audio)), rows(self.k_audio(audio)), rows(self.v_audio(audio))

        to_audio = q_frame @ k_audio.mT
        frame_update = (to_audio / to_audio.shape[1]) @ v_audio
        frame_update = frame_update.transpose(1, 2).contiguous().view(frames, self.inner, 1, height, width)
        frame_update = self.W_z(frame_update)
        frame = frame_update + frame
        frame = self.norm_layer(frame.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        visual = frame.reshape(frames, dim, height * width).transpose(1, 2)

        to_frames = q_audio @ k_frame.mT
        audio_update = (to_frames / to_frames.shape[-1]) @ v_frame
        audio_update = audio_update.transpose(1, 2).contiguous().view(len(audio), self.inner, 1)
        audio = self.W_z2(audio_update) + audio
        return visual, self.norm_layer2(audio[..., 0]), frame_update


class ProjectionHead(nn.Module):
    """1x1 conv, BatchNorm, 1x1 conv, then L2 normalisation over channels (2-D maps, or 1-D for audio)."""

    def __init__(self, dim: int = WIDTH, out: int = 128, one_d: bool = False):
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if one_d else (nn.Conv2d, nn.BatchNorm2d)
        self.proj = nn.Sequential(conv(dim, out, kernel_size=1), norm(out), conv(out, out, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(x), p=2, dim=1)


class MlpProjectionHead(nn.Module):
    """The Ref-AVS variant's head: linear, GELU, LayerNorm, linear on the last axis, then L2 normalisation over it."""

    def __init__(self, dim: int = WIDTH, out: int = 128):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(dim, out), nn.GELU(), nn.LayerNorm(out), nn.Linear(out, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(x), p=2, dim=-1)


class AuralFuser(nn.Module):
    """The fuser (see the module docstring). ``patch_sizes``: the patch-embedding kernel (= stride) per FPN level,
    chosen so that every level becomes ``grid`` x ``grid``; ``depths``: PVT-v2 blocks per level; ``text_width``: the
    text encoder's width for the Ref-AVS variant (None: no text), ``text_hidden`` its projection's hidden width."""

    def __init__(
        self,
        width: int = WIDTH,
        grid: int = 64,
        patch_sizes: tuple[int, ...] = (4, 2, 1),
        depths: tuple[int, ...] = (3, 6, 12),
        audio_depth: int = 3,
        heads: int = 4,
        mlp_ratio: int = 4,
        reduction: int = 4,
        dropout: float = 0.1,
        text_width: int | None = None,
        text_hidden: int = 1024,
    ):
        super().__init__()
        self.grid, self.width = grid, width
        self.patch_embeds = nn.ModuleList(nn.Conv2d(width, width, kernel_size=k, stride=k) for k in patch_sizes)
        block = {"dim": width, "heads": heads, "mlp_ratio": mlp_ratio, "reduction": reduction, "dropout": dropout}
        self.visual_blocks = nn.ModuleList(nn.ModuleList(PyramidBlock(**block) for _ in range(depth)) for depth in depths)
        self.audio_blocks = nn.ModuleList(nn.ModuleList(AudioBlock(**block) for _ in range(audio_depth)) for _ in depths)
        self.fusions = nn.ModuleList(AudioVisualFusion(width) for _ in depths)
        self.smooth_convs = nn.ModuleList(nn.Conv2d(width, width, kernel_size=1) for _ in depths[1:])
        self.text_width = text_width
        if text_width is None:
            self.visual_projection = ProjectionHead(width)
            self.audio_projection = ProjectionHead(width, one_d=True)
        else:
            self.visual_projection, self.audio_projection = MlpProjectionHead(width), MlpProjectionHead(width)
            self.text_projection = nn.Sequential(nn.Linear(text_width, text_hidden), nn.GELU(), nn.Linear(text_hidden, width))
        self.position = Sam2VideoPositionEmbeddingSine(num_position_features=width // 2, normalize=True)
        self.register_buffer("audio_position", audio_position(width), persistent=False)

    def forward(
        self, pyramid: list[torch.Tensor], audio: torch.Tensor, text: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """SAM 2's FPN levels ``(N, width, h_l, w_l)`` (highest resolution first), the stereo VGGish embeddings
        ``(N, width)`` and, for the Ref-AVS variant, the expression's token features ``(L, text_width)`` -> per level
        the visual prompt ``(N, grid*grid, 256)``, the audio rows ``(N [+ L], 256)`` (the first N are the frames'
        audio prompts) and the fusion's gated visual update ``(N, 256, 1, grid, grid)``, in pyramid order."""
        if (text is None) != (self.text_width is None):
            raise ValueError("the Ref-AVS variant needs the expression's features, the AVS one takes none")
        if text is not None:
            audio = torch.cat([audio, self.text_projection(text)])
        size = self.grid
        visual_prompts: list[torch.Tensor] = []
        audio_prompts: list[torch.Tensor] = []
        updates: list[torch.Tensor] = []
        for level, (embed, fusion) in enumerate(zip(self.patch_embeds, self.fusions)):
            x = embed(pyramid[level])
            position = self.position(x.shape, x.device, x.dtype).flatten(2).transpose(1, 2)
            x = x.flatten(2).transpose(1, 2)
            if level > 0:  # the cascade: the previous level's output, smoothed
                x = self.smooth_convs[level - 1]((x + visual_prompts[-1]).transpose(1, 2).reshape(len(x), self.width, size, size))
                x = x.flatten(2).transpose(1, 2)
            x = x + position
            audio = audio + self.audio_position
            for block in self.visual_blocks[level]:
                x = block(x, size, size)
            for block in self.audio_blocks[level]:
                audio = block(audio)
            x, audio, update = fusion(x + position, audio + self.audio_position, size, size)
            visual_prompts.append(x)
            audio_prompts.append(audio)
            updates.append(update)
        return visual_prompts, audio_prompts, updates

    def project(
        self, visual_prompts: list[torch.Tensor], audio_prompts: list[torch.Tensor], visual_updates: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The contrastive-loss embeddings: per level ``(N, 128, grid, grid)`` and ``(N, 128, 1)``, unit length (the
        Ref-AVS variant projects the gated updates; ``audio_prompts`` hold the N frames' rows)."""
        size = self.grid
        if self.text_width is not None:
            visual = [self.visual_projection(u.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(len(u), -1, size, size) for u in visual_updates]
            return visual, [self.audio_projection(a)[..., None] for a in audio_prompts]
        visual = [self.visual_projection(x.transpose(1, 2).reshape(-1, self.width, size, size)) for x in visual_prompts]
        audio = [self.audio_projection(a[..., None]) for a in audio_prompts]
        return visual, audio
