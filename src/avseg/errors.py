"""Errors that carry a one-line, user-facing message.

Every failure caused by the user's input (a file, a dataset, a config) raises a
subclass of :class:`AvsegError` whose message names the offending path and the
problem. The CLI prints that message on one line and exits non-zero; it never
shows a traceback for these.
"""

from __future__ import annotations

from os import PathLike


class AvsegError(Exception):
    """Base class for errors the user can act on."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class MediaError(AvsegError):
    """A video or audio file cannot be decoded or does not have what was asked for."""

    def __init__(self, path: str | PathLike, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


class DatasetError(AvsegError):
    """A dataset root is missing files, has malformed metadata or unreadable annotations."""

    def __init__(self, path: str | PathLike, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


class ConfigError(AvsegError):
    """A configuration value or command-line option is invalid."""


class OutputError(AvsegError):
    """What a command writes cannot be written (a full disk, a file where a folder must go): the place to write
    is at fault, not an input, so a corpus stops instead of recording every following video as failed."""
