"""Helpers shared by the benchmark scripts: machine line, timing statistics, table printing, a synthetic video."""

from __future__ import annotations

import os
import platform
import statistics
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
