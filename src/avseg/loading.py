"""Loading pretrained weights quietly, with one-line errors.

transformers prints a "Loading weights" progress bar and a multi-line load report (missing and unexpected
keys) on stderr, huggingface_hub its download bars, and torch warnings of its own; before ``avseg: error:``
that is noise, and on success it buries avseg's own lines. Every load avseg wraps runs inside
:func:`quiet_loading` (the registry wraps every system it builds, so all frozen encoders and systems are
covered in one place); :func:`loading` adds the one-line error naming the source.
"""

from __future__ import annotations

import pickle
import re
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
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        # torch's message opens with advice to unpickle anyway (unsafe); what matters is what it refused
        refused = re.search(r"GLOBAL ([\w.]+)", text)
        if refused:
            return f"holds pickled Python objects, not only tensors ({refused[1]}); refused to unpickle them"
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        return f"not a tensor file that loads safely ({detail[1][:160] if detail else 'unreadable pickle'})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0][:200] if lines else ""
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


@contextmanager
def loading(source: Any, what: str, error: type[AvsegError] = AvsegError) -> Iterator[None]:
    """:func:`quiet_loading`, and any failure inside (a missing, corrupt or incompatible file) becomes the
    one-line ``error("SOURCE: cannot load WHAT (reason)")``; avseg's own errors pass unchanged. A hub name
    is read from the hub cache alone when the hub cannot be used (:func:`avseg.hub.download.hub_load`)."""
    from avseg.hub.download import hub_load

    with quiet_loading():
        try:
            with hub_load(source, what):
                yield
        except AvsegError:
            raise
        except Exception as exc:  # whatever the file does to the loader, the message names the file
            raise error(f"{source}: cannot load {what} ({failure_reason(exc)})") from None


def load_pretrained(model_class: Any, name_or_path: Any, what: str, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(name_or_path, **kwargs)`` (a transformers model), refusing weights that
    leave any parameter uninitialised: with the load report silenced, a missing key must be an error, not a
    random tensor. Run it inside :func:`loading` for the one-line message."""
    model, info = model_class.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise AvsegError(f"{name_or_path}: the weights for {what} lack {len(missing)} parameters, e.g. {missing[0]}")
    return model


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
