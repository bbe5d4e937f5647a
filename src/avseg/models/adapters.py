"""Audio-conditioned adapters injected into frozen transformer blocks with hooks.

A frozen pretrained network (Swin, a pixel decoder, a mask decoder, a ViT)
stays untouched: :class:`AdapterInjection` registers forward hooks on chosen
blocks, and each hook adds a small trainable adapter's output to the block's
output. The adapters read the current conditioning vector (an audio
embedding) that the owning model sets for the duration of one forward pass
with :meth:`AdapterInjection.conditioned`. No file of transformers is forked,
and the adapters live in the owning model's state dict.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn


class ConditionedAdapter(nn.Module):
    """``h + up(gelu(down(h) + cond(c)))``: a bottleneck adapter steered by a conditioning vector.

    ``up`` starts at zero, so an untrained adapter leaves the frozen block's
    output unchanged and training starts from the pretrained model.
    """

    def __init__(self, dim: int, condition_dim: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.condition = nn.Linear(condition_dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(nn.functional.gelu(self.down(hidden) + self.condition(condition)))


class AdapterInjection(nn.Module):
    """Adapters attached to the outputs of ``blocks``.

    Args:
        blocks: the frozen modules whose output (or first output, if they
            return a tuple) is adapted.
        dims: channel width of each block's output.
        batch_dim: which axis of the block outputs is the batch (0 for
            ``(B, L, C)``, 1 for sequence-first ``(L, B, C)``).
    """

    def __init__(self, blocks: Sequence[nn.Module], dims: Sequence[int], condition_dim: int, bottleneck: int, batch_dim: int = 0):
        super().__init__()
        self.adapters = nn.ModuleList(ConditionedAdapter(d, condition_dim, bottleneck) for d in dims)
        self.batch_dim = batch_dim
        self._condition: torch.Tensor | None = None
        # Plain attributes: the blocks belong to the frozen model, not to this module's state.
        self._handles = [block.register_forward_hook(self._hook(k)) for k, block in enumerate(blocks)]

    def _hook(self, index: int):
        def hook(module, inputs, output):
            if self._condition is None:
                raise RuntimeError("adapted block called outside AdapterInjection.conditioned()")
            hidden = output[0] if isinstance(output, tuple) else output
            shape = [1] * hidden.ndim
            shape[self.batch_dim], shape[-1] = hidden.shape[self.batch_dim], -1
            adapted = self.adapters[index](hidden, self._condition.reshape(shape))
            return (adapted, *output[1:]) if isinstance(output, tuple) else adapted

        return hook

    @contextmanager
    def conditioned(self, condition: torch.Tensor) -> Iterator[None]:
        """Run the adapted blocks conditioned on ``condition`` (B, condition_dim)."""
        self._condition = condition
        try:
            yield
        finally:
            self._condition = None
