"""BEiT-3, the multiway transformer EVF-SAM2 (and so AV2T-SAM) uses as its prompt encoder.

BEiT-3 ("Image as a Foreign Language", Wang et al., 2022) encodes an image and
a text as one sequence, ``[vision CLS, patches | text tokens]``. Every block
shares its self-attention across the whole sequence but routes each token
through a *modality expert*: vision tokens through the ``A`` copy of every
projection, LayerNorm and FFN, text tokens through the ``B`` copy. EVF-SAM2
feeds BEiT-3-Large a 224x224 image (normalised with mean = std = 0.5) and the
prompt, and keeps the vision CLS row of the output, ``encoder_out[:, :1]``.
AV2T-SAM replaces the prompt's word embeddings with pseudo text tokens
projected from audio (``text_embeds``).

This re-implements torchscale 0.2.0's ``BEiT3`` (the version EVF-SAM pins) for
the configuration EVF uses (``_get_large_config`` / ``_get_base_config`` over
torchscale's ``EncoderConfig`` defaults). Decisions:

* **State-dict names equal torchscale's**, so the ``mm_extractor.beit3.``
  entries of an EVF-SAM2 / AV2T-SAM checkpoint load strictly once that prefix
  is stripped (:meth:`BEiT3.load_official_state_dict`). Hence two odd names:
  the position tables live under ``encoder.embed_positions``, and
  ``vision_embed.mask_token`` (BEiT-3's masked-image-modelling token, unused
  here) exists only so that loading stays strict.
* **Positions** come from two learned tables, as in torchscale: vision token
  ``i`` reads row ``i + 2`` of table ``A``, text token ``j`` row ``j + 2`` of
  table ``B`` (fairseq reserves rows 0 and 1), so text positions restart after
  the image. Embeddings are not scaled and have no LayerNorm.
* **Sub-LN** (Magneto): pre-LN blocks with one more LayerNorm on the attention
  output before ``out_proj`` (``inner_attn_ln``) and one on the FFN's hidden
  layer before ``fc2`` (``ffn_layernorm``), and a final LayerNorm per modality.
* **text_embeds** replace the word-embedding lookup and nothing else:
  positions, padding and the encoder are shared with the ``input_ids`` path,
  as in AV2T-SAM's ``forward_text_embedding``.
* **Padding** (``text_padding_mask``, True = padding) is excluded from every
  attention's keys and its input is zeroed, as in torchscale; the output rows
  of padded tokens are not meaningful.
* Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`
  (fused kernels on GPU); in fp32 it matches torchscale's explicit softmax to
  rounding.
* Weights always come from a checkpoint, so initialisation is PyTorch's
  default (zeros for the CLS and mask tokens), not BEiT-3's pretraining init.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from avseg.errors import AvsegError

OFFICIAL_PREFIX = "mm_extractor.beit3."
"""Prefix of the BEiT-3 entries in EVF-SAM2 and AV2T-SAM state dicts."""

_POSITION_OFFSET = 2


@dataclass(frozen=True)
class BEiT3Config:
    """Architecture and regularisation of :class:`BEiT3`; the defaults are BEiT-3-Large as EVF-SAM2 builds it.

    torchscale names: ``dim`` = ``encoder_embed_dim``, ``depth`` =
    ``encoder_layers``, ``num_heads`` = ``encoder_attention_heads``, ``ffn_dim``
    = ``encoder_ffn_embed_dim``, ``max_text_positions`` =
    ``max_source_positions`` (rows of the text position table, the offset of 2
    included).
    """

    dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    ffn_dim: int = 4096
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    vocab_size: int = 64010
    max_text_positions: int = 1024
    layernorm_eps: float = 1e-5
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    drop_path_rate: float = 0.0

    @classmethod
    def large(cls) -> BEiT3Config:
        return cls()

    @classmethod
    def base(cls) -> BEiT3Config:
        return cls(dim=768, depth=12, num_heads=12, ffn_dim=3072)

    @classmethod
    def tiny(cls) -> BEiT3Config:
        """A two-layer model for tests: 32x32 images, 4 patches, texts of up to 14 tokens."""
        return cls(
            dim=32,
            depth=2,
            num_heads=2,
            ffn_dim=128,
            img_size=32,
            vocab_size=100,
            max_text_positions=16,
        )

    @property
    def num_vision_tokens(self) -> int:
        """The CLS token and one token per patch."""
        return (self.img_size // self.patch_size) ** 2 + 1


class Multiway(nn.Module):
    """Runs tokens before ``split`` through the vision expert ``A`` and the rest through the language expert ``B``."""

    def __init__(self, vision: nn.Module, text: nn.Module):
        super().__init__()
        self.A = vision
        self.B = text

    @classmethod
    def twins(cls, make: Callable[[], nn.Module]) -> Multiway:
        return cls(make(), make())

    def forward(self, x: torch.Tensor, split: int) -> torch.Tensor:
        if split == x.size(1):
            return self.A(x)
        return torch.cat([self.A(x[:, :split]), self.B(x[:, split:])], dim=1)


class PositionTable(nn.Embedding):
    """Learned absolute positions: ``(N, L, dim)`` tokens -> ``(1, L, dim)`` rows ``2 .. L + 1``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight[_POSITION_OFFSET : _POSITION_OFFSET + x.size(1)].unsqueeze(0)


