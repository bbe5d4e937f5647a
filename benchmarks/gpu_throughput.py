"""Frames per second and peak GPU memory of the segmenters at full size, and one AV2T-SAM, AuralSAM2 and VCT training step.

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
AuralSAM2 has only ``window`` rows: it tracks a clip as one video with SAM 2's memory, and a clip of one frame
has no memory to use (``avseg segment`` gives it whole windows). VCT too (its frames are independent, but one batch
of the window is how ``avseg segment`` and ``avseg evaluate`` run it): ``vct`` reads published mask images
(AVSBench with COMBO's files), ``vct-generated`` makes them with Semantic-SAM as for any other video, ``vct-sam2``
with the SAM 2 substitute (see ``_models.py``).

The training rows, one per listed model that trains here: one warm-up step, then ``--repeats`` timed steps,
bf16 autocast (VCT: fp32, as its recipe), AdamW on the trainable parameters, as ``avseg train`` takes a step:

* AV2T-SAM: 8 clips of 5 annotated frames (MS3; 40 frame rows) in one batch, the frozen encoders' activations
  recomputed in backward. CLIP and CLAP embeddings are computed before timing (training caches them).
* AuralSAM2: the recipe's update (``configs/auralsam2_ms3.yaml``): 4 clips of 5 annotated frames, each clip its own
  micro-batch tracked as one video (the release's 4 GPUs of one clip each), with ``avseg train``'s losses (SAM 2's
  multistep mask loss and the contrastive loss) and the audio's log-mel examples computed in the step; SAM 2
  and VGGish frozen, the AuralFuser trained.
* VCT: the S4 recipe's update (``configs/vct_s4.yaml``): 2 clips of 5 frames in one batch, the first frame of each
  annotated (S4's training split), fp32 as the recipe (the release trains without AMP), with ``avseg train``'s losses
  (Mask2Former's matched losses on all 10 predictions and the prototype-audio loss) and the log-mel examples computed
  in the step; published mask images, as the recipe trains on AVSBench with COMBO's; VGGish frozen, the rest trained.

Each row is printed as soon as it is measured (a run cut short keeps its rows); the table follows at the
end. Sized to finish within about 8 minutes on an H200 (most of it building the full-size models).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import machine, table
from _models import FRAME_SIZE, MODELS, build_segmenter, window_clip, with_mask_images

from avseg.data.clip import Clip
from avseg.engine.precision import Inference

HEADER = ["model", "precision", "batch", "frames/s", "median s per call", "peak GPU memory (GB)"]
WINDOW_ONLY = {"auralsam2", "vct", "vct-generated", "vct-sam2"}
"""Models measured on whole windows only (see the module docstring): no one-frame rows."""
PUBLISHED_MASK_IMAGES = {"vct"}
"""Models whose clips carry published mask images (:func:`_models.with_mask_images`)."""
TRAINED = {"av2t-sam": (8, 5, 1, True), "auralsam2": (4, 5, 4, True), "vct": (2, 5, 1, False)}
"""The training rows: clips per update, frames per clip, micro-batches per update, bf16 autocast on a GPU (see the
module docstring)."""


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
    folder = Path(tempfile.mkdtemp(prefix="mask-images-")) if name in PUBLISHED_MASK_IMAGES else None
    rows = []
    settings = [("fp32", "1"), ("fp32", "window"), ("bf16", "1"), ("bf16", "window")] + [("bf16+compile", "window")] * compile
    if name in WINDOW_ONLY:
        settings = [setting for setting in settings if setting[1] == "window"]
    for row, (precision, batch) in enumerate(settings):
        # a new clip per call, and per row: no cache hits (encoders' caches, VCT's generated mask images)
        clips = {k: window_clip(window, seed=100 + 1000 * row + k) for k in range(-1, repeats)}
        if name in PUBLISHED_MASK_IMAGES:
            clips = {k: with_mask_images(clip, folder, seed=100 + 1000 * row + k) for k, clip in clips.items()}
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


def training_task(name: str, size: str, device: torch.device, clips: list[Clip]):
    """The model and its ``avseg train`` task over ``clips``."""
    with torch.device(device):
        segmenter = build_segmenter(name, size, str(device))
    model = segmenter.model.train()
    if name == "av2t-sam":
        from avseg.models.av2t_sam.training import AV2TTask

        model.activation_checkpointing = True
        return model, AV2TTask(model, segmenter.inputs, clips, batch_clips=len(clips))
    if name == "vct":
        from avseg.models.vct.training import VCTTask

        return model, VCTTask(model, clips, batch_clips=len(clips))
    from avseg.models.auralsam2.training import AuralSAM2Task

    return model, AuralSAM2Task(model, clips, batch_clips=len(clips))


def training_row(name: str, size: str, device: torch.device, repeats: int) -> list:
    batch_clips, frames, micro_batches, bf16 = TRAINED[name]
    masks = np.zeros((frames, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    masks[:, 56:168, 56:168] = 1
    clips = [replace(window_clip(frames, seed=200 + k), masks=masks, mask_valid=None) for k in range(batch_clips)]  # every frame annotated
    if name == "vct":  # S4's training split: the first frame annotated, the clip's category (its prototype target)
        folder = Path(tempfile.mkdtemp(prefix="mask-images-"))
        first = np.arange(frames) == 0
        clips = [with_mask_images(replace(clip, mask_valid=first, meta={**clip.meta, "category": "dog_barking"}), folder, seed=200 + k) for k, clip in enumerate(clips)]
    model, task = training_task(name, size, device, clips)
    batch = next(task.batches(0))
    parts = [batch[k::micro_batches] for k in range(micro_batches)]  # as avseg train splits an update
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-5)
    low = bf16 and (device.type == "cuda" or size == "tiny")  # bf16 autocast (CPU too at tiny size: the same code path)

    def step(_k: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        for part in parts:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
                loss = task.loss(part, device)["total"]
            (loss / micro_batches).backward()
        optimizer.step()

    reset_peak(device)
    seconds = timed(device, step, repeats)
    shape = f"{batch_clips} clips x {frames} frames" + (f" ({micro_batches} micro-batches)" if micro_batches > 1 else "")
    row = [f"{name} train step", "bf16" if low else "fp32", shape, f"{batch_clips * frames / seconds:.1f}", f"{seconds:.3f}", peak_gb(device)]
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
    parser.add_argument("--no-train", action="store_true", help="skip the training-step rows")
    parser.add_argument("--compile", action="store_true", help="add a bf16 row with --compile per model (its first call, compilation included, in the row)")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = "tiny" if args.tiny else "full"
    print(machine(), f"| sizes: {size} | window {args.window} frames | {args.repeats} repeats", flush=True)
    print(" | ".join(HEADER), flush=True)
    rows = []
    names = args.models.split(",")
    for name in names:
        rows += measured(name, lambda name=name: inference_rows(name, size, device, args.window, args.repeats, args.compile))
    for name in [] if args.no_train else [n for n in TRAINED if n in names]:
        rows += measured(f"{name} train step", lambda name=name: [training_row(name, size, device, args.repeats)])
    print(table(HEADER, rows))


if __name__ == "__main__":
    main()
