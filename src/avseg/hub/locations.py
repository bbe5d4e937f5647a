"""Where the hub cache and avseg's own cache are, and whether downloads are off: read from the
environment at each call (``huggingface_hub`` reads it once, at import), so a program or test that sets
``HF_HOME``, ``AVSEG_CACHE`` or ``HF_HUB_OFFLINE`` later is still honoured.

The lowest module of :mod:`avseg.hub`: it imports nothing of avseg but the errors, so the downloader, the
resolver and the cue cache can all read these places without importing each other.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from avseg.errors import AvsegError

_TRUE = {"1", "on", "yes", "true"}
DEFAULT_ENDPOINT = "https://huggingface.co"


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface").expanduser()


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return hf_home() / "hub"


def avseg_cache_dir() -> Path:
    """``$AVSEG_CACHE``, else ``$HF_HOME/avseg`` (beside the hub cache it is derived from)."""
    if os.environ.get("AVSEG_CACHE"):
        return Path(os.environ["AVSEG_CACHE"]).expanduser()
    return hf_home() / "avseg"


def cache_folder(folder: Path) -> Path:
    """``folder`` of avseg's cache, made if missing; one line when it cannot be (a read-only ``HF_HOME``,
    an ``AVSEG_CACHE`` that is a file), naming the variable that chose the place."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as error:
        chosen_by = f"AVSEG_CACHE={os.environ['AVSEG_CACHE']}" if os.environ.get("AVSEG_CACHE") else f"HF_HOME={hf_home()}"
        raise AvsegError(
            f"{folder}: cannot make or write avseg's cache folder ({error.strerror or error}; it follows {chosen_by}); "
            "set AVSEG_CACHE to a writable folder"
        ) from None
    return folder


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
