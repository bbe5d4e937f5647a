"""``avseg demo``: the whole pipeline, offline, in about three minutes on a laptop CPU.

1. write a synthetic MS3 dataset of motion videos (``avseg synth --fps 10 --motion``: objects that
   move, sounds that start and stop at any instant, a ground-truth mask for every frame) and train a
   tiny TeSO (the real classes at toy width; recipe ``avseg/demo.yaml``) on its official one frame
   per second, with the regular training loop;
2. evaluate it with normal and with muted audio, on all test clips and on the clips that have a
   sounding object: a model that follows the sound loses most of its J when the sound is gone. Muted
   audio is scored with TeSO's silence gate on (what ``avseg segment`` does) and off (the network
   alone, from the same pass: :mod:`avseg.silence`); the verdict is the network's, since a gated mute
   drop is partly the gate's rule;
3. segment one held-out motion video at every frame, as ``avseg segment`` does, with its own audio
   and with the audio muted (gate off, the network alone again);
4. score those masks against the every-frame ground truth (:mod:`avseg.engine.dense_eval`) and draw
   them for a person to look at: ``OUT/demo/compare.mp4``, ``strip.png`` and ``timeline.png``
   (:mod:`avseg.engine.demo_outputs`);
5. print the table, the verdict, the paths and the time taken.

Everything goes under ``OUT``: the dataset in ``data/ms3-motion`` (reused by a later demo), the run
in ``runs/demo`` (replaced by a later demo, :mod:`avseg.engine.run_folder`), the pictures and the
segmentations in ``demo`` (written whole, replacing only what an earlier demo wrote there, checked
before the training starts).
"""

from __future__ import annotations

import time
from pathlib import Path

from avseg.config import load_recipe
from avseg.data.dense import load_dense_truth, video_path
from avseg.data.perturb import PerturbedClips
from avseg.data.synthetic import load_objects
from avseg.engine.data import open_split
from avseg.engine.demo_outputs import (
    DEMO_FILES,
    MUTED,
    OWN_AUDIO,
    DemoVideo,
    write_pictures,
)
from avseg.engine.dense_eval import evaluate_dense
from avseg.engine.evaluate import evaluate_clips, evaluate_with_and_without_gate
from avseg.engine.session import load_segmenter
from avseg.engine.train import train
from avseg.errors import DatasetError
from avseg.metrics import format_table
from avseg.models.registry import build_system, load_model
from avseg.outputs import check_writable, staged_folder

DEMO_RECIPE = str(Path(__file__).resolve().parent.parent / "demo.yaml")
DATA_FOLDER, PICTURES_FOLDER = Path("data") / "ms3-motion", "demo"


