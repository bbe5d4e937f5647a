"""Process-wide glibc allocator settings of the long-running commands.

Which one a command takes is a trade between peak memory and speed: ``avseg train`` and
``avseg segment`` return large buffers to the system (flat, lower peak memory);
``avseg evaluate`` keeps freed memory for reuse (no page faults on every large buffer).
The library API leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def keep_large_buffers_mmapped() -> None:
    """Pin glibc's mmap threshold at its default (128 KiB).

    Frames and activations are large, short-lived buffers. glibc raises its mmap threshold
    after freeing such a buffer, so later ones come from the heap, whose fragmentation keeps
    freed memory resident: peak RSS crept up with video length in ``avseg segment`` (866 ->
    928 MiB from 1 to 10 minutes of 720p), and an AV2T-SAM training step at full size peaked
    at 6.3 GB instead of 4.6 GB. A fixed threshold returns such buffers to the system when
    they are freed. Other C libraries have no such switch, and nothing changes for them.

    The price is a fresh mapping, and page faults, for every large buffer: a full-size
    AV2T-SAM forward takes about 40% longer with it (17.4 s against 12.3 s on 2 CPU cores).
    """
    _mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def keep_freed_memory() -> None:
    """Serve large buffers from the heap and never trim it, so freed activations are reused
    without page faults. Repeated same-sized forward passes (evaluation) then run at full
    speed: a full-size AV2T-SAM forward takes 9.8 s instead of 11.2 s with glibc's defaults
    on 2 CPU cores; the heap keeps its high-water mark.
    """
    _mallopt(M_MMAP_THRESHOLD, 1 << 30)
    _mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def _mallopt(option: int, value: int) -> None:
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(option, value)
    except (OSError, AttributeError):
        pass
