"""What a measured process does around its work, for the benchmarks that compare avseg with an official
implementation, each side in its own process. Only torch and the standard library: the official side runs
it from its own environment (the worker puts ``benchmarks/`` on ``sys.path``).

Peak memory is the peak resident set (``VmHWM``): the **load peak** while importing and loading the
weights, then the **compute peak** of what follows, after resetting ``VmHWM`` to the current resident set
(``5`` written to ``/proc/self/clear_refs``), so it counts the loaded model plus the work.
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


def peak_mib() -> float:
    """``VmHWM``: the peak resident set since the start, or since the last :func:`reset_peak`."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read())[1]) / 1024


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
    return load_peak


def warm_and_time(step: Callable[[], Any], steps: int) -> tuple[Any, float]:
    """One untimed warm-up ``step()`` (its result is returned), then the median seconds of ``steps`` timed ones."""
    first = step()
    durations = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        durations.append(time.perf_counter() - started)
    return first, statistics.median(durations)


def report(seconds: float, load_peak: float, **extra: Any) -> dict[str, Any]:
    return {"seconds": seconds, "load_peak_mib": load_peak, "compute_peak_mib": peak_mib(), "torch": torch.__version__, **extra}
