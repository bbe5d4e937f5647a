"""``avseg evaluate``: metrics that fit the dataset, the preference-drop table, and the report files.

Outputs (in ``--out``, default ``<checkpoint>/eval-<split>``, or
``<output>/<name>/eval-<split>`` for a zero-shot recipe): ``report.json``,
``report.md`` (the tables) and ``drops.png`` (a bar plot of the relative
drops per perturbation). The official J and F are labelled with the batch
size they were computed at (they depend on it); the batch-independent F is
reported beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from avseg.config import Recipe
from avseg.engine.data import open_split, prepare_dataset
from avseg.engine.evaluate import evaluate_clips, evaluate_preference
from avseg.engine.memory import reuse_freed_memory
from avseg.engine.train import resolve_device
from avseg.errors import ConfigError
from avseg.metrics import format_table
from avseg.models.registry import ZERO_SHOT_MODELS, build_system, load_model
from avseg.outputs import check_writable

REPORT_FILES = ("report.json", "report.md", "drops.png")
"""What ``avseg evaluate`` writes into its ``--out`` folder (replaced on a new run; anything else there is refused)."""


def evaluate_recipe(recipe: Recipe, checkpoint: Path | None, split: str | None, perturb: str, out: Path | None) -> str:
    """Evaluate a trained ``checkpoint``, or a zero-shot recipe (no checkpoint), on the recipe's data."""
    reuse_freed_memory()
    split = split or recipe.data.test_split
    zero_shot = recipe.model in ZERO_SHOT_MODELS
    if zero_shot and checkpoint:
        raise ConfigError(f"--checkpoint: {recipe.model} is zero-shot; it has no checkpoint")
    if not zero_shot and not checkpoint:
        raise ConfigError(f"--checkpoint: {recipe.model} needs a trained model folder (runs/NAME/best)")
    out = out or (Path(checkpoint) if checkpoint else Path(recipe.output) / recipe.name) / f"eval-{split}"
    check_writable(Path(out), REPORT_FILES)  # before the evaluation, not after it
    model = load_model(checkpoint) if checkpoint else None
    if model is not None and model.name != recipe.model:
        raise ConfigError(f"--checkpoint: {checkpoint} holds a {model.name} model, but the recipe evaluates {recipe.model}")
    prepare_dataset(recipe.data)
    clips = open_split(recipe.data, split)
    system = build_system(recipe, num_classes=clips.num_classes, model=model)
    segmenter = system.segmenter(resolve_device(recipe.train.device))
    batch = recipe.train.eval_batch_clips
    options = {"batch_clips": batch, "num_classes": clips.num_classes, "null": split == "test_n"}
    if perturb.strip():
        results, drops = evaluate_preference(segmenter, list(clips), perturb, seed=recipe.train.seed, **options)
    else:
        results, drops = {"normal": evaluate_clips(segmenter, list(clips), **options)}, []
    report = {"checkpoint": str(checkpoint) if checkpoint else recipe.model, "split": split, "official_batch_clips": batch, "results": results, "drops": drops}
    markdown = _markdown(recipe, split, batch, results, drops)
    write_report(out, report, markdown)
    return markdown + f"\n\nreport: {out}"


def write_report(out: Path, report: dict, markdown: str) -> None:
    """``report.json``, ``report.md`` and, with drops, ``drops.png`` in ``out``.

    ``report.json`` is strict JSON: an undefined value is ``null`` with a reason beside it (see
    :func:`avseg.metrics.preference_drop`), and a NaN or infinity that slips through is an error
    here, before anything is written, instead of a file other JSON parsers reject.
    """
    try:
        text = json.dumps(report, indent=1, allow_nan=False)
    except ValueError as error:
        raise ValueError(f"{out / 'report.json'}: {error} in {report['results']} / {report['drops']}") from error
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(text + "\n")
    (out / "report.md").write_text(markdown + "\n")
    if report["drops"]:
        plot_drops(report["drops"], out / "drops.png")


def _markdown(recipe: Recipe, split: str, batch: int, results: dict, drops: list) -> str:
    title = f"## {recipe.name} on {recipe.data.layout} {split} (official J/F at batch size {batch} clips)"
    rows = drops or [{"condition": name, **{k: v for k, v in values.items() if isinstance(v, float)}} for name, values in results.items()]
    return f"{title}\n\n{format_table(rows)}"


def plot_drops(drops: list[dict], path: Path, width: int = 640, height: int = 360) -> None:
    """A bar chart of the relative drop of each metric under each perturbation (PIL, no matplotlib);
    an undefined drop is labelled n/a."""
    metrics = [k[: -len("_drop")] for k in drops[0] if k.endswith("_drop")]
    conditions = [row for row in drops if row["condition"] != "normal"]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    top, bottom, left = 30, height - 40, 50
    draw.text((left, 8), "relative drop from normal audio (larger = follows the sound)", fill="black")
    draw.line((left, bottom, width - 10, bottom), fill="black")
    palette = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88)]
    group = (width - left - 20) / max(1, len(conditions))
    bar = group * 0.8 / max(1, len(metrics))
    for g, row in enumerate(conditions):
        x0 = left + g * group + group * 0.1
        for m, metric in enumerate(metrics):
            if row[f"{metric}_drop"] is None:  # undefined (the metric is 0 with normal audio)
                draw.text((x0 + m * bar, bottom - 12), "n/a", fill="black")
                continue
            value = max(-1.0, min(1.0, float(row[f"{metric}_drop"])))
            y = bottom - value * (bottom - top)
            draw.rectangle((x0 + m * bar, min(y, bottom), x0 + (m + 1) * bar - 2, max(y, bottom)), fill=palette[m % 4])
        draw.text((x0, bottom + 6), row["condition"], fill="black")
    for m, metric in enumerate(metrics):
        draw.rectangle((width - 150, top + 14 * m, width - 140, top + 14 * m + 10), fill=palette[m % 4])
        draw.text((width - 135, top + 14 * m - 1), metric, fill="black")
    image.save(path)
