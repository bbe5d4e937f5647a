"""``avseg evaluate``: metrics that fit the dataset, the preference-drop table, and the report files.

Outputs (in ``--out``, default ``<checkpoint>/eval-<split>``, or
``<output>/<name>/eval-<split>`` for a zero-shot recipe): ``report.json``,
``report.md`` (the tables) and ``drops.png`` (a bar plot of the relative
drops per perturbation); with ``--robust``, the AVSBench-Robust table in
both and ``robust.png`` (see :mod:`avseg.engine.robust`). The official J and F are labelled with the batch
size they were computed at (they depend on it); the batch-independent F is
reported beside them. Both reports name the model's silence gate (its level, and
whether this evaluation had it on: ``--no-silence-gate`` turns it off and
changes nothing else); see :mod:`avseg.engine.evaluate` for the two mute rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from avseg.config import Recipe
from avseg.data.perturb import NoiseBank
from avseg.engine.data import open_split, prepare_dataset
from avseg.engine.distributed import Ranks, join
from avseg.engine.evaluate import (
    evaluate_clips,
    evaluate_preference,
    evaluate_robust,
    robust_conditions_not_run,
)
from avseg.engine.memory import reuse_freed_memory
from avseg.engine.precision import Inference
from avseg.engine.robust import plot_robust, robust_markdown
from avseg.engine.run_folder import REPORT_FILES
from avseg.engine.train import resolve_device
from avseg.errors import ConfigError
from avseg.hub.pretrained import PretrainedModel
from avseg.metrics import format_table
from avseg.models.registry import ZERO_SHOT_MODELS, build_system, load_model
from avseg.outputs import check_writable
from avseg.silence import SilenceGated, describe_gate

"""What ``avseg evaluate`` writes into its ``--out`` folder (replaced on a new run; anything else there is refused)."""


def evaluate_recipe(
    recipe: Recipe,
    checkpoint: Path | None,
    split: str | None,
    perturb: str,
    out: Path | None,
    silence_gate: bool = True,
    robust: bool = False,
    noise_dir: Path | None = None,
    precision: str | None = None,
    compile: bool = False,
    pretrained: PretrainedModel | None = None,
) -> str:
    """Evaluate a trained ``checkpoint``, or a zero-shot recipe (no checkpoint), on the recipe's data;
    ``silence_gate=False`` evaluates the network without its silence gate; ``robust`` adds
    AVSBench-Robust's negative audio (``noise_dir``: noise recordings); ``precision``, ``compile``:
    see :mod:`avseg.engine.precision`; ``pretrained``: the catalogue row evaluated (its published numbers are
    printed and recorded beside the measured ones). Returns the tables, or None in a process other than the first
    under torchrun: there the processes share the batches (:func:`avseg.engine.evaluate._evaluate`), each on
    its own device, and the first writes the report."""
    return _evaluate_recipe(recipe, checkpoint, split, perturb, out, silence_gate, robust, noise_dir, precision, compile, pretrained, join("gloo"))


def _evaluate_recipe(recipe, checkpoint, split, perturb, out, silence_gate, robust, noise_dir, precision, compile, pretrained, ranks: Ranks) -> str | None:
    reuse_freed_memory()
    inference = Inference.resolve(ranks.device(resolve_device(recipe.train.device)), precision, compile)
    if noise_dir is not None and not robust:
        raise ConfigError("--noise-dir: the noise clips are for --robust; add --robust")
    noise = NoiseBank(noise_dir) if robust else None
    split = split or recipe.data.test_split
    zero_shot = recipe.model in ZERO_SHOT_MODELS
    if zero_shot and checkpoint:
        raise ConfigError(f"--checkpoint: {recipe.model} is zero-shot; it has no checkpoint")
    if not zero_shot and not checkpoint:
        raise ConfigError(f"--checkpoint: {recipe.model} needs a trained model folder (runs/NAME/best)")
    out = out or (Path(checkpoint) if checkpoint else Path(recipe.output) / recipe.name) / f"eval-{split}"
    check_writable(Path(out), dict.fromkeys(REPORT_FILES))  # before the evaluation, not after it
    model = load_model(checkpoint) if checkpoint else None
    if model is not None and model.name != recipe.model:
        raise ConfigError(f"--checkpoint: {checkpoint} holds a {model.name} model, but the recipe evaluates {recipe.model}")
    if ranks.rank == 0:
        prepare_dataset(recipe.data)
    ranks.barrier()
    reader = open_split(recipe.data, split)
    clips = list(reader)
    batch = recipe.train.eval_batch_clips
    options = {"batch_clips": batch, "num_classes": reader.num_classes, "null": split == "test_n", "ranks": ranks}
    if robust:
        robust_conditions_not_run(clips, recipe.train.seed, **options)  # refuse before evaluating
    system = build_system(recipe, num_classes=reader.num_classes, model=model)
    segmenter = inference.prepare(system.segmenter(inference.device))
    gate = _silence_gate(segmenter, silence_gate, recipe.model)
    segmenter = inference.wrap(segmenter)
    if perturb.strip():
        results, drops = evaluate_preference(segmenter, clips, perturb, seed=recipe.train.seed, **options)
    else:
        results, drops = {"normal": evaluate_clips(segmenter, clips, **options)}, []
    report = {
        "checkpoint": str(checkpoint) if checkpoint else recipe.model,
        "split": split,
        "official_batch_clips": batch,
        "silence_gate": gate,
        "results": results,
        "drops": drops,
    }
    markdown = _markdown(recipe, split, batch, results, drops) + f"\n\n{gate['text']}"
    if robust:
        report["robust"] = evaluate_robust(segmenter, clips, recipe.train.seed, noise, positive=results["normal"], **options)
        markdown += "\n\n" + robust_markdown(report["robust"])
    if pretrained is not None:
        report["published"] = {"values": pretrained.published, "source": pretrained.published_source}
        markdown += "\n\n" + published_markdown(pretrained, results["normal"])
    if hasattr(segmenter, "report_fields"):  # what the segmenter says about its outputs (VCT: where its mask images came from)
        fields = merged_fields(ranks.gather(segmenter.report_fields()))  # each process saw its own share of the clips
        report.update(fields)
        if "mask_images" in fields:
            markdown += "\n\n" + mask_images_markdown(fields)
    report.update(inference.describe(), processes=ranks.world)
    if ranks.rank != 0:
        return None
    write_report(out, report, markdown)
    return markdown + f"\n\nreport: {out}"


def pretrained_recipe(name: str, data: Path | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Recipe, Path, PretrainedModel]:
    """``avseg evaluate --model NAME --data DIR``: a recipe for the catalogue row ``name`` on its own test set (the
    row's ``evaluation`` data fields, at ``data``), its model folder (downloaded and converted once) and the row."""
    import dataclasses

    from avseg.config import apply_overrides, build_config, recipe_to_dict
    from avseg.hub.pretrained import find_pretrained, pretrained_models
    from avseg.hub.resolve import resolve_model
    from avseg.models.registry import read_system_info

    row = find_pretrained(name)
    if row is None:
        names = ", ".join(r.name for r in pretrained_models() if r.evaluation)
        raise ConfigError(f"--model {name}: not a name of `avseg models` ({names}); for a model folder give its recipe: avseg evaluate RECIPE --checkpoint FOLDER")
    if not row.evaluation:
        raise ConfigError(f"--model {name}: trained on {row.data}, so it has no test set of its own; evaluate it with a recipe")
    if data is None:
        raise ConfigError(f"--data: the {row.evaluation['layout']} dataset folder to evaluate {name} on")
    folder = Path(resolve_model(name))
    info = read_system_info(folder)
    base = Recipe(name=name, model=info["model"])
    tree = recipe_to_dict(base)
    tree["encoders"] = info["encoders"]
    tree["data"] = {**dataclasses.asdict(base.data), **row.evaluation, "root": str(data), "sample_rate": info["sample_rate"]}
    return build_config(Recipe, apply_overrides(tree, overrides), f"--model {name}: "), folder, row


def merged_fields(per_process: list[dict]) -> dict:
    """The ``report_fields`` of the processes of an evaluation as one: a list holds every process's items once, in
    rank order; a flag (``approximate``) is true when any process's is."""
    merged: dict = {}
    for fields in per_process:
        for key, value in fields.items():
            if isinstance(value, list):
                merged[key] = merged.get(key, []) + [item for item in value if item not in merged.get(key, [])]
            elif isinstance(value, bool):
                merged[key] = merged.get(key, False) or value
            else:
                raise TypeError(f"report field {key!r}: a list or a flag, got {type(value).__name__}")
    return merged


def mask_images_markdown(fields: dict) -> str:
    """``report.md``'s line on VCT's mask images: where they came from, and whether the numbers are approximate."""
    made = "; ".join(fields["mask_images"]) or "none (no clip was segmented)"
    verdict = "approximate: some mask images are not the release's" if fields.get("approximate") else "not approximate"
    return f"mask images: {made} ({verdict})"


def published_markdown(row: PretrainedModel, measured: dict) -> str:
    """The measured numbers beside the row's published ones (or why none are entered)."""
    if not row.published:
        return f"published ({row.name}): {row.published_source}"
    rows = [{"metric": metric, "measured": measured.get(metric, float("nan")), "published": value} for metric, value in row.published.items()]
    return f"published ({row.name}; {row.published_source}):\n\n{format_table(rows)}"


def _silence_gate(segmenter, on: bool, model: str) -> dict:
    """Switch ``segmenter``'s silence gate; the report's description of it."""
    level = segmenter.silence_gate_dbfs if isinstance(segmenter, SilenceGated) else None
    if level is None and not on:
        raise ConfigError(f"--no-silence-gate: {model} has no silence gate")
    if level is not None:
        segmenter.silence_gate = on
    return {"dbfs": level, "on": level is not None and on, "text": describe_gate(level, on)}


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
    for name, plot, values in (("drops.png", plot_drops, report["drops"]), ("robust.png", plot_robust, report.get("robust"))):
        if values:
            plot(values, out / name)
        else:
            (out / name).unlink(missing_ok=True)  # not this run's: an earlier run's plot


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
