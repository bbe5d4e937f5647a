"""Files written atomically, readable by everyone the umask allows (model folders are often shared),
and a file's content hash.

A file is written under a temporary name beside its destination and renamed into place, so a
reader never sees half a file. safetensors writes through a private temporary file (mode 0600);
the mode is set to the usual ``0o666 & ~umask`` before the rename.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch only where tensors are written: the pretrained table imports this module, and stays light
    import torch


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def with_umask_mode(path: str | os.PathLike) -> None:
    """Give a file or folder made private (0600 by safetensors, 0700 by ``mkdtemp``) the usual
    ``0o666 & ~umask`` (folders ``0o777 & ~umask``)."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)``, give the file the umask's mode, then rename it to ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    write(temporary)
    with_umask_mode(temporary)
    os.replace(temporary, path)


def write_json(path: Path, value: Any) -> None:
    """Strict JSON (a NaN or infinity is an error before anything is written), atomically."""
    text = json.dumps(value, indent=1, allow_nan=False)
    atomic_write(path, lambda temporary: temporary.write_text(text))


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda temporary: save_file(tensors, str(temporary)))


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
