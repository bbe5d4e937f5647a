"""AuralSAM2 on CPU: avseg against the release's code (yyliu01/AuralSAM2 at 64a16dd), same weights, inputs and settings.

    python benchmarks/auralsam2.py --official-python REF/venv/bin/python --official-src REF \
        --official-weights WEIGHTS.pth [--make-random-weights] [--size small|full] [--frames 5] \
        [--repeats 3] [--steps 1] [--threads 2] [--tasks infer,train] [--allocators tuned,untuned] [--dropout 0.1]

**The official side** runs in its own reference environment, which the user builds outside avseg:
``--official-python`` is its python, ``--official-src`` the folder that holds the release's model code as that
environment sets it up. The release is not an installable package and its SAM 2 is a modified copy of
``sam2``, so the reference environment that avseg's parity check used (issue 21) is: torch 2.13 (CPU), hydra-core,
omegaconf, iopath, the ``sam2`` 1.1.0 source (for the files the release leaves unchanged) and one module,
``release_ref.py`` in ``--official-src``, holding the release's modified files at 64a16dd (``model/aural_fuser.py``,
``model/mymodel.py``'s ``AVmodel``, the ``*_wo_prompt`` methods of ``organised_sam2_train.py``, and its
``sam2_base.py``, ``mask_decoder.py``, ``transformer.py`` and ``prompt_encoder.py`` changes). The worker needs of it
one function, ``build(image_size, trunk_overrides, dropout)``: the release's ``AVmodel`` on ``sam2_hiera_l.yaml``
(hydra ``++model.image_encoder.KEY=VALUE`` overrides for a smaller trunk, none at full size), random weights, CPU.
The rest is the release's own API: ``forward(frames, spect) -> (per-frame outputs, projections)``,
``freeze_sam_parameters()``, ``state_dict()``.

``WEIGHTS.pth`` is the release's whole-model state dict (``v_model.*`` + ``aural_fuser.*``): a released checkpoint
at full size, or random weights that ``--make-random-weights`` first writes with the official code. avseg's side
is that file converted once by ``avseg convert auralsam2``'s code (:func:`avseg.models.auralsam2.convert.convert`,
run with the benchmark's size and dropout as its model configuration).

Sizes: ``full`` is the released architecture, SAM 2.0 Hiera-L at 1024, VGGish, the AuralFuser of
``architecture.yaml``. ``small`` keeps everything but the trunk: a Hiera of 24 channels and stages ``1,2,2,1`` at
256 (the parity check's size), so a run takes minutes on 2 CPU cores.

Each measurement runs in a fresh process; the sides run ``--repeats`` times each, alternately and in
alternating order, so both see the same contention on a shared machine. Both sides: the same threads
(``torch.set_num_threads``), fp32, the same allocator setting (``tuned``: avseg's, from ``avseg/engine/memory.py``
itself, for the command doing the task; ``untuned``: glibc's defaults), one untimed warm-up step, then the median
of ``--steps`` timed steps: wall-clock seconds, and CPU seconds of the process (all its threads), which a shared
machine's contention inflates less than the wall clock; also the fastest timed step of all runs (on a machine
shared with others' jobs, the least disturbed step is the closest to the step's own cost). Peak memory as
``benchmarks/_worker.py`` defines it: the load peak (imports and weights), the compute peak after resetting
``VmHWM`` (the loaded model plus the work), and the work's own part (the compute peak less the resident set at
the reset; avseg's imports, transformers among them, hold about 180 MiB more than the official side's, which the
compute peak counts and this does not). The work's part is read with ``tuned``: ``untuned`` leaves what loading
freed on the heap, where the work reuses it, so it reads low, most for the official side, whose load frees a
whole state dict.
The tasks:

- ``infer``: one clip of ``--frames`` frames with SAM 2's memory, tracked from the first frame, in
  evaluation mode under ``no_grad``, to the ``iou_select`` logits of every frame at the input size. Each side
  runs its own path: the release's forward (which also upsamples all three masks of every frame and computes the
  contrastive projections) and its ``iou_select`` pick; avseg's ``AuralSAM2.forward`` and ``select``.
- ``train``: one training step as the release takes it: ``model.train()`` with SAM 2 and VGGish frozen in
  evaluation mode, the clip tracked from its middle frame, a loss of the release's form, then
  ``backward`` and an AdamW step (lr 1e-4, weight decay 0.05: the release's) on the AuralFuser's trainable
  parameters. The loss is the same code on both sides (below, in the worker) on the same tensors: SAM 2's
  multistep terms on the three masks at the input size (focal x20 + dice on the best mask, MSE of its predicted
  IoU, BCE of the object score) plus an InfoNCE between each level's audio projection and its mask-pooled visual
  projection (τ = 0.1). It is small next to the model; the release's own loss (pixel sampling per class) is not
  reproduced here. The dropout is the release's (0.1) unless ``--dropout`` says otherwise.

Both sides' outputs of the warm-up step are saved and compared in the same run (``max |Δ|``): the timings only
count if the two sides computed the same thing. With dropout (the training task at the default ``--dropout``)
the two sides draw different masks, so the training row compares nothing; ``--dropout 0`` compares it too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from _common import SIDES_HEADER, alternating, load, machine, sides_cells, spread, table
from _models import FRAME_SIZE, window_clip

WORKER = r"""
import json, sys
settings = json.loads(sys.argv[1])
sys.path.insert(0, settings["benchmarks"])
import torch
import torch.nn.functional as F
from _worker import report, set_allocator, start_compute, warm_and_time

