"""Videos per hour of ``avseg segment`` over a corpus: one process against several under torchrun.

    python benchmarks/corpus.py [--videos 16] [--seconds 2] [--fps 10] [--height 48] [--repeats 3] [--processes 1,2]
    python benchmarks/corpus.py --device cuda --processes 1,8 --model models/av2t-sam-s4 --height 360   # a GPU machine

It writes ``--videos`` synthetic videos (a moving disc and a tone) and a ``--list`` of them,
and, unless ``--model`` names one, the tests' tiny TeSO (untrained: the cost is the same).
Each configuration runs the real command in fresh processes, into a fresh ``--out``, in
turn with the others, ``--repeats`` times:

* one process: ``avseg segment --list ...``; on a CPU once with the machine's threads (as a
  user runs it) and once with one thread (the setting of each process below);
* N processes: ``torchrun --standalone --nproc-per-node N --no-python avseg segment --list ...``;
  torchrun gives each process one thread on a CPU, and each its own GPU (``LOCAL_RANK``) on GPUs.

Per configuration: the corpus throughput the command prints on its ``total`` line (videos
segmented over the time from the plan to the end of the slowest process, so model loading is
left out) in videos per hour and frames per second, and the command's wall time with start-up
and loading; medians, min-max, and the ratio of each median to the one-process median (the
first configuration). The outputs are checked in the same run: the masks and summary.json of
every run equal, byte for byte, those of the first run with as many threads per process; runs
with another thread count are compared mask by mask (the share of identical masks).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import machine, spread, synthetic_video, table  # noqa: E402

TOTAL = re.compile(r"^total(?: on \d+ processes)?: (\d+) videos?, (\d+) frames in ([\d.]+) s \((\d+) videos/h, ([\d.]+) frames/s\)$", re.MULTILINE)


def tiny_teso(folder: Path) -> Path:
    """The tests' tiny TeSO (``tests/conftest.py``: ``save_tiny_teso``), untrained."""
    from avseg.config import load_recipe
    from avseg.engine.demo import DEMO_RECIPE
    from avseg.models.registry import save_system_info
    from avseg.models.teso import TeSO, TeSOConfig

    torch.manual_seed(0)
    TeSO(TeSOConfig.tiny(text_dim=384, audio_dim=64)).save_pretrained(folder)
    save_system_info(folder, load_recipe(DEMO_RECIPE))
    return folder


def command(processes: int, arguments: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "avseg.cli", *arguments]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), "--no-python", "avseg", *arguments]


def run(processes: int, threads: int | None, arguments: list[str], out: Path) -> dict:
    """One run of the command into ``out``: its total line and wall time."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    result = subprocess.run(command(processes, [*arguments, "--out", str(out)]), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{result.stderr[-3000:]}")
    match = TOTAL.search(result.stdout)
    if match is None:
        raise SystemExit(f"no total line in:\n{result.stdout[-2000:]}")
    return {"videos_per_hour": float(match[4]), "frames_per_second": float(match[5]), "wall": wall, "out": out}


def outputs(out: Path) -> dict[str, bytes]:
    """Every mask and summary.json of a run (not the overlays, whose timing fields are the encoder's)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/masks/*.png")) + sorted(out.glob("*/summary.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--height", type=int, default=48, help="frame height (16:9)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", default="1,2", help="comma list; the first is the reference of the ratios")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    parser.add_argument("--model", help="a model folder (default: the tests' tiny TeSO, untrained)")
    parser.add_argument("--cues", default="ball", help="TeSO's cues (empty for other models)")
    parser.add_argument("--work", type=Path, help="keep the videos and outputs here (default: a temporary folder)")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    if args.device == "cuda" and max(counts) > torch.cuda.device_count():
        raise SystemExit(f"--processes {max(counts)}: this machine has {torch.cuda.device_count()} CUDA devices (one per process)")
    cores = os.cpu_count() or 1
    configurations = []  # (label, processes, threads per process: None leaves it to torch, or torchrun)
    for count in counts:
        if args.device == "cpu" and count == 1:
            configurations += [(f"1 process x {cores} threads", 1, cores), ("1 process x 1 thread", 1, 1)]
        else:
            configurations.append((f"{count} processes x 1 thread" if args.device == "cpu" else f"{count} process{'es' if count > 1 else ''}", count, None))

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        (work / "videos").mkdir(parents=True, exist_ok=True)
        for k in range(args.videos):
            if not (work / "videos" / f"clip{k:03d}.mp4").is_file():
                synthetic_video(work / "videos" / f"clip{k:03d}.mp4", args.seconds, args.fps, args.height)
        listed = work / "corpus.txt"
        listed.write_text("".join(f"videos/clip{k:03d}.mp4\n" for k in range(args.videos)))
        model = args.model or str(tiny_teso(work / "model"))
        arguments = ["segment", "--list", str(listed), "--model", model, "--device", args.device, *(["--cues", args.cues] if args.cues else [])]
        runs: dict[str, list[dict]] = {label: [] for label, _, _ in configurations}
        for repeat in range(args.repeats):
            order = configurations if repeat % 2 == 0 else configurations[::-1]  # alternate who goes first
            for label, processes, threads in order:
                out = work / f"out-{len(runs[label])}-{label.replace(' ', '_')}"
                runs[label].append(run(processes, threads, arguments, out))
                print(f"{label}, run {len(runs[label])}: {runs[label][-1]['videos_per_hour']:.0f} videos/h", file=sys.stderr, flush=True)

        per_process_threads = {label: threads if threads is not None else 1 for label, _, threads in configurations}
        references: dict[int | None, dict[str, bytes]] = {}
        rows = []
        first = statistics.median(r["videos_per_hour"] for r in runs[configurations[0][0]])
        for label, processes, _ in configurations:
            threads = per_process_threads[label] if args.device == "cpu" else None
            equal = []
            for result in runs[label]:
                found = outputs(result["out"])
                reference = references.setdefault(threads, found)
                equal.append(found == reference)
            baseline = references[per_process_threads[configurations[0][0]] if args.device == "cpu" else None]
            last = outputs(runs[label][-1]["out"])
            masks = [name for name in baseline if name.endswith(".png")]
            same_masks = sum(last.get(name) == baseline[name] for name in masks) / len(masks)
            vph = [r["videos_per_hour"] for r in runs[label]]
            rows.append([
                label, processes, f"{statistics.median(vph):.0f} ({min(vph):.0f}-{max(vph):.0f})",
                spread([r["frames_per_second"] for r in runs[label]]), spread([r["wall"] for r in runs[label]]),
                f"{statistics.median(vph) / first:.2f}", "yes" if all(equal) else "NO", f"{same_masks:.3f}",
            ])  # fmt: skip
    print(machine())
    print(f"corpus: {args.videos} videos of {args.seconds:g} s at {args.fps} fps, {args.height}p; model {args.model or 'tiny TeSO (untrained)'}; "
          f"device {args.device}; {args.repeats} runs per configuration, alternating; throughput from avseg's total line (model loading excluded)")
    print(table(
        ["configuration", "processes", "videos/h median (min-max)", "frames/s median (min-max)", "wall s with start-up", "ratio to first",
         "outputs equal (same threads)", "masks equal to the first configuration's"],
        rows,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
