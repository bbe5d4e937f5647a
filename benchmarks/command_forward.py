"""AV2T-SAM's forward inside ``avseg segment`` against inside ``avseg evaluate``: seconds per frame.

    python benchmarks/command_forward.py [--seconds 20] [--fps 25] [--height 360] [--repeats 2] [--threads 2] [--size full]

Both commands run the same segmenter (full-size AV2T-SAM, random weights: ``_models.py``) on the same
frames, ``--window`` frames per model call, each in a fresh process that takes its command's own
setting: ``segment`` runs :func:`avseg.engine.segment.segment_video` on a synthetic ``--height`` p video
at ``--rate 1`` (AVSBench sampling: the overlay writer encodes a second of frames per frame the model
sees, in its own thread, while the next window runs; the most overlay work per model frame of any
rate); ``evaluate`` applies the allocator setting of :func:`avseg.engine.report.evaluate_recipe` and
scores the same frames (decoded with AVSBench sampling, the same audio seconds) with
:func:`avseg.engine.evaluate.evaluate_clips`, one clip of ``--window`` frames per call. Each model call
is timed; the first call of each process is the warm-up (its page faults fill the heap) and is left out.
Processes alternate (segment, evaluate, evaluate, segment, ...), ``--repeats`` each; the table gives the
median seconds per frame of each command and their ratio (issue 14's bar: segment within 1.1x of
evaluate), and each process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import machine, spread, synthetic_video, table

WORKER = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[6])
import numpy as np, torch
from _models import build_segmenter

command, video, out, window, threads, _, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
torch.set_num_threads(threads)
segmenter = build_segmenter("av2t-sam", size)
seconds = []


class Timed:  # the segmenter, each model call timed
    def predict(self, clips):
        start = time.perf_counter()
        logits = segmenter.predict(clips)
        seconds.append((time.perf_counter() - start) / sum(clip.num_frames for clip in clips))
        return logits


rate = 44100  # MS-CLAP's
if command == "segment":
    from avseg.engine.dense import Sampling
    from avseg.engine.segment import segment_video

    segment_video(Timed(), video, out, rate, "av2t-sam", window, progress=False, sampling=Sampling(rate=1))
else:
    from avseg.data.clip import Clip
    from avseg.engine.evaluate import evaluate_clips
    from avseg.engine.memory import reuse_freed_memory
    from avseg.media import iter_audio, iter_frames

    reuse_freed_memory()  # what avseg.engine.report.evaluate_recipe sets before it evaluates
    frames = np.stack([frame.image for frame in iter_frames(video)])
    audio = list(iter_audio(video, rate, window))
    clips = [
        Clip(frames=frames[i : i + window], waveform=chunk, sample_rate=rate, masks=np.zeros((len(frames[i : i + window]), *frames.shape[1:3]), np.uint8), meta={"id": str(i)})
        for i, chunk in zip(range(0, len(frames), window), audio)
    ]
    evaluate_clips(Timed(), clips, batch_clips=1)
print(json.dumps({"seconds_per_frame": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="video length: seconds / window model calls per process")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="processes per command")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", choices=("full", "tiny"), default="full", help="tiny: a quick correctness run")
    args = parser.parse_args()
    if args.seconds < 2 * args.window or min(args.repeats, args.window, args.threads) < 1:
        parser.error("--seconds must give at least two model calls (2 x --window); --repeats, --window and --threads at least 1")
    print(machine(), flush=True)
    results: dict[str, list[dict]] = {"segment": [], "evaluate": []}
    with tempfile.TemporaryDirectory(prefix="avseg-command-forward-") as tmp:
        video = Path(tmp) / "video.mp4"
        synthetic_video(video, args.seconds, args.fps, args.height)
        for repeat in range(args.repeats):
            for command in ("segment", "evaluate") if repeat % 2 == 0 else ("evaluate", "segment"):
                worker = [sys.executable, "-c", WORKER, command, str(video), str(Path(tmp) / "out"), str(args.window), str(args.threads), str(Path(__file__).parent), args.size]
                done = subprocess.run(worker, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"{command} failed:\n{done.stderr[-3000:]}")
                results[command].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{command}: {results[command][-1]}", flush=True)
    timed = {command: [s for run in runs for s in run["seconds_per_frame"][1:]] for command, runs in results.items()}  # warm-up calls left out
    rows = [[command, len(timed[command]), spread(timed[command]), f"{max(run['peak_rss_mib'] for run in results[command]):.0f}"] for command in results]
    ratio = statistics.median(timed["segment"]) / statistics.median(timed["evaluate"])
    print(f"av2t-sam ({args.size}), {args.window} frames per call, {args.threads} threads, {args.height}p {args.fps} fps video of {args.seconds} s, {args.repeats} processes per command")
    print(table(["command", "timed calls", "s per frame, median (range)", "peak RSS MiB"], rows))
    print(f"segment / evaluate, median s per frame: {ratio:.3f}")


if __name__ == "__main__":
    main()
