"""Every frame vs one frame per second: a tiny TeSO on moving, intermittently sounding synthetic objects.

    python benchmarks/dense.py [--videos 48] [--epochs 16] [--work DIR] [--propagator SAM2] [--threshold 0.5] [--set KEY=VALUE ...]

``--work DIR`` keeps the data and the trained model there; a second run with
the same folder skips both and only segments and scores.

1. writes the synthetic MS3 benchmark with ``avseg synth --fps 10 --motion``:
   objects move about their own radius within a second and sounds start and
   stop at arbitrary instants, with a ground-truth mask for every frame;
2. trains the demo's tiny TeSO (``avseg/demo.yaml``, oracle cues) on its
   official per-second frames with the regular training loop;
3. segments the held-out (test split) videos with ``avseg segment``'s code
   (:class:`avseg.engine.session.LoadedSegmenter`, each video's visible
   object names as its cues) in each mode below, and scores every frame with
   :func:`avseg.engine.dense_eval.evaluate_dense` (official J and F).

Rows: ``held 1 fps`` is today's ``--rate 1`` output, each second's mask held
over its frames (as the overlay shows it); the last row holds the *ground
truth* of each sampled frame instead: what the best possible 1 fps output
scores, the cost of motion and mid-second onsets alone. frames/s is the number of video
frames over the wall time of the segment call (decoding, model, masks and
overlay; CPU, noisy when other processes share the machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import machine, table  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import Sam2VideoModel  # noqa: E402

from avseg.config import load_recipe  # noqa: E402
from avseg.data.dense import load_dense_truth, read_dense_masks, video_path  # noqa: E402
from avseg.data.synthetic import load_objects, write_dataset  # noqa: E402
from avseg.engine.demo import DEMO_RECIPE  # noqa: E402
from avseg.engine.dense import Sampling  # noqa: E402
from avseg.engine.dense_eval import evaluate_dense  # noqa: E402
from avseg.engine.session import load_segmenter  # noqa: E402
from avseg.engine.train import train  # noqa: E402
from avseg.media import avsbench_frame_index  # noqa: E402
from avseg.propagation import load_propagator  # noqa: E402
from avseg.propagation.sam2_weights import sam2_video_config, tiny_video_sam2_config  # noqa: E402

FPS = 10


def segment_all(loaded, data: Path, clip_ids: list[str], out: Path, **options) -> float:
    """Segment every clip's video into ``out``; the wall seconds it took."""
    objects = load_objects(data)
    started = time.perf_counter()
    for clip_id in clip_ids:
        names = sorted({name for second in objects[clip_id]["visible"] for name in second})
        per_video = dataclasses.replace(loaded, cue_names=tuple(names))
        per_video.segment(video_path(data, clip_id), out, progress=False, **options)
    return time.perf_counter() - started


def trained_model(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """The motion dataset and the trained model's folder in ``work`` (written and trained unless already there)."""
    data, run = work / "ms3", work / "runs" / "dense"
    if not (data / "dense_truth.json").is_file():
        started = time.perf_counter()
        write_dataset("ms3", data, args.videos, seed=0, size=args.size, fps=FPS, motion=True)
        print(f"wrote {args.videos} motion videos at {FPS} fps in {time.perf_counter() - started:.0f}s", flush=True)
    if not (run / "best").is_dir():
        overrides = [f"data.root={data}", f"output={work}/runs", "name=dense", "train.device=cpu", f"data.synthetic_videos={args.videos}",
                     f"data.synthetic_size={args.size}", f"train.epochs={args.epochs}", *args.set]
        recipe = load_recipe(DEMO_RECIPE, overrides)
        started = time.perf_counter()
        run = train(recipe, overwrite=True)
        print(f"trained a tiny TeSO for {recipe.train.epochs} epochs in {time.perf_counter() - started:.0f}s", flush=True)
    return data, run


def held_truth(data: Path, clip_ids: list[str], out: Path, empty: bool = False) -> Path:
    """The ceiling of any 1 fps output: each second's ground truth (the sampled frame's) as a ``--rate 1`` result
    (``empty``: all-empty masks instead, the score of predicting nothing)."""
    truth = load_dense_truth(data)
    for clip_id in clip_ids:
        dense = read_dense_masks(data, clip_id, truth["clips"][clip_id]["frames"])
        (out / clip_id / "masks").mkdir(parents=True)
        for second in range(len(dense) // FPS):
            mask = dense[avsbench_frame_index(second, FPS)] & (not empty)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / clip_id / "masks" / f"{second:05d}.png")
    return out


def random_sam2_folder(folder: Path) -> Path:
    """A toy-size ``Sam2VideoModel`` with random weights (the propagation tests' config), saved as a folder."""
    torch.manual_seed(0)
    Sam2VideoModel(sam2_video_config(tiny_video_sam2_config())).save_pretrained(folder)
    return folder


def modes(args: argparse.Namespace, loaded, tmp: Path) -> list[tuple[str, dict]]:
    propagator = args.propagator or str(random_sam2_folder(tmp / "sam2-random"))
    name = "random toy SAM 2" if args.propagator is None else Path(args.propagator).name
    return [
        ("held 1 fps masks (--rate 1, today)", {"sampling": Sampling(rate=1)}),
        ("per-frame inference (--rate all --propagator none)", {"sampling": Sampling()}),
        (f"keyframes 1/s + propagation ({name})", {"sampling": Sampling(keyframes=1), "propagator": load_propagator(propagator, None, loaded.info, "cpu")}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--work", type=Path, help="keep data and model here (reused by a later run)")
    parser.add_argument("--propagator", help="SAM 2 video folder or hub name for the propagation row (default: random toy weights)")
    parser.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold of the masks (avseg segment's 0.5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the recipe")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data, run = trained_model(work, args)
        truth = load_dense_truth(data)
        test_ids = [clip_id for clip_id, entry in truth["clips"].items() if entry["split"] == "test"]
        frames = sum(truth["clips"][clip_id]["frames"] for clip_id in test_ids)
        loaded = load_segmenter(run / "best", cues=("placeholder",), device="cpu")
        rows = []
        for index, (name, options) in enumerate(modes(args, loaded, Path(tmp))):
            out = Path(tmp) / "segment" / str(index)
            seconds = segment_all(loaded, data, test_ids, out, threshold=args.threshold, **options)
            scores = evaluate_dense(out, data, test_ids)
            rows.append([name, f"{scores['J']:.3f}", f"{scores['F']:.3f}", f"{frames / seconds:.1f}"])
            print(f"{name}: {scores}, {seconds:.0f}s", flush=True)
        for name, empty in (("ceiling of 1 fps: ground truth of the sampled frame, held", False), ("reference: empty masks everywhere", True)):
            scores = evaluate_dense(held_truth(data, test_ids, Path(tmp) / f"reference-{empty}", empty), data, test_ids)
            rows.append([name, f"{scores['J']:.3f}", f"{scores['F']:.3f}", "-"])
    print(f"\n## every-frame J and F on {len(test_ids)} held-out motion videos ({frames} frames at {FPS} fps; masks at probability > {args.threshold:g})\n")
    print(table(["mode", "J", "F", "frames/s"], rows))
    if args.propagator is None:
        print("\nThe propagation row uses a SAM 2 video model with random toy weights: it cannot track, so that row only "
              "shows the plumbing and its speed; run with --propagator facebook/sam2.1-hiera-large (a GPU helps) for real tracking.")


if __name__ == "__main__":
    main()
