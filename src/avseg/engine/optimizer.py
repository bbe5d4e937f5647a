"""The trainer's optimiser, learning-rate schedule and gradient clipping, as detectron2 / Mask2Former train.

**Parameter groups.** AdamW over the model's ``trainable_parameters()``, each parameter with its own learning rate
and weight decay, following Mask2Former's ``build_optimizer`` (which VCT's ``train_net.py`` keeps):

- ``lr * train.backbone_lr_multiplier`` for the parameters the model declares as ``backbone``;
- weight decay ``train.norm_weight_decay`` for the parameters of normalisation layers (the module types of
  :data:`NORM_TYPES`), ``train.embedding_weight_decay`` for those of ``nn.Embedding``, 0 for those the model declares
  as ``no_weight_decay`` (Mask2Former zeroes Swin's relative position bias tables by name, whatever the config);
  ``train.weight_decay`` for the rest.

A model declares its groups with ``parameter_groups() -> {"backbone": [...], "no_weight_decay": [...]}`` (either
key optional). A parameter's module is the first in ``named_modules()`` order that holds it, as in Mask2Former.
Parameters of equal settings share one group (groups in order of first appearance, parameters in
``trainable_parameters()`` order): AdamW's update is per parameter, so this is the same optimiser as Mask2Former's
group per parameter, with a smaller checkpoint; and a recipe with none of these settings gets one group of
``trainable_parameters()``, as before they existed, so older checkpoints resume. Each group records its
``lr_scale`` (the multiplier), so the logged rate is the recipe's ``lr`` under the schedule.

**Schedule.** ``poly`` is detectron2's ``WarmupPolyLR`` (``projects/DeepLab/deeplab/lr_scheduler.py``)::

    lr_step = lr_group * warmup_factor(step) * (1 - step / steps) ** poly_power

with ``warmup_factor`` detectron2's ``_get_warmup_factor_at_iter`` (``detectron2/solver/lr_scheduler.py``); its
``POLY_LR_CONSTANT_ENDING`` is 0 in every recipe avseg follows and is not offered. ``step`` counts from 0 at the
first iteration, and the schedule steps after each (detectron2's ``LRScheduler`` hook). ``constant`` takes the
warm-up too; ``cosine`` is PyTorch's ``CosineAnnealingLR`` (no warm-up).

**Clipping.** ``train.grad_clip_norm > 0``: ``clip_grad_norm_`` over every trained parameter together (L2), after
the micro-batches' gradients are summed (and, under torchrun, averaged) and before the step: Mask2Former's
``FullModelGradientClippingOptimizer``, which clips in ``step()``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avseg.errors import ConfigError

NORM_TYPES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm,
)  # fmt: skip
"""Mask2Former's ``norm_module_types`` (its ``train_net.py`` ``build_optimizer``)."""


def _declared(model: nn.Module, role: str) -> set[int]:
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else {}
    return {id(p) for p in groups.get(role, [])}


def parameter_groups(model: nn.Module, settings) -> list[dict[str, Any]]:
    """AdamW's parameter groups for ``model`` under the recipe's ``train`` ``settings`` (see the module docstring)."""
    trainable = list(model.trainable_parameters())
    backbone, no_decay = _declared(model, "backbone"), _declared(model, "no_weight_decay")
    if settings.backbone_lr_multiplier != 1.0 and not backbone:
        raise ConfigError(f"train.backbone_lr_multiplier: {type(model).__name__} declares no backbone parameters (set 1)")
    owner: dict[int, nn.Module] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            owner.setdefault(id(parameter), module)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for parameter in trainable:
        module = owner[id(parameter)]
        scale = settings.backbone_lr_multiplier if id(parameter) in backbone else 1.0
        decay = settings.weight_decay
        if id(parameter) in no_decay:
            decay = 0.0
        if isinstance(module, NORM_TYPES) and settings.norm_weight_decay is not None:
            decay = settings.norm_weight_decay
        if isinstance(module, nn.Embedding) and settings.embedding_weight_decay is not None:
            decay = settings.embedding_weight_decay
        group = groups.setdefault((scale, decay), {"params": [], "lr": settings.lr * scale, "weight_decay": decay, "lr_scale": scale})
        group["params"].append(parameter)
    return list(groups.values())


def build_optimizer(model: nn.Module, settings) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, settings), lr=settings.lr, weight_decay=settings.weight_decay)


def schedule_rate(optimizer: torch.optim.Optimizer) -> float:
    """The recipe's ``lr`` under the schedule now (the first group's rate without its multiplier)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)


def warmup_factor(method: str, step: int, warmup_steps: int, factor: float) -> float:
    """detectron2's ``_get_warmup_factor_at_iter``: 1 from ``warmup_steps`` on; before, ``factor`` (``constant``) or
    ``factor * (1 - step / warmup_steps) + step / warmup_steps`` (``linear``)."""
    if step >= warmup_steps:
        return 1.0
    if method == "constant":
        return factor
    alpha = step / warmup_steps
    return factor * (1 - alpha) + alpha


def poly_factor(step: int, steps: int, power: float) -> float:
    """``(1 - step / steps) ** power``, 0 past the end (detectron2's would raise there; avseg's last step is < steps)."""
    return max(1.0 - step / steps, 0.0) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, settings, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The recipe's schedule over the run: ``steps_per_epoch`` iterations an epoch (see :class:`~avseg.config.TrainConfig`)."""
    total = settings.epochs * (steps_per_epoch if settings.schedule_step == "iteration" else 1)
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=settings.min_lr)

    def factor(step: int) -> float:
        warm = warmup_factor(settings.warmup_method, step, settings.warmup_steps, settings.warmup_factor)
        return warm * (poly_factor(step, total, settings.poly_power) if settings.schedule == "poly" else 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Clip every group's gradients together to total L2 norm ``max_norm`` (0: leave them)."""
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], max_norm)
