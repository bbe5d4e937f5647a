"""COCO run-length encoding of binary masks, the format pycocotools reads (``mask.decode``).

A mask is read in column-major (Fortran) order; ``counts`` alternate runs of 0s
and 1s, starting with 0s (a mask whose first pixel is set starts with a run of
length 0). The compressed string is pycocotools' ``rleToString``: each count,
from the third on as the difference to the count two before, in 5-bit groups
(least significant first), ``0x20`` marking that another group follows, each
group plus 48 as one ASCII character.
"""

from __future__ import annotations

import numpy as np


def mask_counts(mask: np.ndarray) -> list[int]:
    """The uncompressed run lengths of a 2-D mask (column-major, starting with 0s)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return [0, *counts] if flat[0] else counts


def counts_to_string(counts: list[int]) -> str:
    """pycocotools' compressed string of ``counts``."""
    characters = []
    for position, count in enumerate(counts):
        value = count - counts[position - 2] if position > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: a negative difference ends at -1
            more = value != -1 if group & 0x10 else value != 0
            characters.append(chr(group + (0x20 if more else 0) + 48))
    return "".join(characters)


def string_to_counts(text: str) -> list[int]:
    """The inverse of :func:`counts_to_string` (pycocotools' ``rleFrString``)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode(mask: np.ndarray) -> dict:
    """``{"size": [H, W], "counts": str}``, as pycocotools' ``mask.encode`` (with counts decoded to str)."""
    height, width = np.shape(mask)
    return {"size": [int(height), int(width)], "counts": counts_to_string(mask_counts(mask))}


def decode(rle: dict) -> np.ndarray:
    """The boolean ``(H, W)`` mask of an RLE dict with a compressed string or a list of counts."""
    height, width = rle["size"]
    counts = rle["counts"]
    counts = string_to_counts(counts.decode() if isinstance(counts, bytes) else counts) if isinstance(counts, (str, bytes)) else list(counts)
    if sum(counts) != height * width:
        raise ValueError(f"RLE counts cover {sum(counts)} pixels, not {height}x{width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")
