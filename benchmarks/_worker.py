"""What a measured process does around its work, for the benchmarks that compare avseg with an official
implementation, each side in its own process. Only torch and the standard library: the official side runs
it from its own environment (the worker puts ``benchmarks/`` on ``sys.path``).

Peak memory is the peak resident set (``VmHWM``): the **load peak** while importing and loading the
weights, then the **compute peak** of what follows, after resetting ``VmHWM`` to the current resident set
(``5`` written to ``/proc/self/clear_refs``), so it counts the loaded model plus the work. The resident set at
that reset is reported too (``compute_start_mib``): the compute peak less it is what the work itself added, which
sets aside what the two sides' imports and loaded weights hold.
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

_measured: dict[str, float] = {}
"""What :func:`start_compute` and :func:`warm_and_time` saw, for :func:`report`."""


def peak_mib() -> float:
    """``VmHWM``: the peak resident set since the start, or since the last :func:`reset_peak`."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read())[1]) / 1024


def resident_mib() -> float:
    with open("/proc/self/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read())[1]) / 1024


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def set_allocator(allocator: str, task: str, memory_py: str) -> ModuleType | None:
    """``tuned``: avseg's glibc setting for the command doing ``task`` (``infer``: ``reuse_freed_memory``, as
    ``avseg segment`` and ``avseg evaluate``; ``train``: ``keep_large_buffers_mmapped``, as ``avseg train``), from
    ``avseg/engine/memory.py`` itself so that both sides get the very same setting; ``untuned``: glibc's defaults."""
    if allocator != "tuned":
        return None
    spec = importlib.util.spec_from_file_location("avseg_memory", memory_py)
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    (memory.reuse_freed_memory if task == "infer" else memory.keep_large_buffers_mmapped)()
    return memory


def start_compute(memory: ModuleType | None) -> float:
    """The load peak; then what loading freed goes back (the tuned heap keeps it otherwise) and ``VmHWM`` restarts."""
    load_peak = peak_mib()
    if memory is not None:
        memory.release_freed_memory()
    reset_peak()
    _measured["compute_start_mib"] = resident_mib()
    return load_peak


def warm_and_time(step: Callable[[], Any], steps: int) -> tuple[Any, float, float]:
    """One untimed warm-up ``step()`` (its result is returned), then the median wall-clock seconds of ``steps``
    timed ones, and their median CPU seconds (every thread of the process: on a shared machine the wall clock
    also counts waiting for a core, the CPU time less so). The fastest step's seconds go to :func:`report` too:
    on a machine shared with others' jobs, the least disturbed step is the closest to the step's own cost."""
    first = step()
    wall, cpu = [], []
    for _ in range(steps):
        started, started_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    _measured["fastest_seconds"] = min(wall)
    return first, statistics.median(wall), statistics.median(cpu)


def report(seconds: float, cpu_seconds: float, load_peak: float, **extra: Any) -> dict[str, Any]:
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "load_peak_mib": load_peak, "compute_peak_mib": peak_mib(), **_measured, "torch": torch.__version__, **extra}
