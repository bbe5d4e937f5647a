"""Files from the Hugging Face hub and from plain URLs, with one-line errors for everything that can go wrong.

Hub files go through ``huggingface_hub`` into its cache, so ``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN`` (or ``hf auth login``) and revisions work as in every other hub
library; where they are is read at each call (:mod:`avseg.hub.locations`).
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.request
from pathlib import Path

from avseg.errors import AvsegError
from avseg.files import file_sha256, with_umask_mode
from avseg.hub.locations import avseg_cache_dir, hub_cache_dir, hub_endpoint, offline


def hub_file(repo: str, filename: str, revision: str | None = None) -> Path:
    """One file of a hub model repo, downloaded into the hub cache if missing."""
    import huggingface_hub

    with _hub_errors(repo, filename, revision):
        path = huggingface_hub.hf_hub_download(
            repo, filename, revision=revision, cache_dir=hub_cache_dir(), local_files_only=offline(), library_name="avseg", endpoint=hub_endpoint()
        )
    return Path(path)


def hub_snapshot(repo: str, patterns: list[str], revision: str | None = None) -> Path:
    """The files of a hub model repo that match ``patterns``, as a folder of the hub cache."""
    import huggingface_hub

    with _hub_errors(repo, " or ".join(patterns), revision):
        path = huggingface_hub.snapshot_download(
            repo, revision=revision, allow_patterns=patterns, cache_dir=hub_cache_dir(), local_files_only=offline(), library_name="avseg", endpoint=hub_endpoint()
        )
    return Path(path)


class _hub_errors:
    """Turns ``huggingface_hub``'s exceptions into one-line :class:`AvsegError` s that say what to do."""

    def __init__(self, repo: str, what: str, revision: str | None):
        self.repo, self.what = repo, what
        self.at = f"@{revision}" if revision else ""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            return False
        from huggingface_hub import errors

        where = f"{self.repo}{self.at}"
        if isinstance(error, errors.LocalEntryNotFoundError):
            fetch = f"hf download {self.repo}" + (f" --revision {self.at[1:]}" if self.at else "")
            why = "downloads are off (HF_HUB_OFFLINE)" if offline() else "the hub could not be reached"
            raise AvsegError(
                f"{where}: {self.what} is not in the hub cache {hub_cache_dir()} and {why}; "
                f"fetch it once online (unset HF_HUB_OFFLINE, or run `{fetch}`)"
            ) from None
        if isinstance(error, errors.GatedRepoError):
            raise AvsegError(
                f"{where}: a gated repo; accept its licence on https://huggingface.co/{self.repo}, then log in "
                "(`hf auth login`, or set HF_TOKEN)"
            ) from None
        if isinstance(error, errors.RepositoryNotFoundError):
            raise AvsegError(f"{where}: no such hub repo (or a private one: log in with `hf auth login` or set HF_TOKEN)") from None
        if isinstance(error, errors.RevisionNotFoundError):
            raise AvsegError(f"{where}: no such revision in the hub repo") from None
        if isinstance(error, errors.EntryNotFoundError):
            raise AvsegError(f"{where}: the hub repo has no {self.what}") from None
        if isinstance(error, (errors.HfHubHTTPError, OSError, ValueError)):
            first = str(error).splitlines()[0][:200] if str(error) else ""
            raise AvsegError(f"{where}: downloading {self.what} failed ({type(error).__name__}: {first})") from None
        return False


def hub_blob_sha256(path: Path) -> str:
    """The SHA-256 of a file, free for hub files stored by content (the cache names an LFS blob by it)."""
    blob = Path(os.path.realpath(path)).name
    if re.fullmatch(r"[0-9a-f]{64}", blob):
        return blob
    return file_sha256(path)


def url_file(url: str, folder: Path, sha256_prefix: str) -> Path:
    """The file at ``url``, downloaded once into ``folder`` (atomically) and checked against the first
    hex digits of its SHA-256, as torch hub names its files (``vggish-10086976.pth``)."""
    path = folder / url.rsplit("/", 1)[-1]
    if path.is_file() and file_sha256(path).startswith(sha256_prefix):
        return path
    if offline():
        raise AvsegError(f"{path}: missing (downloads are off: HF_HUB_OFFLINE); download {url} there once")
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a fixed https URL)
            for chunk in iter(lambda: response.read(1 << 20), b""):
                file.write(chunk)
        if not file_sha256(Path(temporary)).startswith(sha256_prefix):
            raise AvsegError(f"{url}: the download's SHA-256 does not start with {sha256_prefix}; not the published file")
        with_umask_mode(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise AvsegError(f"{url}: download failed ({type(error).__name__}: {error}); download it to {path} yourself") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
"""The torchvggish port of the official TensorFlow VGGish weights (a GitHub release asset); the
``10086976`` in its name is the start of its SHA-256."""


def vggish_weights() -> Path:
    """``vggish-10086976.pth``, downloaded once into ``<avseg cache>/encoders`` (for ``encoders.audio_weights`` unset)."""
    return url_file(VGGISH_URL, avseg_cache_dir() / "encoders", "10086976")
