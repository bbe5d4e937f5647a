"""AV2T-SAM at full size: avseg against the official implementation, one frame, same weights and inputs.

    python benchmarks/av2t_sam.py --official-src PATH/TO/AV2T-SAM --official-python PATH/TO/venv/bin/python \
        --official-weights WEIGHTS.pth [--repeats 3] [--threads 2] [--allocators tuned,untuned] [--tasks infer,train] [--steps 1]

``--steps 3`` times the steady state: avseg's second forward in a process still faults in its memory-mapped
weights and fills its heap, so one timed step after one warm-up favours the official side (README).

``WEIGHTS.pth`` is a full official ``AVTSAM`` state dict (the released ``Kyungbok/AV2T-SAM`` checkpoint,
or random weights: ``--make-random-weights`` writes them with the official code); it is converted once with ``avseg convert``. The official code runs
from its own checkout and environment (it needs hydra, torchscale and friends, which avseg does not);
the worker only replaces ``AVTSAM.init_model`` (a hub download and ``.cuda()``) by a local build.

Each measurement runs in a fresh process. For each allocator setting and task, the sides run
``--repeats`` times each, alternately and in alternating order (official-avseg, avseg-official, ...),
so both see the same contention on a shared machine. A run reports:

- the **load peak**: peak RSS (``VmHWM``) while importing and loading the weights (the official code
  builds a randomly initialised model and loads the state dict on top of it; avseg maps safetensors);
- the **compute peak**: peak RSS of what follows, after resetting ``VmHWM`` to the current RSS
  (writing ``5`` to ``/proc/self/clear_refs``), so it counts the loaded model plus the work;
- seconds of the timed step (the median of ``--steps`` timed steps), after one untimed warm-up step of the same kind:
  ``infer``: one-frame inference (``no_grad``);
  ``train``: one-frame training step (forward, BCE + soft IoU against a fixed mask, backward,
  AdamW step on the trainable parameters). avseg recomputes the frozen encoders' activations in
  backward (``activation_checkpointing``); the official keeps them all.

The table gives the median and range of each side and ratios of those medians. Allocator ``tuned``
runs on *both* sides, loaded from avseg's file, the setting of :mod:`avseg.engine.memory` that the
avseg command doing the job takes (inference: ``reuse_freed_memory``, as ``avseg segment`` and
``avseg evaluate``; training: ``keep_large_buffers_mmapped``, as ``avseg train``); ``untuned`` leaves glibc's defaults on both. The torch version each side
ran is printed. Both sides' logits (of the warm-up step, from the loaded weights) are saved and
compared in the same run: the timings only count if the outputs agree.
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
from _common import SIDES_HEADER, alternating, machine, sides_cells, table

WORKER = r"""
import importlib.util, json, re, statistics, sys, time, types
import torch
side, task, folder, threads, allocator, memory_py, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], int(sys.argv[9])
torch.set_num_threads(threads)
torch.manual_seed(0)
if allocator == "tuned":  # avseg.engine.memory's file itself, so the official side gets the very same setting
    spec = importlib.util.spec_from_file_location("avseg_memory", memory_py)
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    (memory.reuse_freed_memory if task == "infer" else memory.keep_large_buffers_mmapped)()  # as avseg evaluate / train set it


def peak_mib():  # VmHWM: the peak resident set since start, or since the last reset
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read())[1]) / 1024


flat = lambda x: x.reshape(-1, *x.shape[2:])

if side == "avseg":
    from avseg.models.registry import load_model
    model = load_model(f"{folder}/avseg")
    model.activation_checkpointing = True
    run = lambda: model(flat(inputs["images_sam"]), flat(inputs["images_beit"]), flat(inputs["clip"]), flat(inputs["clap"]), size=(224, 224))
    trainable = model.trainable_parameters()
else:
    source = sys.argv[7]
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
    if task == "random-weights":  # the harness for --official-weights when the release's checkpoint is not at hand
        torch.save(model.state_dict(), sys.argv[8])
        sys.exit()
    model.load_state_dict(torch.load(sys.argv[8], map_location="cpu", weights_only=True), strict=True)
    run = lambda: model(inputs["images_sam"], inputs["images_beit"], inputs["clip"], inputs["clap"], [(224, 224)]).reshape(-1, 224, 224)
    trainable = [p for p in model.parameters() if p.requires_grad]

