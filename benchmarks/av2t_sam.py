"""AV2T-SAM at full size: avseg against the official implementation, one frame, same weights and inputs.

    python benchmarks/av2t_sam.py --official-src PATH/TO/AV2T-SAM --official-python PATH/TO/venv/bin/python \
        --official-weights WEIGHTS.pth [--repeats 2] [--threads 2]

``WEIGHTS.pth`` is a full official ``AVTSAM`` state dict (the released ``Kyungbok/AV2T-SAM`` checkpoint,
or random weights from a harness); it is converted once with ``avseg convert``. The official code runs
from its own checkout and environment (it needs hydra, torchscale and friends, which avseg does not);
the worker only replaces ``AVTSAM.init_model`` (a hub download and ``.cuda()``) by a local build.

Each measurement runs in a fresh process, avseg and official alternately, and reports:

- ``infer``: one-frame inference (``no_grad``), seconds of the timed forward after one warm-up, and
  the process's peak RSS;
- ``train``: one-frame training step (forward, BCE + soft IoU against a fixed mask, backward,
  AdamW step on the trainable parameters), its seconds and peak RSS. avseg recomputes the frozen
  encoders' activations in backward (``activation_checkpointing``); the official keeps them all.

Both sides' logits are saved and compared in the same run: the timings only count if the outputs agree.
The avseg worker sets glibc's allocator as the command that does the job would
(:mod:`avseg.engine.memory`: ``avseg evaluate`` for inference, ``avseg train`` for the training step).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, spread, table

WORKER = r"""
import json, resource, sys, time, types
import torch
side, task, folder, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
inputs = torch.load(f"{folder}/inputs.pt", weights_only=True)
flat = lambda x: x.reshape(-1, *x.shape[2:])

if side == "avseg":
    from avseg.engine.memory import keep_freed_memory, keep_large_buffers_mmapped
    from avseg.models.registry import load_model
    (keep_large_buffers_mmapped if task == "train" else keep_freed_memory)()  # as avseg train / evaluate do
    model = load_model(f"{folder}/avseg")
    model.activation_checkpointing = True
    run = lambda: model(flat(inputs["images_sam"]), flat(inputs["images_beit"]), flat(inputs["clip"]), flat(inputs["clap"]), size=(224, 224))
    trainable = model.trainable_parameters()
else:
    source = sys.argv[5]
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    sys.path.insert(0, source)
    from model.avt_sam import AVTSAM
    from model.configuration_evf import EvfConfig
    from model.evf_sam2 import EvfSam2Model

    def local_init(self):  # the release downloads EVF-SAM2 and calls .cuda(); build it here instead
        self.depth = 48
        config = EvfConfig(hidden_size=1024, out_dim=256, mm_extractor_scale="large", sam_scale="large")
        return None, EvfSam2Model(config, args=self.args).eval()

    AVTSAM.init_model = local_init
    args = types.SimpleNamespace(projector_type="mul", use_adapter=True, evf_version="evf_sam2")
    model = AVTSAM(args)
    model.load_state_dict(torch.load(sys.argv[6], map_location="cpu", weights_only=True), strict=True)
    run = lambda: model(inputs["images_sam"], inputs["images_beit"], inputs["clip"], inputs["clap"], [(224, 224)]).reshape(-1, 224, 224)
    trainable = [p for p in model.parameters() if p.requires_grad]

started = time.perf_counter()
if task == "infer":
    model.eval()
    with torch.no_grad():
        run()
        started = time.perf_counter()
        logits = run()
else:
    model.train()
    optimizer = torch.optim.AdamW(trainable, lr=2e-4, weight_decay=0.01)
    target = (torch.rand(1, 224, 224, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    logits = run()
    probabilities = logits.sigmoid().flatten(1)
    intersection = (probabilities * target.flatten(1)).sum(1)
    union = probabilities.sum(1) + target.flatten(1).sum(1) - intersection
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + (1 - intersection / union).mean()
    loss.backward()
    optimizer.step()
seconds = time.perf_counter() - started
torch.save(logits.detach(), f"{folder}/{side}-{task}.pt")
print(json.dumps({"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def official_inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    """One 224x224 frame prepared as the release prepares it, and CLIP/CLAP-shaped embeddings."""
    import numpy as np

    from avseg.models.av2t_sam.inputs import evf_pixels, sam_pixels

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    frame = torch.from_numpy(np.kron(coarse, np.ones((1, 28, 28, 1), dtype=np.uint8)))
    generator = torch.Generator().manual_seed(seed)
    return {
        "images_sam": sam_pixels(frame, 1024)[None],
        "images_beit": evf_pixels(frame, 224)[None],
        "clip": torch.randn(1, 1, 512, generator=generator),
        "clap": torch.randn(1, 1, 1024, generator=generator),
    }


def measure(side: str, task: str, folder: Path, args: argparse.Namespace) -> dict:
    python = sys.executable if side == "avseg" else str(args.official_python)
    command = [python, "-c", WORKER, side, task, str(folder), str(args.threads), str(args.official_src), str(args.official_weights)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} {task} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-src", required=True, type=Path, help="checkout of bok-bok/AV2T-SAM")
    parser.add_argument("--official-python", required=True, type=Path, help="python of an environment that runs it")
    parser.add_argument("--official-weights", required=True, type=Path, help="full AVTSAM state dict (.pth)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", default="infer,train")
    args = parser.parse_args()

    from avseg.models.av2t_sam.convert import convert

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        convert(args.official_weights, folder / "avseg", projector="mul")  # the official side runs projector_type="mul"
        print(f"converted the official weights in {time.perf_counter() - started:.0f} s", flush=True)
        torch.save(official_inputs(), folder / "inputs.pt")
        results: dict[tuple[str, str], list[dict]] = {}
        for task in args.tasks.split(","):
            for _ in range(args.repeats if task == "infer" else 1):
                for side in ("official", "avseg"):
                    results.setdefault((side, task), []).append(measure(side, task, folder, args))
                    print(f"{side} {task}: {results[(side, task)][-1]}", flush=True)
        rows = []
        for task in args.tasks.split(","):
            official, ours = results[("official", task)], results[("avseg", task)]
            diff = (torch.load(folder / f"avseg-{task}.pt") - torch.load(folder / f"official-{task}.pt")).abs().max().item()
            seconds = [[r["seconds"] for r in runs] for runs in (official, ours)]
            memory = [max(r["peak_rss_mib"] for r in runs) for runs in (official, ours)]
            rows.append([task, spread(seconds[0]), spread(seconds[1]), f"{sorted(seconds[1])[len(seconds[1]) // 2] / sorted(seconds[0])[len(seconds[0]) // 2]:.2f}",
                         f"{memory[0]:.0f}", f"{memory[1]:.0f}", f"{memory[1] / memory[0]:.2f}", f"{diff:.1e}"])
    print(machine() + f", {args.threads} threads, fp32, 1 frame (S4: B=1, T=1)")
    print(table(["task", "official s", "avseg s", "time ratio", "official peak RSS MiB", "avseg peak RSS MiB", "memory ratio", "max |Δ logits|"], rows))


if __name__ == "__main__":
    main()
