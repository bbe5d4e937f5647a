"""An avseg model's weights in a release's layout, in both directions, for converters whose releases fuse attention.

A converter names, for every avseg key, its official key (``official_name(key) -> (name, part)``): ``part`` is
``None`` where one tensor is one tensor, and 0, 1 or 2 where the release fuses q, k and v into one tensor (Swin's
``qkv``, ``nn.MultiheadAttention``'s ``in_proj``) that feeds three avseg tensors. Reading the table backwards gives
what an official file must hold, so a file that does not fit is named whole: every key with no place, every missing
key (by its official name) and every wrong shape, at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from re import Pattern

import torch

OfficialName = Callable[[str], tuple[str, int | None]]


def official_layout(expected: Mapping[str, torch.Tensor], official_name: OfficialName) -> dict[str, list[tuple[str, int | None]]]:
    """Each official key of a model with ``expected`` weights -> the avseg keys (and thirds) it fills."""
    layout: dict[str, list[tuple[str, int | None]]] = {}
    for key in expected:
        name, part = official_name(key)
        layout.setdefault(name, []).append((key, part))
    return layout


def official_shape(parts: list[tuple[str, int | None]], expected: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    shape = tuple(expected[parts[0][0]].shape)
    return (shape[0] * 3, *shape[1:]) if parts[0][1] is not None else shape


def official_state(expected: Mapping[str, torch.Tensor], official_name: OfficialName) -> dict[str, torch.Tensor]:
    """Weights ``expected`` (an avseg state dict) in the release's layout, q, k and v fused again."""
    state = {}
    for name, parts in official_layout(expected, official_name).items():
        ordered = sorted(parts, key=lambda p: p[1] or 0)
        state[name] = torch.cat([expected[k] for k, _ in ordered]) if ordered[0][1] is not None else expected[ordered[0][0]].clone()
    return state


def from_official(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    official_name: OfficialName,
    model_name: str,
    not_weights: Sequence[Pattern[str]] = (),
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """An official state dict -> avseg's keys, and the problems (lists of official keys with no place in
    ``model_name``, missing, of the wrong shape: all empty when the file fits). Keys matching ``not_weights`` are
    dropped without a word."""
    layout = official_layout(expected, official_name)
    mapped: dict[str, torch.Tensor] = {}
    unexpected, wrong = [], []
    for name, value in state.items():
        if name not in layout:
            if not any(pattern.search(name) for pattern in not_weights):
                unexpected.append(name)
            continue
        parts = layout[name]
        if tuple(value.shape) != official_shape(parts, expected):
            wrong.append(f"{name} {tuple(value.shape)} (expected {official_shape(parts, expected)})")
            continue
        for key, part in parts:
            mapped[key] = value if part is None else value.chunk(3)[part]
    missing = sorted(name for name in layout if name not in state)
    return mapped, {f"no place in {model_name}": sorted(unexpected), "missing": missing, "wrong shape": sorted(wrong)}
