"""The process-wide glibc allocator setting of the long-running commands.

``avseg segment`` and ``avseg evaluate`` take :func:`reuse_freed_memory`, and ``segment`` gives the
heap's free pages back after each window with :func:`release_freed_memory` (its overlay writer thread
too, about once a second, but only between model calls: :func:`model_call`). ``avseg train`` keeps
:func:`keep_large_buffers_mmapped` (below: its peak, not its speed, is what limits it). The library
API leaves glibc's defaults alone.

Why: a full-size AV2T-SAM forward allocates and frees thousands of large temporary
activations (up to 150 MiB each in Hiera-L's first stage). glibc serves a buffer above its mmap
threshold (128 KiB, raised on free up to 32 MiB) with a fresh ``mmap`` and unmaps it when freed,
so the next block's buffer of the same size is mapped again and every 4 KiB page of it costs a
page fault (and zeroing). Measured on one full-size AV2T-SAM forward (one 1024x1024 frame, 2 CPU
threads): with the threshold pinned at 128 KiB (what ``segment`` used to set), 3.8 million minor
page faults per forward, i.e. 14.5 GiB of freshly mapped and zeroed pages, every forward alike;
with :func:`reuse_freed_memory`, 214 000 in the first forward, 62 000 in the second and none from
the third on. That is the cause of the 40% (12.3 s -> 17.4 s) that ``segment`` paid over
``evaluate``. The price is a higher peak inside a forward, where freed pages wait for reuse:
4691 MiB against 4223 MiB.

Serving every buffer from the heap and never trimming it on free makes the next buffer reuse the
pages the last one freed; trimming between windows and once a second while writing the overlay
(never inside a forward: :func:`model_call`) holds the peak close to one window's.
``benchmarks/segment_memory.py`` (tiny TeSO, 720p at 10 fps, a mask for every frame): 1275 MiB for
one minute, 1235 MiB for ten, and the same peak in each quarter of the ten-minute run (1193-1217 MiB).
Other C libraries have no such switches, and nothing changes for them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from contextlib import contextmanager
from typing import Iterator


def reuse_freed_memory() -> None:
    """Serve large buffers from the heap and keep freed pages for reuse (no trim on free).

    The mmap threshold goes to 1 GiB (glibc takes it, and stops raising it by itself) and the
    trim threshold to its maximum: a freed activation's pages stay resident, and the next one
    takes them without page faults. The heap then keeps its high-water mark until
    :func:`release_freed_memory`.
    """
    _mallopt(M_MMAP_THRESHOLD, 1 << 30)
    _mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def keep_large_buffers_mmapped() -> None:
    """Pin glibc's mmap threshold at its default (128 KiB), for training.

    A training step frees activations in a different order than it made them (backward, and
    recomputation of the frozen encoders' blocks), so heap reuse fragments, and the heap's high-water
    mark grows past what is live: a full-size AV2T-SAM training step peaked at 6.3 GB with glibc's
    defaults (their raised threshold keeps freed buffers on the heap), against 4.6 GB with every
    large buffer mapped and unmapped on its own (measured again: 4644 MiB, 10.7 million page
    faults, 21 s of system time in 172 s of CPU time).
    """
    _mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def release_freed_memory() -> None:
    """Give every free heap page back to the system (``malloc_trim(0)``): RSS returns to what is live.

    Called between units of work (a window of ``avseg segment``), never inside a forward pass, so the
    page faults it causes are paid once per window, not once per block; peak RSS is then the peak
    of one window, whatever the video's length.
    """
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release_freed_memory_between_model_calls() -> None:
    """:func:`release_freed_memory`, unless a :func:`model_call` is running in another thread: then nothing.

    For a thread working beside the model (``avseg segment``'s overlay writer). A trim during a forward
    gives back the pages of the activations it has just freed, so the next block faults them in and
    zeroes them again (what :func:`reuse_freed_memory` avoids); the model loop releases after each call.
    """
    if _model_calls.acquire(blocking=False):
        try:
            release_freed_memory()
        finally:
            _model_calls.release()


@contextmanager
def model_call() -> Iterator[None]:
    """The enclosed model calls keep their freed pages: see :func:`release_freed_memory_between_model_calls`."""
    with _model_calls:
        yield


_model_calls = threading.Lock()
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _mallopt(option: int, value: int) -> None:
    try:
        _libc().mallopt(option, value)
    except (OSError, AttributeError):
        pass
