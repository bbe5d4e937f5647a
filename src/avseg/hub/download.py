"""Files from the Hugging Face hub and from plain URLs, with one-line errors for everything that can go wrong.

Hub files go through ``huggingface_hub`` into its cache, so ``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN`` (or ``hf auth login``) and revisions work as in every other hub
library; where they are is read at each call (:mod:`avseg.hub.locations`).

**No network, downloads allowed.** Asked for a file it does not have, ``huggingface_hub`` retries an
unreachable hub for about 25 s, printing a line per try, before it gives up. So before anything that may
download, avseg asks the endpoint once (``HEAD``, :data:`PROBE_SECONDS`, any HTTP answer counts, through
``huggingface_hub``'s own session so proxies and certificates are the same), and when it does not
answer reads the hub cache only, as ``HF_HUB_OFFLINE=1`` would: a cached file is used, a missing one is
one line naming ``HF_HUB_OFFLINE`` and ``hf download``. The answer is reused for
:data:`PROBE_REUSE_SECONDS` (loading a model and its encoders asks once, and a network that comes
back is noticed). With ``HF_HUB_OFFLINE=1`` nothing is asked. The same rule covers what transformers
fetches by hub name (:func:`hub_load`, which :func:`avseg.loading.loading` applies to every load).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from avseg.errors import AvsegError
from avseg.files import file_sha256, with_umask_mode
from avseg.hub.locations import (
    avseg_cache_dir,
    cache_folder,
    hub_cache_dir,
    hub_endpoint,
    offline,
)

PROBE_SECONDS = 3.0
"""How long the endpoint has to answer before avseg reads only the hub cache (connect and read, each)."""
PROBE_REUSE_SECONDS = 60.0
_probes: dict[str, tuple[float, bool]] = {}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def is_hub_name(source: Any) -> bool:
    """Whether transformers' ``from_pretrained`` reads ``source`` from the hub: a repo name that is not a path here."""
    return bool(_HUB_NAME.match(str(source))) and not Path(str(source)).exists()


def hub_reachable() -> bool:
    """Whether the hub endpoint (``HF_ENDPOINT``) gave any HTTP answer within :data:`PROBE_SECONDS`."""
    endpoint, now = hub_endpoint(), time.monotonic()
    asked_at, answered = _probes.get(endpoint, (-PROBE_REUSE_SECONDS, False))
    if now - asked_at >= PROBE_REUSE_SECONDS:
        answered = _answers(endpoint)
        _probes[endpoint] = (now, answered)
    return answered


def _answers(endpoint: str) -> bool:
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=PROBE_SECONDS)
    except Exception:  # noqa: BLE001 (refused, timed out, no route, no proxy, offline mode: no answer is no answer)
        return False
    return True


def cache_only_reason() -> str | None:
    """Why only the hub cache can be read now (downloads off, or the hub not answering); None: downloads work."""
    if offline():
        return "downloads are off (HF_HUB_OFFLINE=1)"
    if not hub_reachable():
        return f"the hub ({hub_endpoint()}) could not be reached (no answer within {PROBE_SECONDS:g} s)"
    return None


def not_in_cache(repo: str, what: str, revision: str | None, why: str | None, holds: list[str] | None = None) -> AvsegError:
    """The one line for a hub file that is needed, missing from the cache, and cannot be downloaded now
    (``holds``: the files of the repo the cache does have)."""
    fetch = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
    at = f"@{revision}" if revision else ""
    if why is None or why.startswith("downloads are off"):
        advice = f"fetch it once online: unset HF_HUB_OFFLINE, or run `{fetch}`"
    else:
        advice = f"fetch it once where the hub answers (`{fetch}`, into this HF_HOME), or set HF_HUB_OFFLINE=1 to read the cache without asking the hub"
    cached = f" (it holds {describe_files(holds)} of this repo)" if holds else ""
    return AvsegError(f"{repo}{at}: {what} is not in the hub cache {hub_cache_dir()}{cached} and {why or 'the hub could not be reached'}; {advice}")


def describe_files(names: list[str], shown: int = 8) -> str:
    """``3 files: a, b, c`` (the first ``shown`` names, then how many more), or ``no files``."""
    if not names:
        return "no files"
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} file{'s' if len(names) > 1 else ''}: {', '.join(names[:shown])}{more}"


