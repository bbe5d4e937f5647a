"""``avseg segment`` throughput and peak memory against video length (720p, with audio).

    python benchmarks/segment_memory.py [--minutes 1,3,10] [--fps 10] [--height 720] [--rate all|N]

For each length it writes a synthetic 720p H.264/AAC video (moving shapes and
a tone), then runs ``avseg segment`` on it with a tiny TeSO (untrained
weights: the cost is the same) in a fresh process, and reports wall time,
video seconds per second, that process's peak RSS, and the highest RSS in
each quarter of the run (sampled every half second). Memory must not grow
with the length: the video and its audio are streamed in windows, so the
peak must not rise from one length to the next nor from one quarter to the next. It also
checks that the overlay carries the original audio track.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, synthetic_video, table

from avseg.config import load_recipe
from avseg.engine.demo import DEMO_RECIPE
from avseg.media import probe
from avseg.models.registry import save_system_info
from avseg.models.teso import TeSO, TeSOConfig

RUN = """
import json, resource, sys, threading, time
from avseg.cli import main
samples = []  # resident set every half second: a leak shows as a rising curve, whatever the peak
def sample():
    while True:
        samples.append(int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20)
        time.sleep(0.5)
threading.Thread(target=sample, daemon=True).start()
code = main(sys.argv[1:])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print("RSS_SAMPLES", json.dumps(samples))
sys.exit(code)
"""


def quarter_peaks(samples: list[float]) -> str:
    """The highest resident set in each quarter of the run (wall time), MiB."""
    return " / ".join(f"{part.max():.0f}" for part in np.array_split(np.array(samples), 4) if part.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,3,10")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--rate", default="all", help="avseg segment --rate (all: a mask for every frame)")
    args = parser.parse_args()
    print(machine())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        torch.manual_seed(0)
        TeSO(TeSOConfig.tiny(text_dim=384, audio_dim=64)).save_pretrained(model)
        save_system_info(model, load_recipe(DEMO_RECIPE))
        for minutes in [float(m) for m in args.minutes.split(",")]:
            video = tmp / f"video_{minutes:g}min.mp4"
            synthetic_video(video, minutes * 60, args.fps, args.height)
            started = time.perf_counter()
            command = [sys.executable, "-c", RUN, "segment", str(video), "--model", str(model), "--out", str(tmp / "out"), "--cues", "ball", "--rate", args.rate]
            result = subprocess.run(command, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", **__import__("os").environ})
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(result.stderr[-2000:])
            peak = int(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KB")))
            samples = json.loads(next(line.split(maxsplit=1)[1] for line in result.stdout.splitlines() if line.startswith("RSS_SAMPLES")))
            out = tmp / "out" / video.stem
            overlay = probe(out / "overlay.mp4")
            masks = len(json.loads((out / "summary.json").read_text())["frames"])
            rows.append([f"{minutes:g} min", f"{args.height}p @ {args.fps} fps", masks, f"{seconds:.0f}", f"{minutes * 60 / seconds:.2f}", f"{peak / 1024:.0f}", quarter_peaks(samples), overlay.has_audio and overlay.sample_rate == 44100])
            video.unlink()
    print(f"--rate {args.rate}")
    print(table(["video", "format", "masks", "wall s", "video s per s", "peak RSS MiB", "peak RSS MiB per quarter of the run", "overlay has the audio"], rows))


if __name__ == "__main__":
    main()
