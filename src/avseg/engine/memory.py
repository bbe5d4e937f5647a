"""Process-wide memory settings of the long-running commands (train, segment)."""

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
    The library API and ``avseg evaluate`` leave glibc's default alone.
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
