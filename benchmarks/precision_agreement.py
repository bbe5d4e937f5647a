"""bf16 (or fp16) against fp32: how far each segmenter's logits and masks move under ``--precision``.

    python benchmarks/precision_agreement.py [--size tiny|full] [--models av2t-sam,teso] [--device cpu] [--frames 5]
    python benchmarks/precision_agreement.py --trained [--epochs 6]

For each model (random weights, seeded; see ``_models.py``) one fixed window of ``--frames`` random 224x224
frames with noise audio runs through the segmenter as ``avseg segment`` runs it (:class:`avseg.engine.precision.Inference`)
at fp32 and at the low precision. Reported per model: the largest and the mean |Δlogit| over every output
value, the largest |logit| (the scale the difference is read against), and the IoU of the foreground masks
(probability > 0.5, all frames together; two empty masks agree). The bar in issue 14 is a mask IoU >= 0.99.

Random weights are a poor test of that bar: a freshly initialised SAM decoder gives logits of about 1e-4, so
every pixel sits at the 0.5 boundary and any rounding flips it. ``--trained`` therefore first trains the tiny
AV2T-SAM, AV2T-SAM3 and TeSO on a small synthetic MS3 set with the regular training loop (``avseg train``'s
code, parameter-free log-mel and thumbnail encoders; TeSO with the real all-MiniLM-L6-v2 cue encoder, as the
demo) and compares them on the set's test clips: logits of a trained model are decisive, as a user's are.

zeroshot-sam3 makes discrete choices (CLAP's prompted classes, SAM 3's query threshold; here 0, so every query is
kept): a class chosen at one precision and not the other moves its pixels between SAM 3's logits and the -100
floor, which shows as a |Δlogit| near 100.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, table
from _models import MODELS, build_segmenter, window_clip

from avseg.engine.precision import Inference


def foreground(logits: torch.Tensor) -> torch.Tensor:
    """Binary logits ``(T, H, W)`` -> sigmoid; class scores ``(T, C, H, W)`` -> 1 - p(background) (as ``avseg segment``)."""
    return 1 - logits.softmax(1)[:, 0] if logits.ndim == 4 else torch.sigmoid(logits)


def mask_iou(first: torch.Tensor, second: torch.Tensor) -> float:
    union = (first | second).sum()
    return 1.0 if union == 0 else float((first & second).sum() / union)


TRAINED_RECIPE = """
name: {name}
model: {name}
preset: tiny
data: {{layout: ms3, root: {root}, synthetic_videos: {videos}, synthetic_size: 64, cues: oracle}}
encoders: {{audio: logmel, image: thumbnail, text: minilm-offline}}
train: {{epochs: {epochs}, batch_clips: 4, lr: {lr}, min_lr: 2.0e-5, seed: 0, checkpoint_every: 1000}}
output: {out}
"""

LEARNING_RATE = {"av2t-sam": 1.0e-3}
"""At 2e-3 the tiny AV2T-SAM (random frozen Hiera) learns to predict nothing; ``preference.py`` trains it at 1e-3."""


def trained_segmenter(name: str, folder: Path, epochs: int, videos: int, device: torch.device):
    """The tiny ``name`` trained on a synthetic MS3 set in ``folder``, and the set's test clips."""
    from avseg.config import load_recipe
    from avseg.engine.data import open_split
    from avseg.engine.train import train
    from avseg.models.registry import build_system, load_model

    (folder / f"{name}.yaml").write_text(TRAINED_RECIPE.format(name=name, root=folder / "ms3", out=folder / "runs", epochs=epochs, videos=videos, lr=LEARNING_RATE.get(name, 2.0e-3)))
    recipe = load_recipe(folder / f"{name}.yaml", [])
    run = train(recipe, overwrite=True)
    system = build_system(recipe, model=load_model(run / "final"))
    return system.segmenter(device), list(open_split(recipe.data, recipe.data.test_split))


def agreement(name: str, label: str, segmenter, clips: list, device: torch.device, precision: str) -> list:
    logits = {}
    for run in ("fp32", precision):
        start = time.perf_counter()
        logits[run] = torch.cat(Inference.resolve(device, run).wrap(segmenter).predict(clips))
        print(f"  {name} {run}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    difference = (logits[precision] - logits["fp32"]).abs()
    masks = {run: foreground(values) > 0.5 for run, values in logits.items()}
    return [
        name, label, f"{difference.max():.2e}", f"{difference.mean():.2e}", f"{logits['fp32'].abs().max():.2e}",
        f"{mask_iou(masks['fp32'], masks[precision]):.4f}", f"{float(masks['fp32'].float().mean()):.3f}",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--trained", action="store_true", help="train the tiny AV2T-SAM, AV2T-SAM3 and TeSO first (see above)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--videos", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(machine(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="avseg-agreement-") as folder:
        for name in args.models.split(","):
            if args.trained and name in ("zeroshot-sam3", "auralsam2"):
                continue  # zeroshot-sam3 has nothing to train; auralsam2 is not in the --trained set (the docstring's three)
            if args.trained:
                segmenter, clips = trained_segmenter(name, Path(folder), args.epochs, args.videos, device)
                label = f"tiny, trained {args.epochs} epochs, {len(clips)} test clips"
            else:
                segmenter, clips, label = build_segmenter(name, args.size, str(device)), [window_clip(args.frames)], f"{args.size}, random weights"
            rows.append(agreement(name, label, segmenter, clips, device, args.precision))
            print(" | ".join(rows[-1]), flush=True)
    header = ["model", "weights", f"max abs Δlogit ({args.precision} - fp32)", "mean abs Δlogit", "max abs fp32 logit", "mask IoU", "fp32 foreground fraction"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
