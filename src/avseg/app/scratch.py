"""The ``avseg app`` process's own temporary folder: everything temporary goes there, and goes with it.

Decision: Gradio fixes its cache folder (``$TMPDIR/gradio``) when it is imported, and torch makes its own
(``$TMPDIR/torchinductor_<user>``) the first time it needs it; neither removes them. So the command makes
one folder before importing either, points the process's temporary folder there (``tempfile.tempdir``,
and ``TMPDIR`` for anything it starts), and removes it when the app stops. Ctrl-C and SIGTERM both stop
the app this way, at any moment, so a normal stop leaves nothing in the system's temporary folder. This
module imports neither Gradio nor torch.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def process_temporary_folder(prefix: str = "avseg-app-") -> Iterator[Path]:
    """A fresh folder that is this process's temporary folder inside the block, removed after it; SIGTERM
    inside the block stops it as Ctrl-C does (:class:`KeyboardInterrupt`)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    previous_tempdir, previous_env = tempfile.tempdir, os.environ.get("TMPDIR")
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    tempfile.tempdir = os.environ["TMPDIR"] = folder
    try:
        yield Path(folder)
    finally:
        tempfile.tempdir = previous_tempdir
        if previous_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous_env
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_handler)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
