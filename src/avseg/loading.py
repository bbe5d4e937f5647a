"""Loading pretrained weights quietly, with one-line errors.

transformers prints a "Loading weights" progress bar and a multi-line load report (missing and unexpected
keys) on stderr, huggingface_hub its download bars, and torch warnings of its own; before ``avseg: error:``
that is noise, and on success it buries avseg's own lines. Every load avseg wraps runs inside
:func:`quiet_loading` (the registry wraps every system it builds, so all frozen encoders and systems are
covered in one place); :func:`loading` adds the one-line error naming the source.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from avseg.errors import AvsegError


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' logs (below errors) and progress bars, huggingface_hub's progress bars and Python
    warnings off for the duration; the previous settings come back afterwards."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_bars = transformers_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if transformers_bars:
            transformers_logging.enable_progress_bar()
        if not hub_bars_off:
            hub_utils.enable_progress_bars()


def failure_reason(error: BaseException) -> str:
    """One line saying why a load failed: the exception's type and its most telling line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, pickle.UnpicklingError) and lines and lines[0].startswith("Weights only load failed"):
        # torch's first line is advice to unpickle anyway (unsafe); the line after names what was refused
        detail = next((line for line in lines[1:] if not line.startswith("Check the documentation")), "")
        return f"holds pickled Python objects, not only tensors; refused to unpickle them ({detail[:160]})"
    reason = lines[0][:200] if lines else ""
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


@contextmanager
def loading(source: Any, what: str, error: type[AvsegError] = AvsegError) -> Iterator[None]:
    """:func:`quiet_loading`, and any failure inside (a missing, corrupt or incompatible file) becomes the
    one-line ``error("SOURCE: cannot load WHAT (reason)")``; avseg's own errors pass unchanged."""
    with quiet_loading():
        try:
            yield
        except AvsegError:
            raise
        except Exception as exc:  # whatever the file does to the loader, the message names the file
            raise error(f"{source}: cannot load {what} ({failure_reason(exc)})") from None


def read_torch_weights(path: str | Path, what: str) -> Any:
    """An official ``.pth``/``.bin`` file, read with ``torch.load(weights_only=True)`` (tensors and plain
    containers only: a pickle payload is refused, never run) and a one-line error naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise AvsegError(f"{path}: {what} file not found")
    with quiet_loading():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, truncated, or a pickle payload refused by weights_only
            raise AvsegError(f"{path}: cannot read {what}: {failure_reason(exc)}") from None
