"""Writing a command's output folder so that a failure leaves nothing behind and overwrites nothing.

The folder is written under a temporary name beside its final place and moved
there only when everything in it is written. A failed run (a full disk, a
decoding error halfway) leaves neither a partial folder nor the parent folders
it had to create, and an earlier result at the final place stays untouched
until the new one is complete; then it is replaced whole, so no stale file of
a longer earlier run survives among the new ones.

An OS error while writing becomes one :class:`~avseg.errors.AvsegError`
naming the path and the OS problem (e.g. "No space left on device").
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Collection, Iterator

from avseg.errors import AvsegError, ConfigError

MAX_NAME_BYTES = 255
"""The longest file name Linux, macOS and Windows file systems all accept (in UTF-8 bytes)."""


def safe_folder_name(name: str, what: str) -> str:
    """``name`` if it is one plain folder name, else a one-line :class:`ConfigError` starting with ``what``.

    A name that comes from a recipe, an option or a file's stem becomes a folder under a parent avseg
    writes to (``runs/NAME``, ``OUT/<stem>``), so it must stay there: no separator (``/``, or ``\\`` which
    is one on Windows), not ``.`` or ``..``, not empty, no NUL or other control character (which also
    keeps the names in one-line messages on one line), and short enough for any file system.
    """
    problem = None
    if not isinstance(name, str):
        problem = "is not text"
    elif not name:
        problem = "is empty"
    elif name in (".", ".."):
        problem = "means the current folder" if name == "." else "means the parent folder"
    elif "/" in name or "\\" in name:
        problem = "holds a path separator"
    elif any(ord(character) < 32 or ord(character) == 127 for character in name):
        problem = "holds a control character"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise ConfigError(f"{what}: {name!r} {problem}; it must be one plain folder name")
    return name


def output_error(exc: OSError, path: str | os.PathLike, staging: Path | None = None) -> AvsegError:
    """A one-line error for a failed write: the file it concerns (under its final name) and the OS problem."""
    target = Path(exc.filename) if exc.filename else Path(path)
    if staging is not None and target.is_relative_to(staging):
        target = Path(path) / target.relative_to(staging)
    problem = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    return AvsegError(f"{target}: cannot write ({problem})")


@contextmanager
def staged_folder(final: str | os.PathLike, replaceable: Collection[str] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``final`` when the block succeeds.

    Args:
        replaceable: the names avseg itself writes in ``final``. An existing
            ``final`` holding only these (an earlier run's result) is replaced;
            one holding anything else is refused, as is an existing file.
    """
    final = Path(final)
    if final.name in ("", ".."):  # "." or "..": the folder needs a name to be staged beside
        final = final.resolve()
    check_writable(final, replaceable)
    created = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except OSError as exc:
        _remove_empty(created)
        failed = Path(exc.filename) if exc.filename else None
        named = failed if failed is not None and not failed.name.startswith(f".{final.name}.") else final.parent
        raise AvsegError(f"{named}: cannot write ({exc.strerror or exc})") from None
    try:
        yield staging
        _move_into_place(staging, final)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        if isinstance(exc, OSError):
            raise output_error(exc, final, staging) from None
        raise


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders this call made (innermost first), as far as they are empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def check_writable(final: Path, replaceable: Collection[str] = ()) -> None:
    """Refuse a ``final`` folder :func:`staged_folder` would refuse, before any work is done."""
    existing = next(p for p in (final.parent, *final.parent.parents) if p.exists())
    if not existing.is_dir():
        raise AvsegError(f"{existing}: is a file, not a folder (cannot write {final} under it)")
    if final.exists() and not final.is_dir():
        raise AvsegError(f"{final}: exists and is not a folder")
    foreign = sorted(p.name for p in final.iterdir() if p.name not in replaceable) if final.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise AvsegError(f"{final}: already holds files avseg did not write ({shown}); choose another output folder")


def _move_into_place(staging: Path, final: Path) -> None:
    if not final.exists():
        staging.rename(final)
        return
    previous = final.with_name(f".{final.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    final.rename(previous)
    try:
        staging.rename(final)
    except OSError:
        previous.rename(final)
        raise
    shutil.rmtree(previous, ignore_errors=True)