def run_demo(out: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    out = Path(out)
    started = time.perf_counter()
    recipe = load_recipe(DEMO_RECIPE, [f"data.root={out / DATA_FOLDER}", f"output={out / 'runs'}", *overrides])
    pictures = out / PICTURES_FOLDER
    check_writable(pictures, DEMO_FILES)  # refused now, not after the training
    data = recipe.data
    print(f"[1/5] training a tiny TeSO on a synthetic MS3 dataset ({data.synthetic_videos} motion videos, {recipe.train.epochs} epochs)", flush=True)
    run = train(recipe, overwrite=True)  # the demo's own run: a second demo replaces the first

    print("[2/5] evaluating with normal and muted audio", flush=True)
    segmenter = build_system(recipe, model=load_model(run / "final")).segmenter()
    clips = list(open_split(data, data.test_split)) + list(open_split(data, data.val_split))
    sounding = [clip for clip in clips if clip.masks.any()]
    rows = []
    for subset, chosen in (("all test clips", clips), ("sounding clips", sounding)):
        normal = evaluate_clips(segmenter, chosen)
        gated, ungated = evaluate_with_and_without_gate(segmenter, PerturbedClips(chosen, "mute"))
        rows += _rows(subset, [("normal", normal), ("muted", gated), ("muted, gate off", ungated)])

    clip_id = demo_clip(data.root, data.test_split)
    video = video_path(data.root, clip_id)
    names = sorted({name for second in load_objects(data.root)[clip_id]["visible"] for name in second})
    print(f"[3/5] segmenting the motion video {video.name} at every frame, with its audio and muted", flush=True)
    loaded = load_segmenter(run / "final", cues=names, device=recipe.train.device)
    with staged_folder(pictures, DEMO_FILES) as staging:
        own = loaded.segment(video, staging / OWN_AUDIO, progress=False)
        loaded.segmenter.silence_gate = False  # muted: the network alone, as in the verdict
        muted = loaded.segment(video, staging / MUTED, audio="mute", progress=False)
        print("[4/5] scoring every frame against the ground truth; drawing compare.mp4 and timeline.png", flush=True)
        dense = [(condition, evaluate_dense(folder.parent, data.root, [clip_id])) for condition, folder in (("normal", own), ("muted, gate off", muted))]
        rows += _rows(f"{clip_id}, every frame ({dense[0][1]['frames']})", dense)
        write_pictures(DemoVideo.read(Path(data.root), clip_id, own, muted), staging)

    print("[5/5] done\n")
    print(format_table(rows))
    muted_drop = next(r["J_drop"] for r in rows if r["clips"] == "sounding clips" and r["audio"] == "muted, gate off")
    verdict = "follows the audio" if muted_drop >= 0.5 else "does NOT follow the audio enough"
    print(f"\nmuting the audio drops J on sounding clips by {100 * muted_drop:.0f}% with the silence gate off: the network {verdict}.")
    print(f"model:    {run / 'final'} (best on val: {run / 'best'})")
    print(f"metrics:  {run / 'metrics.jsonl'}")
    print(f"video:    {video} (held out; cues {', '.join(names)})")
    print(f"compare:  {pictures / 'compare.mp4'} (every frame: ground truth | mask with its audio | mask with the audio muted; its audio)")
    print(f"pictures: {pictures / 'timeline.png'}, {pictures / 'strip.png'}")
    print(f"segment:  {pictures / OWN_AUDIO / clip_id}, {pictures / MUTED / clip_id} (masks/, overlay.mp4, summary.json)")
    seconds = time.perf_counter() - started
    print(f"time:     {seconds:.0f}s")
    return {"rows": rows, "muted_drop": muted_drop, "run": run, "pictures": pictures, "clip": clip_id, "seconds": seconds}


def _rows(clips: str, scores: list[tuple[str, dict]]) -> list[dict]:
    """Table rows of one set of clips, each condition's J drop relative to the first (normal audio)."""
    normal = scores[0][1]["J"]
    return [{"clips": clips, "audio": condition, "J": values["J"], "F": values["F"],
             "J_drop": 1 - values["J"] / normal if normal else float("nan")} for condition, values in scores]


def demo_clip(root: str | Path, split: str) -> str:
    """The video of ``split`` that shows best what the audio does (ground truth, frame by frame): among the
    videos in which nothing sounds for at least half a second and something sounds for at least half the
    video (so the timeline has a shaded stretch and the strip a silent frame), the one whose sounding
    objects change most often; if no video qualifies, the most changing of all. Ties go to the first in
    the dataset's order."""
    truth = load_dense_truth(root)
    clips = {clip_id: entry for clip_id, entry in truth["clips"].items() if entry["split"] == split}
    if not clips:
        raise DatasetError(Path(root), f"no {split} videos to segment")

    def preference(clip_id: str) -> tuple[bool, int, int]:
        sounding = clips[clip_id]["sounding"]
        silent = sum(not names for names in sounding)
        shows_both = silent >= float(truth["fps"]) / 2 and len(sounding) - silent >= len(sounding) / 2
        changes = sum(a != b for a, b in zip(sounding, sounding[1:]))
        return shows_both, changes, -list(clips).index(clip_id)

    return max(clips, key=preference)
