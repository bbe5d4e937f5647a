"""Frames per second and peak GPU memory of the four segmenters at full size, and one AV2T-SAM training step.

    python benchmarks/gpu_throughput.py [--device cuda] [--models av2t-sam,...] [--window 5] [--repeats 3]
    python benchmarks/gpu_throughput.py --device cpu --tiny      # correctness run on a CPU, tiny sizes

Goals (issue 14), on one H100/H200-class GPU:

* AV2T-SAM inference >= 25 frames/s at bf16;
* an AV2T-SAM training step at batch 8 clips within 40 GB (bf16 autocast, activation recomputation), so it
  trains on one GPU instead of the release's four.

Models are built offline from the released architectures with random weights (``_models.py``): speed and
memory are real, masks are not. Per model, precision (fp32, bf16) and batch (``1``: the window's frames one
clip of one frame at a time; ``window``: one clip of ``--window`` frames, one batch through every encoder), a
row is: one warm-up call, then ``--repeats`` timed calls, each on a new clip (the encoders' caches never hit),
with ``torch.cuda.synchronize`` around the timing and the peak memory counter reset before the row. Frames/s
is the window's frames over the median call time, the whole segmenter included (CPU preprocessing, CLIP and
CLAP, the model, logits back on the CPU), as ``avseg segment`` runs it (:class:`avseg.engine.precision.Inference`).

The training row: AV2T-SAM, 8 clips of 5 annotated frames (MS3; 40 frame rows), bf16 autocast, the frozen
encoders' activations recomputed in backward, AdamW on the trainable parameters; one warm-up step, then
``--repeats`` timed steps. CLIP and CLAP embeddings are computed before timing (training caches them).

Each row is printed as soon as it is measured (a run cut short keeps its rows); the table follows at the
end. Sized to finish within about 8 minutes on an H200 (most of it building the full-size models).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch
from _common import machine, table
from _models import FRAME_SIZE, MODELS, build_segmenter, window_clip

from avseg.data.clip import Clip
from avseg.engine.precision import Inference

HEADER = ["model", "precision", "batch", "frames/s", "median s per call", "peak GPU memory (GB)"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "n/a"


def timed(device: torch.device, run, repeats: int) -> float:
    """Median seconds of ``run(k)`` over ``repeats`` calls after one warm-up call."""
    run(-1)
    seconds = []
    for k in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run(k)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def one_frame_clips(clip: Clip) -> list[Clip]:
    rate = clip.sample_rate
    return [
        Clip(frames=clip.frames[t : t + 1], waveform=clip.waveform[t * rate : (t + 1) * rate], sample_rate=rate, meta={"id": clip.id})
        for t in range(clip.num_frames)
    ]


def inference_rows(name: str, size: str, device: torch.device, window: int, repeats: int, compile: bool) -> list[list]:
    with torch.device(device):  # random initialisation on the device (seconds instead of minutes on a CPU)
        segmenter = build_segmenter(name, size, str(device))
    clips = {k: window_clip(window, seed=100 + k) for k in range(-1, repeats)}  # a new clip per call: no cache hits
    rows = []
    settings = [("fp32", "1"), ("fp32", "window"), ("bf16", "1"), ("bf16", "window")] + [("bf16+compile", "window")] * compile
    for precision, batch in settings:
        inference = Inference.resolve(device, precision.split("+")[0], compile=precision.endswith("compile"))
        runner = inference.wrap(inference.prepare(segmenter))  # compiling is in place: the last row
        reset_peak(device)
        if batch == "1":
            seconds = timed(device, lambda k: [runner.predict([c]) for c in one_frame_clips(clips[k])], repeats)
        else:
            seconds = timed(device, lambda k: runner.predict([clips[k]]), repeats)
        if inference.compile:
            precision += f" (first call {inference.first_call_seconds:.1f} s)"
        rows.append([name, precision, batch, f"{window / seconds:.1f}", f"{seconds:.3f}", peak_gb(device)])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def training_row(size: str, device: torch.device, repeats: int, batch_clips: int = 8, frames: int = 5) -> list:
    from avseg.models.av2t_sam.training import AV2TTask

    with torch.device(device):
        segmenter = build_segmenter("av2t-sam", size, str(device))
    model, inputs = segmenter.model.train(), segmenter.inputs
    model.activation_checkpointing = True
    masks = np.zeros((frames, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    masks[:, 56:168, 56:168] = 1
    clips = [replace(window_clip(frames, seed=200 + k), masks=masks, mask_valid=None) for k in range(batch_clips)]  # every frame annotated
    task = AV2TTask(model, inputs, clips, batch_clips=batch_clips)
    batch = next(task.batches(0))
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-5)
    low = device.type == "cuda" or size == "tiny"  # bf16 autocast (CPU too at tiny size: the same code path)

    def step(_k: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
            loss = task.loss(batch, device)["total"]
        loss.backward()
        optimizer.step()

    reset_peak(device)
    seconds = timed(device, step, repeats)
    row = ["av2t-sam train step", "bf16" if low else "fp32", f"{batch_clips} clips x {frames} frames", f"{batch_clips * frames / seconds:.1f}", f"{seconds:.3f}", peak_gb(device)]
    print(" | ".join(row), flush=True)
    return row


def measured(name: str, rows) -> list[list]:
    """``rows()``, or one row saying why it failed (the other models still run: the GPU time is scarce)."""
    try:
        return rows()
    except Exception as error:  # noqa: BLE001 (a benchmark reports and goes on)
        row = [name, "FAILED", " ".join(f"{type(error).__name__}: {error}".split())[:300], "", "", ""]
        print(" | ".join(row), flush=True)
        return [row]
    finally:
        reset_peak(device=torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a correctness run on a CPU)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-train", action="store_true", help="skip the training-step row")
    parser.add_argument("--compile", action="store_true", help="add a bf16 row with --compile per model (its first call, compilation included, in the row)")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = "tiny" if args.tiny else "full"
    print(machine(), f"| sizes: {size} | window {args.window} frames | {args.repeats} repeats", flush=True)
    print(" | ".join(HEADER), flush=True)
    rows = []
    for name in args.models.split(","):
        rows += measured(name, lambda: inference_rows(name, size, device, args.window, args.repeats, args.compile))
    if not args.no_train:
        rows += measured("av2t-sam train step", lambda: [training_row(size, device, args.repeats)])
    print(table(HEADER, rows))


if __name__ == "__main__":
    main()
