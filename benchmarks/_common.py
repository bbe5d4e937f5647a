"""Helpers shared by the benchmark scripts: machine line, timing statistics, table printing."""

from __future__ import annotations

import os
import platform
import statistics

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
