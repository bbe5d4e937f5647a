"""Semantic-SAM's automatic mask generator (VCT's mask images): avseg against the release (UX-Decoder/Semantic-SAM),
one frame at VCT's settings (``level=[3]``, 32 x 32 clicks in batches of 200), same weights and frame, each side in a
fresh process: seconds, peak memory, and the masks compared.

    python benchmarks/semantic_sam.py --official-src PATH/TO/Semantic-SAM --official-python PATH/TO/venv/bin/python \
        [--official-path PATH/TO/detectron2] [--official-path STAND-INS] --weights swinl_only_sam_many2many.pth \
        [--kind L|T] [--height 224] [--width 224] [--repeats 2] [--threads 2]

``--weights``: a file in the release's layout (``{"model": {"model.*": ...}}``: the published checkpoint, or random
weights as the parity script writes them); avseg converts it once with ``avseg convert semantic-sam``. The release
runs from its own checkout and environment (detectron2, opencv; no torchvision wheel loads against a CPU torch, so
stand-ins may be needed on ``--official-path``), built from ``configs/semantic_sam_only_sa-1b_swin{L,T}.yaml``; its
deformable attention takes its pure-PyTorch fallback when the compiled op is absent, and its ``.cuda()`` /
``.to('cuda')`` calls are sent to the CPU. The frame is smooth random colour (``--height`` x ``--width``).

Per side, ``--repeats`` fresh processes alternate (official first, then avseg first, ...). Each loads the weights,
then times one ``generate`` (wall seconds and the process's CPU seconds; no warm-up: one frame is the unit of work
and it runs for seconds). Peak memory is the process's peak RSS (``VmHWM``) after loading and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import machine, spread, table

WORKER = r"""
import json, os, sys, time
import numpy as np
import torch
side, weights, kind, height, width, threads, out = sys.argv[1:8]
height, width = int(height), int(width)
torch.set_num_threads(int(threads))
def peak():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
coarse = torch.rand(1, 3, max(height // 8, 1), max(width // 8, 1), generator=torch.Generator().manual_seed(3)) * 255
frame = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")[0].round().clamp(0, 255).to(torch.uint8)
if side == "official":
    src = sys.argv[8]
    os.chdir(src); sys.path.insert(0, src)
    torch.Tensor.cuda = lambda self, *a, **k: self
    _to = torch.Tensor.to
    torch.Tensor.to = lambda self, *a, **k: _to(self, *("cpu" if x == "cuda" else x for x in a), **{**k, **({"device": "cpu"} if k.get("device") == "cuda" else {})})
    _ones = torch.ones
    torch.ones = lambda *a, **k: _ones(*a, **({**k, "device": "cpu"} if k.get("device") == "cuda" else k))
    from utils.arguments import load_opt_from_config_file
    from semantic_sam.BaseModel import BaseModel
    from semantic_sam import build_model
    from tasks.automatic_mask_generator import SemanticSamAutomaticMaskGenerator
    opt = load_opt_from_config_file(f"configs/semantic_sam_only_sa-1b_swin{kind}.yaml")
    opt["MODEL"]["BACKBONE"]["LOAD_PRETRAINED"] = False
    model = BaseModel(opt, build_model(opt)).from_pretrained(weights).eval()
    generator = SemanticSamAutomaticMaskGenerator(model, level=[3])
    def generate():
        anns = generator.generate(frame)
        return np.stack([a["segmentation"] for a in anns]) if anns else np.zeros((0, height, width), bool)
else:
    from avseg.models.semantic_sam.model import SemanticSam
    from avseg.models.semantic_sam.generator import SemanticSamMaskGenerator
    generator = SemanticSamMaskGenerator(SemanticSam.from_pretrained(weights), "benchmark")
    def generate():
        return generator.masks(frame.permute(1, 2, 0).numpy())
loaded = peak()
started, cpu = time.perf_counter(), time.process_time()
with torch.no_grad():
    masks = generate()
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
np.save(out + ".npy", masks)
json.dump({"seconds": seconds, "cpu_seconds": cpu, "load_peak_mib": loaded, "peak_mib": peak(), "masks": int(len(masks))}, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-src", required=True, type=Path)
    parser.add_argument("--official-python", required=True)
    parser.add_argument("--official-path", action="append", default=[])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--kind", default="L", choices=["L", "T"])
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np

    from avseg.models.semantic_sam.convert import convert

    work = Path(tempfile.mkdtemp(prefix="semantic-sam-bench-"))
    convert(args.weights, work / "avseg")
    worker = work / "worker.py"
    worker.write_text(WORKER)
    src = Path(__file__).resolve().parent.parent / "src"
    runs: dict[str, list[dict]] = {"official": [], "avseg": []}
    for repeat in range(args.repeats):
        for side in (("official", "avseg") if repeat % 2 == 0 else ("avseg", "official")):
            out = str(work / f"{side}-{repeat}.json")
            settings = [args.kind, str(args.height), str(args.width), str(args.threads), out]
            if side == "official":
                command = [args.official_python, str(worker), side, str(args.weights.resolve()), *settings, str(args.official_src.resolve())]
                env = {"PYTHONPATH": ":".join([*args.official_path, str(args.official_src)])}
            else:
                command = [sys.executable, str(worker), side, str(work / "avseg"), *settings]
                env = {"PYTHONPATH": str(src)}
            subprocess.run(command, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs[side].append({**json.loads(Path(out).read_text()), "masks_file": out + ".npy"})
    ours, theirs = np.load(runs["avseg"][0]["masks_file"]), np.load(runs["official"][0]["masks_file"])
    if len(ours) == len(theirs) and len(ours):
        overlap = (ours & theirs).reshape(len(ours), -1).sum(1) / np.maximum((ours | theirs).reshape(len(ours), -1).sum(1), 1)
        agreement = f"{len(ours)} masks each, pairwise IoU min {overlap.min():.4f}"
    else:
        agreement = f"avseg {len(ours)} masks, release {len(theirs)}"
    rows = []
    for side in ("official", "avseg"):
        rows.append([
            side, spread([r["seconds"] for r in runs[side]]), spread([r["cpu_seconds"] for r in runs[side]]),
            f"{statistics.median(r['load_peak_mib'] for r in runs[side]):.0f}", f"{statistics.median(r['peak_mib'] for r in runs[side]):.0f}",
        ])
    print(machine())
    print(f"Semantic-SAM Swin-{args.kind}, one {args.height}x{args.width} frame, level 3, 32 x 32 clicks, {args.threads} threads, {args.repeats} fresh processes per side; {agreement}")
    print(table(["side", "wall s", "CPU s", "load peak MiB", "peak MiB"], rows))


if __name__ == "__main__":
    main()
