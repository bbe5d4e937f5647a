"""AV2T-SAM's audio adapters: one spatially constant bias per frozen encoder block.

Before frozen block ``i`` runs, ``MLP_i(f)`` (``f`` the fused audio-visual feature) is
added to every token of the block's input. There is no cross-attention and the block
itself is untouched: the biases enter through forward *pre*-hooks, so no file of
transformers is forked, and a backbone from any text-prompted SAM (SAM 2's Hiera, SAM's
ViT-H, SAM 3's ViT) takes them the same way.

Two heads, as in the release:

- per-block: ``Linear(d, h), GELU, Linear(h, C_i)`` with ``C_i`` the *input* width of block
  ``i`` (EVF-SAM2's 48 Hiera-L blocks: 144, 288, 576, 1152 by stage, the first block of a
  stage still taking the previous stage's width);
- shared: ``Linear(d, h), GELU`` per block and one ``Linear(h, C)`` shared by all blocks
  (EVF-SAM's 32 ViT-H blocks, C = 1280).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class AudioBiasAdapters(nn.Module):
    """Per-block bias MLPs, hooked in front of ``blocks`` (channels-last inputs, batch first).

    Args:
        blocks: the frozen blocks, in order.
        widths: each block's input width ``C_i``.
        condition_dim: width of the fused feature.
        hidden_dim: width of each MLP's hidden layer.
        shared: one output layer shared by all blocks (then every width must be equal).
    """

    def __init__(self, blocks: Sequence[nn.Module], widths: Sequence[int], condition_dim: int = 512, hidden_dim: int = 512, shared: bool = False):
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError(f"{len(blocks)} blocks but {len(widths)} widths")
        if shared and len(set(widths)) != 1:
            raise ValueError(f"a shared output layer needs equal widths, got {sorted(set(widths))}")
        if shared:
            self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(condition_dim, hidden_dim), nn.GELU()) for _ in widths)
            self.shared_out = nn.Linear(hidden_dim, widths[0])
        else:
            self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(condition_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, w)) for w in widths)
            self.shared_out = None
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self._biases: list[torch.Tensor] | None = None
        # Plain attribute: the blocks belong to the frozen backbone, not to this module's state.
        self._handles = [block.register_forward_pre_hook(self._hook(i)) for i, block in enumerate(blocks)]

    def biases(self, condition: torch.Tensor) -> list[torch.Tensor]:
        """One ``(N, C_i)`` bias per block."""
        hidden = [mlp(condition) for mlp in self.mlps]
        return [self.shared_out(h) for h in hidden] if self.shared_out is not None else hidden

    def _hook(self, index: int):
        def add_bias(module, args):
            if self._biases is None:
                raise RuntimeError("adapted block called outside AudioBiasAdapters.conditioned()")
            hidden, *rest = args
            bias = self._biases[index]
            return (hidden + bias.view(bias.shape[0], *[1] * (hidden.ndim - 2), bias.shape[1]), *rest)

        return add_bias

    @contextmanager
    def conditioned(self, condition: torch.Tensor) -> Iterator[None]:
        """Run the adapted blocks with the biases of ``condition`` (N, condition_dim)."""
        self._biases = self.biases(condition)
        try:
            yield
        finally:
            self._biases = None


def recompute_in_backward(blocks: Sequence[nn.Module], enabled: bool = True) -> None:
    """Activation checkpointing for frozen ``blocks``: keep only each block's input, recompute it in backward.

    The adapters make gradients flow *through* the frozen encoder (the bias of block ``i``
    needs the gradient of every later block), so without this every activation of the image
    encoder stays alive until backward. The block's ``forward`` is wrapped on the instance,
    which keeps its parameter names, and its forward pre-hooks (the adapter biases) still run
    outside the recomputed region, once.
    """
    for block in blocks:
        if not hasattr(block, "_avseg_forward"):
            block._avseg_forward = block.forward

            def forward(*args, _block=block, **kwargs):
                if _block._avseg_recompute and torch.is_grad_enabled():
                    return checkpoint(_block._avseg_forward, *args, use_reentrant=False, **kwargs)
                return _block._avseg_forward(*args, **kwargs)

            block.forward = forward
        block._avseg_recompute = enabled