def repo_file_names(repo: str, revision: str | None = None) -> tuple[list[str], str | None]:
    """The files of a hub model repo at ``revision``, from the hub's listing, and None; while only the
    cache can be read, the files of that revision in the hub cache (possibly none), and why
    (:func:`cache_only_reason`). ``HF_TOKEN`` or a login and ``HF_ENDPOINT`` apply as to downloads."""
    why = cache_only_reason()
    if why is not None:
        return cached_file_names(repo, revision), why
    from huggingface_hub import HfApi

    with _hub_errors(repo, "the list of its files", revision):
        return sorted(HfApi(endpoint=hub_endpoint(), library_name="avseg").list_repo_files(repo, revision=revision)), None


def cached_file_names(repo: str, revision: str | None = None) -> list[str]:
    """The files of ``repo`` at ``revision`` (a branch or tag: its ``refs`` entry; or a commit) that the hub
    cache holds, read from huggingface_hub's documented layout (``models--ORG--NAME/snapshots/COMMIT/``)."""
    storage = hub_cache_dir() / ("models--" + repo.replace("/", "--"))
    ref = storage / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = storage / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        return []
    return sorted(path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file())


def hub_file(repo: str, filename: str, revision: str | None = None) -> Path:
    """One file of a hub model repo, downloaded into the hub cache if missing."""
    import huggingface_hub

    why = cache_only_reason()
    with _cache_only(why), _hub_errors(repo, filename, revision, why):
        path = huggingface_hub.hf_hub_download(
            repo, filename, revision=revision, cache_dir=hub_cache_dir(), local_files_only=why is not None, library_name="avseg", endpoint=hub_endpoint()
        )
    return Path(path)


def hub_snapshot(repo: str, patterns: list[str], revision: str | None = None, what: str | None = None) -> Path:
    """The files of a hub model repo that match ``patterns``, as a folder of the hub cache (``what``: how
    messages call them, by default the patterns)."""
    import huggingface_hub

    why = cache_only_reason()
    with _cache_only(why), _hub_errors(repo, what or " or ".join(patterns), revision, why):
        path = huggingface_hub.snapshot_download(
            repo, revision=revision, allow_patterns=patterns, cache_dir=hub_cache_dir(), local_files_only=why is not None, library_name="avseg", endpoint=hub_endpoint()
        )
    return Path(path)


@contextmanager
def hub_load(source: Any, what: str) -> Iterator[None]:
    """Around a load that may fetch ``source`` from the hub by name (transformers' ``from_pretrained``):
    while only the cache can be read, ``huggingface_hub`` reads only the cache, and a file missing from
    it is :func:`not_in_cache`'s line. A folder passes untouched."""
    name = str(source)
    if not is_hub_name(name):
        yield
        return
    from huggingface_hub.errors import LocalEntryNotFoundError

    why = cache_only_reason()
    try:
        with _cache_only(why):
            yield
    except Exception as error:
        if _caused_by(error, LocalEntryNotFoundError):
            raise not_in_cache(name, what, None, why) from None
        raise


@contextmanager
def _cache_only(why: str | None) -> Iterator[None]:
    """``huggingface_hub`` in offline mode for the duration when ``why`` (and as it was after): besides
    ``local_files_only``, it asks the hub for more than files (a registry for its user-agent header, with
    a timeout of its own), and transformers passes no ``local_files_only`` of ours."""
    from huggingface_hub import constants

    was_offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = was_offline or why is not None
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was_offline


def _caused_by(error: BaseException | None, kind: type[BaseException]) -> bool:
    while error is not None:
        if isinstance(error, kind):
            return True
        error = error.__cause__ or error.__context__
    return False


class _hub_errors:
    """Turns ``huggingface_hub``'s exceptions into one-line :class:`AvsegError` s that say what to do
    (``why``: :func:`cache_only_reason` when the call read only the cache)."""

    def __init__(self, repo: str, what: str, revision: str | None, why: str | None = None):
        self.repo, self.what, self.revision, self.why = repo, what, revision, why

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            return False
        from huggingface_hub import errors

        where = f"{self.repo}@{self.revision}" if self.revision else self.repo
        if isinstance(error, errors.LocalEntryNotFoundError):
            raise not_in_cache(self.repo, self.what, self.revision, self.why) from None
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
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise AvsegError(
                f"{where}: cannot write the hub cache {hub_cache_dir()} ({error.strerror or error}); "
                "point HF_HOME (or HF_HUB_CACHE) at a writable folder, or set HF_HUB_OFFLINE=1 to read it only"
            ) from None
        if isinstance(error, Exception):  # HTTP, connection (httpx's own classes), file system, validation
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
    return url_file(VGGISH_URL, cache_folder(avseg_cache_dir() / "encoders"), "10086976")
