"""Reading the files a dataset is made of, with one-line errors that name the file.

Mask decoding rules (the official AVSBench conventions, made explicit):

* binary masks: a pixel is foreground when its stored value is non-zero.
  For palette (``P``) images that is the palette *index* (MS3's masks store
  object indices), for greyscale and RGB it is the intensity, and for
  16/32-bit greyscale the integer value. Saved 0/255 masks, 0/1 masks and
  palette masks all decode to the same thing.
* colour masks (AVSS ``labels_rgb``): each pixel's RGB is looked up in the
  class palette; colours not in the palette count as background, as in the
  official AVSS loader.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from avseg.errors import DatasetError

_MASK_MODES = {"1", "L", "P", "I", "I;16", "RGB", "RGBA", "LA"}


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(path, "missing file")
    return path


def _open_image(path: Path) -> Image.Image:
    require_file(path)
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(path, f"unreadable image ({' '.join(str(exc).split())})") from None
    return image


def read_rgb(path: Path) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB at the stored size."""
    return np.asarray(_open_image(path).convert("RGB"), dtype=np.uint8)


def resize(image: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """A uint8 image or label map resized to ``(width, height)`` with a PIL ``resample`` filter."""
    if image.shape[1::-1] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size), resample))


def read_binary_mask(path: Path) -> np.ndarray:
    """uint8 ``(H, W)`` 0/1 mask (non-zero is foreground) at the stored size."""
    image = _open_image(path)
    if image.mode not in _MASK_MODES:
        raise DatasetError(path, f"unexpected mask image mode {image.mode!r}")
    values = np.asarray(image)
    if image.mode in ("RGBA", "LA"):
        values = values[..., :-1]
    if values.ndim == 3:
        values = values.max(axis=-1)
    return (values > 0).astype(np.uint8)


def read_color_mask(path: Path, palette: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` class indices from an RGB colour mask and a ``(C, 3)`` palette.

    Unknown colours map to 0 (background).
    """
    image = _open_image(path)
    if image.mode not in ("RGB", "RGBA", "P"):
        raise DatasetError(path, f"unexpected colour mask image mode {image.mode!r} (expected RGB)")
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint32)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    palette = np.asarray(palette, dtype=np.uint32)
    palette_keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    order = np.argsort(palette_keys, kind="stable")
    sorted_keys = palette_keys[order]
    position = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    found = sorted_keys[position] == keys
    return np.where(found, order[position], 0).astype(np.uint8)


def read_csv(
    path: Path, columns: Sequence[str], delimiter: str = ",", positions: dict[str, int] | None = None
) -> list[dict[str, str]]:
    """Rows of a csv with a header, checking that every required column is present.

    ``positions`` names columns by their position instead (``{"name": 0}``), as
    some official loaders read them, whatever their header says.
    """
    require_file(path)
    try:
        # utf-8-sig: a byte-order mark (as Excel writes) would otherwise become part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            header = [name.strip() for name in (reader.fieldnames or [])]
            for name, index in (positions or {}).items():
                if index >= len(header):
                    raise DatasetError(path, f"missing column {index + 1} ({name}); the header has {len(header)} columns")
                header[index] = name
            reader.fieldnames = header
            missing = [name for name in columns if name not in header]
            if missing:
                raise DatasetError(path, f"missing column(s) {', '.join(missing)} (has: {', '.join(header) or 'nothing'})")
            rows = []
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                empty = [name for name in columns if not row.get(name)]
                if empty:
                    raise DatasetError(path, f"line {line}: empty value for column(s) {', '.join(empty)}")
                rows.append(row)
    except UnicodeDecodeError:
        raise DatasetError(path, "not a UTF-8 text csv") from None
    except csv.Error as exc:
        raise DatasetError(path, f"malformed csv ({exc})") from None
    return rows
