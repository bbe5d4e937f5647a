"""A model name, a hub repo id or a folder -> the local model folder that ``avseg.load_model`` reads.

- A folder that exists is itself.
- A pretrained name (:mod:`avseg.hub.pretrained`) downloads its official files through the hub cache
  and converts them, on first use, into ``<avseg cache>/models/<name>-<key>``; ``key`` hashes the
  source files' SHA-256 and the conversion settings, so new weights (another revision) give a new
  folder and the same weights are converted once. The avseg cache is ``$AVSEG_CACHE``, else
  ``$HF_HOME/avseg`` (beside the hub cache it is derived from).
- Zero-shot names (``zeroshot-sam3``) are returned unchanged: their system loads its own hub models.
- ``org/name`` or ``org/name@revision`` is a hub repo holding an avseg model folder (``avseg push``).

A conversion is written into a temporary folder beside its final place and renamed into place with
a marker (``avseg-cache.json``: the key and every file's size) written last, so an interrupted
conversion leaves nothing that looks finished. An entry whose marker is missing or unreadable, or
whose files are missing, resized, or whose safetensors header does not parse, is converted again.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from avseg.errors import AvsegError
from avseg.files import file_sha256, with_umask_mode, write_json
from avseg.hub.download import describe_files, hub_blob_sha256, hub_file, hub_snapshot, not_in_cache, repo_file_names
from avseg.hub.locations import avseg_cache_dir, cache_folder
from avseg.hub.pretrained import PretrainedModel, find_pretrained, pretrained_models

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Part of every conversion key: raise it when a conversion's output changes, so old entries are redone."""
MARKER = "avseg-cache.json"
MODEL_FILES = ["config.json", "model.safetensors", "sam2_memory.safetensors", "system.json", "recipe.json", "README.md", "eval-*/report.json"]
"""What a hub repo of an avseg model folder holds (as ``avseg push`` uploads it)."""
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def resolve_model(model: str | Path) -> Path | str:
    """The local model folder for ``model`` (a folder, a pretrained name or a hub repo id); zero-shot names unchanged."""
    text = str(model)
    if Path(text).exists():
        return Path(text)
    row = find_pretrained(text)
    if row is not None:
        return converted_model(row) if row.repo else text
    if _REPO_ID.match(text) and not text.startswith((".", "/")):
        return hub_model_folder(text)
    if "/" not in text and os.sep not in text:
        names = ", ".join(row.name for row in pretrained_models())
        raise AvsegError(f"{text}: no such model folder, and not a model name avseg knows (names: {names}; or a folder, or a hub repo org/name)")
    return Path(text)


def hub_model_folder(repo_id: str) -> Path:
    """The snapshot of a hub repo written by ``avseg push`` (``org/name[@revision]``)."""
    repo, _, revision = repo_id.partition("@")
    folder = hub_snapshot(repo, MODEL_FILES, revision or None, what="an avseg model (config.json, model.safetensors)")
    try:
        name = json.loads((folder / "config.json").read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        name = None
    if not isinstance(name, str) or not (folder / "model.safetensors").is_file():
        raise AvsegError(
            f"{repo_id}: not an avseg model (the hub repo has no config.json naming an avseg model beside a model.safetensors); "
            "avseg loads repos written by `avseg push`, and the names of `avseg models`"
        )
    return folder


def converted_model(row: PretrainedModel) -> Path:
    """The cached avseg model folder of a pretrained row: downloaded and converted on first use only."""
    source, files = _download(row)
    key = conversion_key(row, files)
    folder = avseg_cache_dir() / "models" / f"{row.name}-{key[:16]}"
    if _complete(folder, key):
        return folder
    if folder.exists():
        logger.warning("%s: an incomplete or corrupt converted model; converting %s again", folder, row.name)
    _convert_into(row, source, folder, key)
    return folder


CONVERTED_KINDS = {"av2t-sam": "trained AV2T-SAM checkpoint", "evf-sam": "EVF-SAM weights"}
"""What a row's converter turns into a model, as messages name it."""


def _download(row: PretrainedModel) -> tuple[Path, list[Path]]:
    """What to convert (a file, or the snapshot folder of several) and the source files it consists of:
    the first of the row's patterns that matches any file of the repo's listing, all its matches."""
    assert row.repo is not None
    names, why = repo_file_names(row.repo, row.revision)
    chosen = matching_files(row.files, names)
    where = f"{row.repo}@{row.revision}" if row.revision else row.repo
    patterns = " or ".join(row.files)
    if not chosen and why is not None:
        raise not_in_cache(row.repo, f"{row.name}'s weights (a file matching {patterns})", row.revision, why, holds=names)
    if not chosen:
        raise AvsegError(
            f"{where}: holds no {CONVERTED_KINDS[row.converter]} for {row.name} (no file matching {patterns}); it holds {describe_files(names)}"
        )
    if len(chosen) > 1 and row.converter == "av2t-sam":
        raise AvsegError(
            f"{where}: {len(chosen)} files could be {row.name}'s checkpoint ({', '.join(chosen)}); "
            "convert the one you mean with `avseg convert av2t-sam FILE`"
        )
    files = [hub_file(row.repo, name, row.revision) for name in chosen]
    if len(files) == 1:
        return files[0], files
    return files[0].parents[len(Path(chosen[0]).parts) - 1], files


def matching_files(patterns: tuple[str, ...], names: list[str]) -> list[str]:
    """The names matching the first of ``patterns`` that matches any (``fnmatch``: ``*`` crosses folders)."""
    for pattern in patterns:
        matches = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if matches:
            return matches
    return []


def conversion_key(row: PretrainedModel, files: list[Path]) -> str:
    """SHA-256 of the conversion settings and the source files' own SHA-256 (the hub cache names blobs by it)."""
    import hashlib

    identity = {
        "format": CACHE_FORMAT,
        "architecture": row.architecture,
        "converter": row.converter,
        "projector": row.projector,
        "files": sorted((path.name, hub_blob_sha256(path)) for path in files),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _complete(folder: Path, key: str) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
        if marker["key"] != key or not marker["files"]:
            return False
        if any((folder / name).stat().st_size != size for name, size in marker["files"].items()):
            return False
        # the small files are hashed on every load; the weights' bytes only by size and header (hashing GBs per load is too slow)
        if any(file_sha256(folder / name) != digest for name, digest in marker["json_sha256"].items()):
            return False
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt"):
            return True
    except Exception:  # noqa: BLE001 (any unreadable entry is simply converted again)
        return False


def _convert_into(row: PretrainedModel, source: Path, folder: Path, key: str) -> None:
    from avseg.models.av2t_sam import convert as conversion

    temporary = Path(tempfile.mkdtemp(dir=cache_folder(folder.parent), prefix=f".{folder.name}."))
    try:
        logger.warning("converting %s (%s) into %s; done once", row.name, source.name, folder)
        conversion.convert(source, temporary, kind=row.converter, projector=row.projector)
        sizes = {path.name: path.stat().st_size for path in sorted(temporary.iterdir()) if path.is_file()}
        small = {name: file_sha256(temporary / name) for name in sizes if name.endswith(".json")}
        write_json(temporary / MARKER, {"key": key, "name": row.name, "repo": row.repo, "files": sizes, "json_sha256": small})
        with_umask_mode(temporary)  # mkdtemp makes it 0700; a shared cache is read by others
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(temporary, folder)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