side, task, folder, size = settings["side"], settings["task"], settings["folder"], settings["image_size"]
torch.set_num_threads(settings["threads"])
torch.manual_seed(0)
memory = set_allocator(settings["allocator"], task, settings["memory_py"])

if side == "avseg":
    from avseg.models.registry import load_model

    model = load_model(f"{folder}/avseg")
    trainable = model.trainable_parameters()
    start_training = model.train  # SAM 2 and VGGish stay in evaluation mode

    def infer(pixels, spectrograms):
        return model.select(model(pixels, spectrograms))

    def train_outputs(pixels, spectrograms):
        output = model(pixels, spectrograms, conditioning_frame=len(pixels) // 2)
        masks = F.interpolate(output.multimask_logits, (size, size), mode="bilinear", align_corners=False)
        return (masks, output.iou_scores, output.object_scores, *model.aural_fuser.project(output.visual_prompts, output.audio_prompts))
else:
    sys.path.insert(0, settings["official_src"])
    import release_ref

    model = release_ref.build(size, settings["trunk"], settings["dropout"])
    if task == "random-weights":
        torch.save(model.state_dict(), settings["weights"])
        sys.exit()
    model.load_state_dict(torch.load(settings["weights"], map_location="cpu", weights_only=True), strict=True)
    model.freeze_sam_parameters()
    trainable = [p for p in model.parameters() if p.requires_grad]

    def start_training():  # as the release's trainer
        model.train()
        model.freeze_sam_parameters()

    def train_outputs(pixels, spectrograms):  # training mode tracks from the middle frame by itself
        frames, (visual, audio) = model(pixels, spectrograms)
        stacked = lambda key: torch.cat([frame[key][0] for frame in frames])
        return stacked("multistep_pred_multimasks_high_res"), stacked("multistep_pred_ious"), stacked("multistep_object_score_logits"), visual, audio

    def infer(pixels, spectrograms):  # the release's iou_select
        masks, iou = train_outputs(pixels, spectrograms)[:2]
        return masks[torch.arange(len(masks)), iou.argmax(-1)]


def loss_of(masks, iou, object_scores, visual, audio, target):
    # SAM 2's multistep terms: focal x20 + dice per mask, the best mask's; MSE of its IoU; BCE of the object score
    truth = target[:, None].expand_as(masks)
    probability = masks.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(masks, truth, reduction="none")
    agreement = probability * truth + (1 - probability) * (1 - truth)
    focal = ((0.25 * truth + 0.75 * (1 - truth)) * cross_entropy * (1 - agreement) ** 2).mean((-2, -1))
    dice = 1 - (2 * (probability * truth).sum((-2, -1)) + 1) / (probability.sum((-2, -1)) + truth.sum((-2, -1)) + 1)
    combined = 20 * focal + dice
    best = combined.argmin(-1, keepdim=True)
    predicted = (masks > 0).float()
    actual_iou = ((predicted * truth).sum((-2, -1)) / ((predicted + truth).clamp(max=1).sum((-2, -1)) + 1e-6)).detach()
    loss = combined.gather(1, best).mean() + F.mse_loss(iou.gather(1, best), actual_iou.gather(1, best))
    loss = loss + F.binary_cross_entropy_with_logits(object_scores.reshape(-1), torch.ones(len(masks)))
    # the audio-guided contrastive term: each frame's audio against every frame's mask-pooled pixels, per level
    for pixels, sound in zip(visual, audio):
        weights = F.interpolate(target[:, None], pixels.shape[-2:], mode="nearest")
        pooled = F.normalize((pixels * weights).sum((-2, -1)) / weights.sum((-2, -1)).clamp(min=1), dim=-1)
        loss = loss + F.cross_entropy(F.normalize(sound[..., 0], dim=-1) @ pooled.T / 0.1, torch.arange(len(masks)))
    return loss


inputs = torch.load(f"{folder}/inputs.pt", weights_only=True)
pixels, spectrograms, target = inputs["pixels"], inputs["spectrograms"], inputs["target"]
load_peak = start_compute(memory)
if task == "infer":
    model.eval()

    def step():
        with torch.no_grad():
            return infer(pixels, spectrograms)
else:
    start_training()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.05)

    def step():
        optimizer.zero_grad()
        masks, *rest = train_outputs(pixels, spectrograms)
        loss_of(masks, *rest, target).backward()
        optimizer.step()
        return masks.detach()
