"""Training steps per second of TeSO (tiny on CPU; also bf16 autocast on CUDA when present).

    python benchmarks/train_speed.py [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine, spread, table

from avseg.models.teso import TeSO, TeSOConfig
from avseg.models.teso.inputs import matched_targets


def batch(frames: int, size: int, text_dim: int, audio_dim: int, device):
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(frames, size, size, dtype=torch.long)
    masks[:, size // 4 : size // 2, size // 4 : size // 2] = 1
    inputs = {
        "pixel_values": torch.randn(frames, 3, size, size, generator=generator),
        "audio": torch.randn(frames, 3, audio_dim, generator=generator),
        "audio_valid": torch.ones(frames, 3, dtype=torch.bool),
        "cues": torch.randn(frames, 4, text_dim, generator=generator),
        "cue_valid": torch.ones(frames, 4, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in inputs.items()}, masks


def measure(device: str, bf16: bool, steps: int, frames: int = 20) -> list[float]:
    torch.manual_seed(0)
    config = TeSOConfig.tiny(text_dim=384, audio_dim=64)
    model = TeSO(config).to(device).train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    inputs, masks = batch(frames, config.image_size, 384, 64, device)
    mask_labels, class_labels = matched_targets(masks, config.image_size)
    mask_labels, class_labels = [m.to(device) for m in mask_labels], [c.to(device) for c in class_labels]
    has_object = masks.flatten(1).any(1).to(device)
    times = []
    for step in range(steps + 3):
        started = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(model(**inputs), mask_labels, class_labels, has_object)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= 3:  # warm-up
            times.append(time.perf_counter() - started)
    return [1 / t for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(machine())
    configurations = [("cpu", False)] + ([("cuda", False), ("cuda", True)] if torch.cuda.is_available() else [])
    rows = []
    for device, bf16 in configurations:
        rates = measure(device, bf16, args.steps)
        rows.append(["tiny TeSO, 4 clips x 5 frames, 64x64", device, "bf16" if bf16 else "fp32", spread(rates)])
    print(table(["configuration", "device", "precision", "steps/s, median (min-max)"], rows))


if __name__ == "__main__":
    main()