class VisionEmbedding(nn.Module):
    """Non-overlapping patches projected to ``dim``, with a learned CLS token in front."""

    def __init__(self, config: BEiT3Config):
        super().__init__()
        self.img_size = config.img_size
        self.proj = nn.Conv2d(
            config.in_chans,
            config.dim,
            kernel_size=config.patch_size,
            stride=config.patch_size,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.dim))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"BEiT-3 takes {self.img_size}x{self.img_size} images, "
                f"got {tuple(pixel_values.shape[-2:])}"
            )
        patches = self.proj(pixel_values).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.size(0), -1, -1)
        return torch.cat([cls, patches], dim=1)


class MultiwayAttention(nn.Module):
    """Self-attention over the whole sequence with per-modality projections and sub-LN."""

    def __init__(self, config: BEiT3Config):
        super().__init__()
        linear = partial(nn.Linear, config.dim, config.dim)
        self.num_heads = config.num_heads
        self.dropout = config.attention_dropout
        self.k_proj = Multiway.twins(linear)
        self.v_proj = Multiway.twins(linear)
        self.q_proj = Multiway.twins(linear)
        self.out_proj = Multiway.twins(linear)
        self.inner_attn_ln = Multiway.twins(
            partial(nn.LayerNorm, config.dim, eps=config.layernorm_eps)
        )

    def forward(
        self, x: torch.Tensor, split: int, keep: torch.Tensor | None
    ) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = (
            proj(x, split).view(n, length, self.num_heads, -1).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(n, length, dim)
        return self.out_proj(self.inner_attn_ln(attended, split), split)


class FeedForward(nn.Module):
    """``fc2(LayerNorm(gelu(fc1(x))))``, the sub-LN FFN of one modality expert."""

    def __init__(self, config: BEiT3Config):
        super().__init__()
        self.fc1 = nn.Linear(config.dim, config.ffn_dim)
        self.ffn_layernorm = nn.LayerNorm(config.ffn_dim, eps=config.layernorm_eps)
        self.fc2 = nn.Linear(config.ffn_dim, config.dim)
        self.activation_dropout = nn.Dropout(config.activation_dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation_dropout(F.gelu(self.fc1(x)))
        return self.dropout(self.fc2(self.ffn_layernorm(hidden)))


class EncoderLayer(nn.Module):
    """A pre-LN block: shared attention and a modality-expert FFN, each on a residual branch."""

    def __init__(self, config: BEiT3Config, drop_path: float):
        super().__init__()
        layer_norm = partial(nn.LayerNorm, config.dim, eps=config.layernorm_eps)
        self.self_attn = MultiwayAttention(config)
        self.self_attn_layer_norm = Multiway.twins(layer_norm)
        self.ffn = Multiway.twins(partial(FeedForward, config))
        self.final_layer_norm = Multiway.twins(layer_norm)
        self.dropout = nn.Dropout(config.dropout)
        self.drop_path = drop_path

    def forward(
        self, x: torch.Tensor, split: int, keep: torch.Tensor | None
    ) -> torch.Tensor:
        attended = self.self_attn(self.self_attn_layer_norm(x, split), split, keep)
        x = x + self._drop_path(self.dropout(attended))
        return x + self._drop_path(self.ffn(self.final_layer_norm(x, split), split))

    def _drop_path(self, branch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth: drops the whole branch of a sample with probability ``drop_path``."""
        if not self.training or self.drop_path == 0.0:
            return branch
        survival = 1.0 - self.drop_path
        kept = branch.new_empty(branch.size(0), 1, 1).bernoulli_(survival)
        return branch * kept / survival


class Encoder(nn.Module):
    """Positions, the stack of multiway layers and the final per-modality LayerNorm."""

    def __init__(self, config: BEiT3Config):
        super().__init__()
        self.embed_positions = Multiway(
            PositionTable(config.num_vision_tokens + _POSITION_OFFSET, config.dim),
            PositionTable(config.max_text_positions, config.dim),
        )
        self.dropout = nn.Dropout(config.dropout)
        # Stochastic depth grows linearly from 0 at the first layer to drop_path_rate at the last.
        steps = max(config.depth - 1, 1)
        self.layers = nn.ModuleList(
            EncoderLayer(config, config.drop_path_rate * i / steps)
            for i in range(config.depth)
        )
        self.layer_norm = Multiway.twins(
            partial(nn.LayerNorm, config.dim, eps=config.layernorm_eps)
        )
        self.gradient_checkpointing = False

    def forward(
        self, x: torch.Tensor, split: int, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        x = self.dropout(x + self.embed_positions(x, split))
        keep = None
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
            keep = ~padding_mask[:, None, None, :]
        for layer in self.layers:
            # Gradients reach the frozen encoder's inputs (AV2T-SAM trains the
            # projector through it), so checkpoint whenever autograd records.
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, split, keep, use_reentrant=False)
            else:
                x = layer(x, split, keep)
        return self.layer_norm(x, split)


class BEiT3(nn.Module):
    """The BEiT-3 multiway encoder; see the module docstring."""

    def __init__(self, config: BEiT3Config):
        super().__init__()
        self.config = config
        self.text_embed = nn.Embedding(config.vocab_size, config.dim)
        self.vision_embed = VisionEmbedding(config)
        self.encoder = Encoder(config)

    @property
    def gradient_checkpointing(self) -> bool:
        """Recompute each layer's activations in the backward pass (off by default)."""
        return self.encoder.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        self.encoder.gradient_checkpointing = enabled

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        text_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode images and, optionally, texts.

        Args:
            pixel_values: ``(N, 3, img_size, img_size)``.
            input_ids: ``(N, T)`` token ids, or
            text_embeds: ``(N, T, dim)`` used in place of their word embeddings.
            text_padding_mask: ``(N, T)``, True (or nonzero) at padding tokens.

        Returns:
            ``(N, num_vision_tokens + T, dim)``; row 0 is the vision CLS token.
        """
        if input_ids is not None and text_embeds is not None:
            raise ValueError("pass input_ids or text_embeds, not both")
        x = self.vision_embed(pixel_values)
        split = x.size(1)
        if input_ids is not None:
            text_embeds = self.text_embed(input_ids)
        if text_embeds is None:
            if text_padding_mask is not None:
                raise ValueError("text_padding_mask was given without a text")
            return self.encoder(x, split, None)
        if text_embeds.size(1) > self.config.max_text_positions - _POSITION_OFFSET:
            raise ValueError(
                f"texts of at most {self.config.max_text_positions - _POSITION_OFFSET}"
                f" tokens, got {text_embeds.size(1)}"
            )
        x = torch.cat([x, text_embeds], dim=1)
        padding_mask = None
        if text_padding_mask is not None:
            padding_mask = F.pad(text_padding_mask.bool(), (split, 0), value=False)
        return self.encoder(x, split, padding_mask)

    def load_official_state_dict(
        self, state_dict: Mapping[str, torch.Tensor], prefix: str = OFFICIAL_PREFIX
    ) -> None:
        """Strictly load the ``prefix`` entries of an official state dict (other entries are ignored).

        ``prefix=""`` loads the state dict of a bare torchscale ``BEiT3``.
        Raises :class:`AvsegError` naming the missing, unexpected and
        wrong-shape entries on one line.
        """
        weights = {
            name[len(prefix) :]: value
            for name, value in state_dict.items()
            if name.startswith(prefix)
        }
        own = self.state_dict()
        problems = [
            _summary("missing", sorted(own.keys() - weights.keys())),
            _summary("unexpected", sorted(weights.keys() - own.keys())),
            _summary(
                "wrong shape",
                [
                    f"{name} {tuple(weights[name].shape)} != {tuple(own[name].shape)}"
                    for name in sorted(own.keys() & weights.keys())
                    if weights[name].shape != own[name].shape
                ],
            ),
        ]
        problems = [problem for problem in problems if problem]
        if problems:
            raise AvsegError(
                f"the BEiT-3 weights under {prefix!r} do not fit {self.config}: "
                + "; ".join(problems)
            )
        self.load_state_dict(weights)


def _summary(kind: str, names: list[str], shown: int = 3) -> str:
    if not names:
        return ""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f"{len(names)} {kind} ({', '.join(names[:shown])}{more})"
