"""Helpers shared by the benchmark scripts: machine line, timing statistics, table printing, a synthetic video, and the
alternating runs and table row of the avseg-against-official comparisons (their worker side: ``_worker.py``)."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


def machine() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {device}"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def load() -> str:
    """The 1, 5 and 15-minute load averages: on a shared machine, how much else was running."""
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def synthetic_video(path: Path, seconds: float, fps: int, height: int) -> None:
    """A 16:9 H.264/AAC mp4 of ``seconds`` at ``fps``: a red disc moving over black, and a stereo 440 Hz tone at 44.1 kHz."""
    width = height * 16 // 9 // 2 * 2
    rate = 44100
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=rate, layout="stereo")
        y, x = np.mgrid[0:height, 0:width]
        for i in range(int(seconds * fps)):
            image = np.zeros((height, width, 3), np.uint8)
            cx = (i * 7) % width
            image[(x - cx) ** 2 + (y - height // 2) ** 2 < (height // 6) ** 2] = (200, 60, 60)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        samples = rate  # one second at a time
        for second in range(int(seconds)):
            t = (np.arange(samples) + second * samples) / rate
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, second * samples
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


SIDES_HEADER = ["official s", "avseg s", "time ratio", "official load peak MiB", "avseg load peak MiB",
                "official compute peak MiB", "avseg compute peak MiB", "compute memory ratio"]  # fmt: skip


def alternating(repeats: int, measure: Callable[[str], dict]) -> dict[str, list[dict]]:
    """``measure(side)`` ``repeats`` times per side, alternately and in alternating order (official-avseg,
    avseg-official, ...), so both sides see the same contention on a shared machine."""
    results: dict[str, list[dict]] = {"official": [], "avseg": []}
    for repeat in range(repeats):
        for side in ("official", "avseg") if repeat % 2 == 0 else ("avseg", "official"):
            results[side].append(measure(side))
    return results


def sides_cells(official: list[dict], ours: list[dict]) -> list[str]:
    """The :data:`SIDES_HEADER` cells of two sides' runs (each ``seconds``, ``load_peak_mib``, ``compute_peak_mib``):
    median and range of the seconds, medians of the peaks, and ratios (avseg / official) of those medians."""
    median = {key: [statistics.median(r[key] for r in runs) for runs in (official, ours)] for key in ("seconds", "load_peak_mib", "compute_peak_mib")}
    seconds, load_peak, compute = median["seconds"], median["load_peak_mib"], median["compute_peak_mib"]
    return [spread([r["seconds"] for r in official]), spread([r["seconds"] for r in ours]), f"{seconds[1] / seconds[0]:.2f}",
            f"{load_peak[0]:.0f}", f"{load_peak[1]:.0f}", f"{compute[0]:.0f}", f"{compute[1]:.0f}", f"{compute[1] / compute[0]:.2f}"]  # fmt: skip
