"""Writing a command's output folder so that a failure leaves nothing behind and overwrites nothing.

The folder is written under a temporary name beside its final place and moved
there only when everything in it is written. A failed run (a full disk, a
decoding error halfway) leaves neither a partial folder nor the parent folders
it had to create, and an earlier result at the final place stays untouched
until the new one is complete; then it is replaced whole, so no stale file of
a longer earlier run survives among the new ones.

What avseg may replace or remove is described by a :data:`Layout`: the names
(glob patterns) a command writes, and for each folder among them what it holds.
An existing folder is replaced only if everything in it, at every depth, is
named in that layout; anything else in it is refused in one line before any
work, and nothing is deleted.

An OS error while writing becomes one :class:`~avseg.errors.AvsegError`
naming the path and the OS problem (e.g. "No space left on device").
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Collection, Iterator, Mapping, Optional

from avseg.errors import AvsegError, ConfigError, OutputError

Layout = Mapping[str, Optional["Layout"]]
"""What a command writes in a folder: glob patterns of names, each mapped to ``None`` (a file) or to the
layout of a folder of that name. ``{"masks": {"*.png": None}, "summary.json": None}``."""

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


def output_error(exc: OSError, path: str | os.PathLike, staging: Path | None = None) -> OutputError:
    """A one-line error for a failed write: the file it concerns (under its final name) and the OS problem."""
    target = Path(exc.filename) if exc.filename else Path(path)
    if staging is not None and target.is_relative_to(staging):
        target = Path(path) / target.relative_to(staging)
    problem = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    return OutputError(f"{target}: cannot write ({problem})")


@contextmanager
def staged_folder(final: str | os.PathLike, replaceable: Layout = {}) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``final`` when the block succeeds.

    Args:
        replaceable: what avseg itself writes in ``final``. An existing
            ``final`` holding only that (an earlier run's result) is replaced;
            one holding anything else is refused, as is an existing file.
    """
    final = Path(final)
    if final.name in ("", ".."):  # "." or "..": the folder needs a name to be staged beside
        final = final.resolve()
    check_writable(final, replaceable)
    created = missing_folders(final.parent)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except OSError as exc:
        remove_empty(created)
        failed = Path(exc.filename) if exc.filename else None
        named = failed if failed is not None and not failed.name.startswith(f".{final.name}.") else final.parent
        raise OutputError(f"{named}: cannot write ({exc.strerror or exc})") from None
    try:
        yield staging
        _move_into_place(staging, final)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty(created)
        if isinstance(exc, OSError):
            raise output_error(exc, final, staging) from None
        raise


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.(partial|previous)")
"""What :func:`staged_folder` names its folders beside ``NAME``: mkdtemp's 8 characters between the two."""


def remove_leftovers(parent: str | os.PathLike, names: Collection[str], layout: Layout) -> list[Path]:
    """Remove what killed :func:`staged_folder` calls left in ``parent`` for the folders ``names``, and return it:
    their staging folders (``.NAME.XXXXXXXX.partial``) and earlier results set aside (``.NAME.XXXXXXXX.previous``),
    each only if it holds nothing but what ``layout`` names. One listing of ``parent`` whatever the number of
    names. Call it only for names that no other process is writing (a corpus rank, for its own videos): a
    running :func:`staged_folder`'s folders look the same."""
    parent, names = Path(parent), set(names)
    if not parent.is_dir():
        return []
    removed = []
    with os.scandir(parent) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            match = _LEFTOVER.fullmatch(entry.name)
            if match and match["name"] in names and entry.is_dir(follow_symlinks=False) and not foreign_entries(Path(entry.path), layout):
                shutil.rmtree(entry.path)
                removed.append(Path(entry.path))
    return removed


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, innermost first: what making it will create."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_empty(created: list[Path]) -> None:
    """Remove the folders a call made (innermost first, see :func:`missing_folders`), as far as they are empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def check_writable(final: Path, replaceable: Layout = {}) -> None:
    """Refuse a ``final`` folder :func:`staged_folder` would refuse, before any work is done."""
    check_parent_folder(final)
    if final.is_symlink():  # replacing it would replace the link, not the folder it points to
        raise AvsegError(f"{final}: is a link; choose the folder it points to, or another output folder")
    if final.exists() and not final.is_dir():
        raise AvsegError(f"{final}: exists and is not a folder")
    foreign = foreign_entries(final, replaceable) if final.is_dir() else []
    if foreign:
        raise AvsegError(f"{final}: already holds files avseg did not write ({shown(foreign)}); choose another output folder")


def check_parent_folder(final: Path) -> None:
    """Refuse a ``final`` that cannot be made because a file stands where one of its parent folders would be."""
    existing = next(p for p in (final.parent, *final.parent.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{existing}: is a file, not a folder (cannot write {final} under it)")


def foreign_entries(folder: Path, layout: Layout) -> list[str]:
    """What ``folder`` holds that ``layout`` does not name, as paths relative to it, at every depth.

    A link is never followed: it is foreign wherever the layout expects a folder."""
    foreign = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            expected = _expected(entry.name, layout)
            is_folder = entry.is_dir(follow_symlinks=False)
            if expected is _FOREIGN or is_folder != (expected is not None):
                foreign.append(entry.name)
            elif is_folder:
                foreign += [f"{entry.name}/{inner}" for inner in foreign_entries(Path(entry.path), expected)]
    return foreign


def remove_written(folder: Path, layout: Layout) -> None:
    """Delete what ``layout`` names in ``folder``, at every depth, with the folders this leaves empty
    (``folder`` itself stays); anything else stays where it is."""
    with os.scandir(folder) as entries:
        for entry in list(entries):
            expected = _expected(entry.name, layout)
            is_folder = entry.is_dir(follow_symlinks=False)
            if expected is None and not is_folder:
                os.unlink(entry.path)
            elif expected is not None and expected is not _FOREIGN and is_folder:
                remove_written(Path(entry.path), expected)
                remove_empty([Path(entry.path)])


_FOREIGN = object()


def _expected(name: str, layout: Layout):
    """What ``layout`` expects under ``name``: None (a file), a folder's layout, or ``_FOREIGN``."""
    return next((inner for pattern, inner in layout.items() if fnmatchcase(name, pattern)), _FOREIGN)


def shown(names: list[str], count: int = 3) -> str:
    """The first ``count`` of ``names`` for a one-line message."""
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def _move_into_place(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an earlier ``final`` goes aside under a fresh name (so no folder
    that happens to be there is overwritten) and is removed once the new one is in place."""
    if not final.exists():
        staging.rename(final)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".previous", dir=final.parent))
    os.replace(final, previous)  # onto the empty folder just made
    try:
        staging.rename(final)
    except OSError:
        previous.rename(final)
        raise
    shutil.rmtree(previous, ignore_errors=True)
