"""The trainer's optimiser as detectron2 / Mask2Former build it (VCT's release): the poly schedule with warm-up,
parameter groups (backbone multiplier, norm / embedding / position-bias weight decay) and full-model clipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avseg.config import TrainConfig, load_recipe
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.optimizer import (
    NORM_TYPES,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    parameter_groups,
    schedule_rate,
)
from avseg.errors import ConfigError
from avseg.models.vct.model import VCT, VCTConfig


def detectron2_warmup_poly(iteration: int, max_iters: int, warmup_iters: int, warmup_factor: float, method: str, power: float) -> float:
    """detectron2's ``WarmupPolyLR.get_lr`` factor (projects/DeepLab/deeplab/lr_scheduler.py:44-58, constant ending 0)
    with ``_get_warmup_factor_at_iter`` (detectron2/solver/lr_scheduler.py:221-247), written out independently."""
    if iteration >= warmup_iters:
        warm = 1.0
    elif method == "constant":
        warm = warmup_factor
    else:
        warm = warmup_factor * (1 - iteration / warmup_iters) + iteration / warmup_iters
    return warm * math.pow(1.0 - iteration / max_iters, power)


@pytest.mark.parametrize("method", ["linear", "constant"])
def test_poly_with_warmup_follows_detectron2(method):
    settings = TrainConfig(epochs=3, lr=1e-4, schedule="poly", warmup_steps=7, warmup_factor=0.01, warmup_method=method, poly_power=0.9)
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=settings.lr)
    scheduler = build_scheduler(optimizer, settings, steps_per_epoch=10)
    for iteration in range(30):
        # LambdaLR multiplies the base rate by the factor; the formula here groups the products otherwise (rounding only)
        assert schedule_rate(optimizer) == pytest.approx(1e-4 * detectron2_warmup_poly(iteration, 30, 7, 0.01, method, 0.9), rel=1e-12, abs=0)
        optimizer.step()
        scheduler.step()


def test_warmup_is_refused_for_cosine():
    with pytest.raises(ConfigError, match="train.warmup_steps: warm-up is for the poly and constant schedules"):
        load_recipe(DEMO_RECIPE, ["train.warmup_steps=10"])


def owners(model: nn.Module) -> dict[int, nn.Module]:
    found: dict[int, nn.Module] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            found.setdefault(id(parameter), module)
    return found


def test_vct_groups_follow_the_release_build_optimizer():
    """train_net.py:173-195 with the recipes' values: the Swins at 0.1 x the rate, norms, embeddings and Swin's relative
    position bias tables without weight decay, the rest at 0.05; VGGish (frozen) nowhere."""
    model = VCT(VCTConfig.tiny())
    settings = TrainConfig(lr=1e-4, weight_decay=0.05, backbone_lr_multiplier=0.1, norm_weight_decay=0.0, embedding_weight_decay=0.0)
    optimizer = build_optimizer(model, settings)
    found = {id(p): (group["lr"], group["weight_decay"]) for group in optimizer.param_groups for p in group["params"]}
    names = {id(p): name for name, p in model.named_parameters()}
    assert sorted(found) == sorted(id(p) for p in model.trainable_parameters())
    assert not any(names[key].startswith("audio.vggish.") for key in found)
    module_of = owners(model)
    for key, (lr, decay) in found.items():
        name = names[key]
        assert lr == pytest.approx(1e-5 if name.startswith(("encoder.frame_encoder.", "encoder.mask_encoder.")) else 1e-4, rel=1e-12), name
        zero = isinstance(module_of[key], (*NORM_TYPES, nn.Embedding)) or name.endswith("relative_position_bias_table")
        assert decay == (0.0 if zero else 0.05), name
    decays = {names[key].rsplit(".", 1)[0]: decay for key, (_, decay) in found.items()}
    assert decays["decoder.query_feat"] == 0.0 and decays["encoder.weightings.0.fc1"] == 0.05
    assert schedule_rate(optimizer) == pytest.approx(1e-4, rel=1e-12)


def test_without_group_settings_one_group_keeps_the_parameter_order():
    model = VCT(VCTConfig.tiny())
    settings = TrainConfig(lr=1e-4, weight_decay=0.05)
    groups = parameter_groups(model, settings)
    # Swin's position bias tables lose their decay whatever the recipe (the release does so by name)
    assert [len(g["params"]) for g in groups] == [len(model.trainable_parameters()) - 16, 16]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    without = [p for p in model.trainable_parameters() if not any(p is q for q in groups[1]["params"])]
    assert all(a is b for a, b in zip(groups[0]["params"], without))


def test_a_backbone_multiplier_needs_a_model_that_declares_one():
    model = nn.Sequential(nn.Linear(2, 2))
    model.trainable_parameters = lambda: list(model.parameters())
    assert len(parameter_groups(model, TrainConfig())) == 1
    with pytest.raises(ConfigError, match="train.backbone_lr_multiplier: Sequential declares no backbone parameters"):
        parameter_groups(model, TrainConfig(backbone_lr_multiplier=0.1))


def test_full_model_clipping_scales_every_gradient_to_the_total_norm():
    generator = torch.Generator().manual_seed(0)
    first, second = nn.Parameter(torch.zeros(3, 4)), nn.Parameter(torch.zeros(5))
    first.grad, second.grad = torch.randn(3, 4, generator=generator), torch.randn(5, generator=generator)
    before = torch.cat([first.grad.flatten(), second.grad.flatten()])
    optimizer = torch.optim.AdamW([{"params": [first], "lr": 1e-5}, {"params": [second]}], lr=1e-4)
    clip_gradients(optimizer, 0.01)
    after = torch.cat([first.grad.flatten(), second.grad.flatten()])
    # clip_grad_norm_ scales by max_norm / (norm + 1e-6): the norm lands within 1e-6 relative of 0.01
    assert after.norm().item() == pytest.approx(0.01, rel=1e-5)
    torch.testing.assert_close(after / after.norm(), before / before.norm())
    clip_gradients(optimizer, 0.0)  # 0: off
    torch.testing.assert_close(torch.cat([first.grad.flatten(), second.grad.flatten()]), after, atol=0, rtol=0)
