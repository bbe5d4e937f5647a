"""The AVSBench-Robust part of ``avseg evaluate --robust``: its table and its plot.

The numbers come from :func:`avseg.engine.evaluate.evaluate_robust`; the formulas and
their sources are in :func:`avseg.metrics.false_positive_rate` and
:func:`avseg.metrics.robust_summary`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from avseg.metrics import format_table

SOURCE = "AVSBench-Robust (Li et al., arXiv 2502.00358): FPR as its test.py; G-mIoU/G-F = harmonic mean of positive J/F and 1 - G-FPR (avseg's reading, see avseg.metrics.robust_summary)"


def robust_markdown(robust: dict) -> str:
    """Per condition J, F, FPR; then G-mIoU, G-F, G-FPR; then what did not run and why."""
    rows = [
        {"condition": name, **{key: values[key] for key in ("J", "F", "FPR", "F_batch_independent", "FPR_batch_independent")}}
        for name, values in robust["conditions"].items()
    ]
    summary = [{key: robust[key] for key in ("G-mIoU", "G-F", "G-FPR", "G-F_batch_independent")}]
    lines = ["### AVSBench-Robust: positive and negative audio", "", format_table(rows), "", format_table(summary), "", f"Source: {SOURCE}."]
    lines.append(f"Noise sources: {', '.join(robust['noise_sources'])}.")
    if robust["offscreen_unmatched"]:
        lines.append(f"Off-screen: {len(robust['offscreen_unmatched'])} clip(s) had no clip of another category and took a random other sounding clip, as the official MS3 script does.")
    for name, reason in robust["not_run"].items():
        lines.append(f"Not run: {name} ({reason}); the G-metrics average the conditions above.")
    return "\n".join(lines)


def plot_robust(robust: dict, path: Path, width: int = 640, height: int = 360) -> None:
    """Bars of J, F and FPR per condition, and the G-metrics (PIL, no matplotlib)."""
    groups = {name: {key: values[key] for key in ("J", "F", "FPR")} for name, values in robust["conditions"].items()}
    groups["G"] = {"G-mIoU": robust["G-mIoU"], "G-F": robust["G-F"], "G-FPR": robust["G-FPR"]}
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    top, bottom, left = 48, height - 40, 40
    draw.text((left, 8), "AVSBench-Robust: J, F (higher is better), FPR (lower is better)", fill="black")
    draw.line((left, bottom, width - 10, bottom), fill="black")
    palette = [(66, 133, 244), (15, 157, 88), (219, 68, 55)]
    group = (width - left - 20) / len(groups)
    for g, (name, values) in enumerate(groups.items()):
        x0 = left + g * group + group * 0.1
        bar = group * 0.8 / len(values)
        for m, (metric, value) in enumerate(values.items()):
            y = bottom - max(0.0, min(1.0, float(value))) * (bottom - top)
            draw.rectangle((x0 + m * bar, y, x0 + (m + 1) * bar - 2, bottom), fill=palette[m % 3])
            draw.text((x0 + m * bar, y - 12), f"{value:.2f}", fill="black")
        draw.text((x0, bottom + 6), name, fill="black")
    for m, label in enumerate(("J / G-mIoU", "F / G-F", "FPR / G-FPR")):
        draw.rectangle((left + 130 * m, 24, left + 130 * m + 10, 34), fill=palette[m])
        draw.text((left + 130 * m + 14, 23), label, fill="black")
    image.save(path)