first, seconds, cpu_seconds = warm_and_time(step, settings["steps"])
torch.save(first, f"{folder}/{side}-{task}.pt")
print(json.dumps(report(seconds, cpu_seconds, load_peak, trainable=sum(p.numel() for p in trainable))))
"""

SMALL_TRUNK = {
    "trunk.embed_dim": 24, "trunk.num_heads": 1, "trunk.stages": "[1,2,2,1]", "trunk.global_att_blocks": "[4]",
    "trunk.window_pos_embed_bkg_spatial_size": "[4,4]", "trunk.window_spec": "[4,2,2,2]", "neck.backbone_channel_list": "[192,96,48,24]",
}  # fmt: skip
"""The small size's Hiera, as hydra overrides of the release's ``sam2_hiera_l.yaml`` image encoder."""
IMAGE_SIZE = {"small": 256, "full": 1024}


def avseg_config(size: str, dropout: float):
    """avseg's configuration of the same architecture (``small``: :data:`SMALL_TRUNK` in transformers' names)."""
    from transformers import Sam2Config

    from avseg.models.auralsam2.model import PAPER_FUSER, AuralSAM2Config
    from avseg.propagation.sam2_weights import sam2_video_config

    fuser = {**PAPER_FUSER, "dropout": dropout}
    if size == "full":
        return AuralSAM2Config(fuser=fuser)
    backbone = {
        "model_type": "sam2_hiera_det_model", "hidden_size": 24, "num_attention_heads": 1, "image_size": [256, 256],
        "blocks_per_stage": [1, 2, 2, 1], "embed_dim_per_stage": [24, 48, 96, 192], "num_attention_heads_per_stage": [1, 2, 4, 8],
        "window_size_per_stage": [4, 2, 2, 2], "global_attention_blocks": [4], "window_positional_embedding_background_size": [4, 4],
    }  # fmt: skip
    vision = {"backbone_config": backbone, "backbone_channel_list": [192, 96, 48, 24], "backbone_feature_sizes": [[64, 64], [32, 32], [16, 16]], "fpn_hidden_size": 256}
    sam = Sam2Config(vision_config=vision, prompt_encoder_config={"image_size": 256})
    return AuralSAM2Config(sam=sam2_video_config(sam, sam21=False).to_dict(), fuser=fuser)


def convert(weights: Path, out: Path, size: str, dropout: float) -> None:
    """``avseg convert auralsam2``'s code, with the benchmark's architecture instead of the released one."""
    from avseg.models.auralsam2 import convert as conversion

    with mock.patch.object(conversion, "release_config", lambda: avseg_config(size, dropout)):
        conversion.convert(weights, out)


def clip_inputs(frames: int, image_size: int) -> dict[str, torch.Tensor]:
    """Both sides' inputs: ``frames`` 224x224 frames of 28-pixel random blocks and noise at -10 dBFS, prepared by
    avseg (the release's preparation, :mod:`avseg.models.auralsam2.inputs`), and a target mask for training."""
    from dataclasses import replace

    import numpy as np

    from avseg.models.auralsam2.inputs import clip_inputs as model_inputs

    coarse = np.random.default_rng(1).integers(0, 256, (frames, 8, 8, 3), dtype=np.uint8)
    clip = replace(window_clip(frames), frames=np.kron(coarse, np.ones((1, FRAME_SIZE // 8, FRAME_SIZE // 8, 1), dtype=np.uint8)))
    inputs = model_inputs(clip, image_size)
    target = torch.zeros(frames, image_size, image_size)
    target[:, image_size // 4 : image_size // 2, image_size // 4 : 3 * image_size // 4] = 1
    return {**inputs, "target": target}


def measure(side: str, task: str, allocator: str, folder: Path, args: argparse.Namespace) -> dict:
    settings = {
        "side": side, "task": task, "allocator": allocator, "folder": str(folder), "threads": args.threads, "steps": args.steps,
        "image_size": IMAGE_SIZE[args.size], "trunk": SMALL_TRUNK if args.size == "small" else None, "dropout": args.dropout,
        "benchmarks": str(Path(__file__).resolve().parent), "memory_py": str(Path(__file__).resolve().parents[1] / "src" / "avseg" / "engine" / "memory.py"),
        "official_src": str(args.official_src.resolve()), "weights": str(args.official_weights.resolve()),
    }  # fmt: skip
    python = sys.executable if side == "avseg" else str(args.official_python)
    done = subprocess.run([python, "-c", WORKER, json.dumps(settings)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} {task} ({allocator} allocator) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if task != "random-weights" else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-python", required=True, type=Path, help="python of the reference environment")
    parser.add_argument("--official-src", required=True, type=Path, help="its folder with release_ref.py (the release's model code, see above)")
    parser.add_argument("--official-weights", required=True, type=Path, help="the release's whole-model state dict (.pth)")
    parser.add_argument("--make-random-weights", action="store_true", help="first write random official weights of --size to --official-weights")
    parser.add_argument("--size", choices=sorted(IMAGE_SIZE), default="small")
    parser.add_argument("--frames", type=int, default=5, help="frames of the clip (5: an AVSBench S4/MS3 clip)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (each a fresh process)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per run after the warm-up; a run reports their median")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", default="infer,train")
    parser.add_argument("--allocators", default="tuned,untuned", help="tuned: the avseg command's setting from avseg.engine.memory, on both sides; untuned: glibc's defaults")
    parser.add_argument("--dropout", type=float, default=0.1, help="the AuralFuser's dropout in training (the release's 0.1; 0 makes the training row comparable)")
    args = parser.parse_args()
    if min(args.repeats, args.steps, args.threads) < 1 or args.frames < 2:
        parser.error("--repeats, --steps and --threads must be at least 1, --frames at least 2 (one frame has no memory)")
    print(machine(), "|", load(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.make_random_weights:
            started = time.perf_counter()
            measure("official", "random-weights", "untuned", folder, args)
            print(f"wrote random official weights to {args.official_weights} in {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        convert(args.official_weights, folder / "avseg", args.size, args.dropout)
        print(f"converted the official weights in {time.perf_counter() - started:.0f} s", flush=True)
        torch.save(clip_inputs(args.frames, IMAGE_SIZE[args.size]), folder / "inputs.pt")
        rows, versions = [], {}
        for allocator in args.allocators.split(","):
            for task in args.tasks.split(","):

                def run(side: str, task: str = task, allocator: str = allocator) -> dict:
                    result = versions[side] = measure(side, task, allocator, folder, args)
                    print(f"{allocator} {task} {side}: {result}", flush=True)
                    return result

                results = alternating(args.repeats, run)
                if results["official"][0]["trainable"] != results["avseg"][0]["trainable"]:
                    raise SystemExit(f"the sides train different parameter counts: {results['official'][0]['trainable']} and {results['avseg'][0]['trainable']}")
                compared = task == "infer" or args.dropout == 0
                diff = (torch.load(folder / f"avseg-{task}.pt") - torch.load(folder / f"official-{task}.pt")).abs().max().item()
                cpu = [spread([r["cpu_seconds"] for r in results[side]]) for side in ("official", "avseg")]
                fastest = [f"{min(r['fastest_seconds'] for r in results[side]):.3f}" for side in ("official", "avseg")]
                work = [f"{statistics.median(r['compute_peak_mib'] - r['compute_start_mib'] for r in results[side]):.0f}" for side in ("official", "avseg")]
                rows.append([task, allocator, *sides_cells(results["official"], results["avseg"]), *fastest, *work, *cpu, f"{diff:.1e}" if compared else "n/a (dropout)"])
    print(machine(), "|", load())
    print(f"size {args.size} ({'Hiera-L' if args.size == 'full' else 'small Hiera'} at {IMAGE_SIZE[args.size]}), {args.frames} frames, {args.threads} threads, fp32, "
          f"dropout {args.dropout}, {args.repeats} runs per side, {args.steps} timed steps per run after 1 warm-up")  # fmt: skip
    print(f"torch: official {versions['official']['torch']}, avseg {versions['avseg']['torch']}; trainable parameters {versions['avseg']['trainable']:,}")
    header = ["task", "allocator", *SIDES_HEADER, "official fastest s", "avseg fastest s", "official work MiB", "avseg work MiB", "official CPU s", "avseg CPU s", "max |Δ logits|"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