inputs = torch.load(f"{folder}/inputs.pt", weights_only=True)
load_peak = peak_mib()
if allocator == "tuned":
    memory.release_freed_memory()  # what loading freed (the official side's state dict) stays on the heap otherwise
open("/proc/self/clear_refs", "w").write("5")  # "5" resets VmHWM to the current RSS: what follows is the compute peak
if task == "infer":
    model.eval()
    def step():
        with torch.no_grad():
            return run()
else:
    model.train()
    optimizer = torch.optim.AdamW(trainable, lr=2e-4, weight_decay=0.01)
    target = (torch.rand(1, 224, 224, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    def step():
        optimizer.zero_grad()
        logits = run()
        probabilities = logits.sigmoid().flatten(1)
        intersection = (probabilities * target.flatten(1)).sum(1)
        union = probabilities.sum(1) + target.flatten(1).sum(1) - intersection
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + (1 - intersection / union).mean()
        loss.backward()
        optimizer.step()
        return logits.detach()
logits = step()  # the warm-up; its logits, from the loaded weights on both sides, are the ones compared
durations = []
for _ in range(steps):
    started = time.perf_counter()
    step()
    durations.append(time.perf_counter() - started)
seconds = statistics.median(durations)
torch.save(logits, f"{folder}/{side}-{task}.pt")
print(json.dumps({"seconds": seconds, "load_peak_mib": load_peak, "compute_peak_mib": peak_mib(), "torch": torch.__version__}))
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


def measure(side: str, task: str, allocator: str, folder: Path, args: argparse.Namespace) -> dict:
    python = sys.executable if side == "avseg" else str(args.official_python)
    memory_py = Path(__file__).resolve().parents[1] / "src" / "avseg" / "engine" / "memory.py"
    command = [python, "-c", WORKER, side, task, str(folder), str(args.threads), allocator, str(memory_py), str(args.official_src), str(args.official_weights), str(args.steps)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} {task} ({allocator} allocator) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if task != "random-weights" else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-src", required=True, type=Path, help="checkout of bok-bok/AV2T-SAM")
    parser.add_argument("--official-python", required=True, type=Path, help="python of an environment that runs it")
    parser.add_argument("--official-weights", required=True, type=Path, help="full AVTSAM state dict (.pth)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per run after the warm-up; a run reports their median")
    parser.add_argument("--tasks", default="infer,train")
    parser.add_argument("--allocators", default="tuned,untuned", help="tuned: the avseg command's setting from avseg.engine.memory, on both sides; untuned: glibc's defaults")
    parser.add_argument("--make-random-weights", action="store_true", help="first write a randomly initialised official AVTSAM state dict to --official-weights")
    args = parser.parse_args()
    if min(args.repeats, args.steps, args.threads) < 1:
        parser.error("--repeats, --steps and --threads must be at least 1")
    if args.make_random_weights:
        measure("official", "random-weights", "untuned", args.official_weights.parent, args)

    from avseg.models.av2t_sam.convert import convert

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        convert(args.official_weights, folder / "avseg", projector="mul")  # the official side runs projector_type="mul"
        print(f"converted the official weights in {time.perf_counter() - started:.0f} s", flush=True)
        torch.save(official_inputs(), folder / "inputs.pt")
        rows, versions = [], {}
        for allocator in args.allocators.split(","):
            for task in args.tasks.split(","):

                def run(side: str, task: str = task, allocator: str = allocator) -> dict:
                    result = versions[side] = measure(side, task, allocator, folder, args)
                    print(f"{allocator} {task} {side}: {result}", flush=True)
                    return result

                results = alternating(args.repeats, run)
                diff = (torch.load(folder / f"avseg-{task}.pt") - torch.load(folder / f"official-{task}.pt")).abs().max().item()
                rows.append([task, allocator, *sides_cells(results["official"], results["avseg"]), f"{diff:.1e}"])
    print(machine() + f", {args.threads} threads, fp32, 1 frame (S4: B=1, T=1), {args.repeats} runs per side, {args.steps} timed steps per run")
    print(f"torch: official {versions['official']['torch']}, avseg {versions['avseg']['torch']}")
    print(table(["task", "allocator", *SIDES_HEADER, "max |Δ logits|"], rows))


if __name__ == "__main__":
    main()
