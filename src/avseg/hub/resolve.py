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
a marker (``avseg-cache.json``: the key, and every file's size and CRC-32) written last, so an
interrupted conversion leaves nothing that looks finished.

**Checked before every use.** An entry is used only when every file the marker lists has its size and
its CRC-32 (:func:`avseg.files.file_crc32`); otherwise it is converted again, with a warning. Bytes
changed at the same size anywhere, or a zero-filled range, are caught. The cost is reading and
checksumming the entry once per load: 0.45 s per GB from the page cache on the test machine
(2.2 GB/s; SHA-256 would be 0.79 s per GB), so ~1.6 s for a full AV2T-SAM (3.7 GB at fp32); from a
cold disk the read is the load's own read, moved earlier. Sizes and the safetensors header (the
previous check) missed same-size damage, and a sampled checksum misses changes between its samples.

**Only avseg's own entries are replaced.** A damaged entry is removed file by file, and only when it
holds avseg's marker and nothing but the files a conversion writes; a folder at an entry's place that
avseg did not write (no marker, a file avseg does not write, a link) is refused in one line, never
deleted.
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
from avseg.files import file_crc32, with_umask_mode, write_json
from avseg.hub.download import (
    describe_files,
    hub_blob_sha256,
    hub_file,
    hub_snapshot,
    not_in_cache,
    repo_file_names,
)
from avseg.hub.locations import avseg_cache_dir, cache_folder
from avseg.hub.pretrained import PretrainedModel, find_pretrained, pretrained_models

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Part of every conversion key: raise it when a conversion's output changes, so old entries are redone."""
MARKER = "avseg-cache.json"
ENTRY_FILES = frozenset({MARKER, "config.json", "model.safetensors", "sam2_memory.safetensors", "system.json"})
"""What a conversion writes into an entry (with the marker): all that replacing an entry may remove."""
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"]
"""What ``save_pretrained`` of a text model's tokenizer writes beside the weights (AuralSAM2's Ref-AVS variant)."""
MODEL_FILES = ["config.json", "model.safetensors", "sam2_memory.safetensors", "system.json", "recipe.json", "README.md", "eval-*/report.json", *TOKENIZER_FILES]
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
    if folder.exists() or folder.is_symlink():
        _check_written_by_avseg(folder)
        logger.warning("%s: an incomplete or damaged converted model; converting %s again", folder, row.name)
    _convert_into(row, source, folder, key)
    return folder


CONVERTED_KINDS = {
    "av2t-sam": "trained AV2T-SAM checkpoint", "evf-sam": "EVF-SAM weights", "auralsam2": "AuralSAM2 checkpoint", "vct": "VCT checkpoint",
}
"""What a row's converter turns into a model, as messages name it."""
SINGLE_FILE_KINDS = ("av2t-sam", "auralsam2", "vct")
"""Converters of one checkpoint file: two matching files are named, not chosen between."""


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
    if len(chosen) > 1 and row.converter in SINGLE_FILE_KINDS:
        raise AvsegError(
            f"{where}: {len(chosen)} files could be {row.name}'s checkpoint ({', '.join(chosen)}); "
            f"convert the one you mean with `avseg convert {row.converter} FILE`"
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
    """Whether ``folder`` is a finished entry for ``key`` whose files all have their recorded size and CRC-32."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        sizes, checksums = marker["files"], marker["crc32"]
        if marker["key"] != key or not sizes or set(sizes) != set(checksums):
            return False
        if any((folder / name).stat().st_size != size for name, size in sizes.items()):
            return False  # cheap, before reading everything
        return all(file_crc32(folder / name) == checksum for name, checksum in checksums.items())
    except Exception:  # noqa: BLE001 (any unreadable entry is simply converted again)
        return False


def _check_written_by_avseg(folder: Path) -> None:
    """Refuse (one line) to replace a folder at an entry's place unless it is avseg's: a real folder holding
    the marker and only files a conversion writes."""
    if folder.is_symlink() or not folder.is_dir():
        raise AvsegError(f"{folder}: in avseg's model cache, but not a folder avseg wrote (a file or a link); move it away, or set AVSEG_CACHE elsewhere")
    entries = list(folder.iterdir())
    foreign = sorted(path.name for path in entries if path.name not in ENTRY_FILES or path.is_symlink() or not path.is_file())
    if MARKER not in {path.name for path in entries} or foreign:
        held = f"it holds {', '.join(foreign[:5])}, which avseg does not write" if foreign else f"it has no {MARKER}"
        raise AvsegError(
            f"{folder}: in avseg's model cache, but avseg did not write it ({held}); nothing was deleted: move it away, "
            "or set AVSEG_CACHE elsewhere"
        )


def _remove_entry(folder: Path) -> None:
    """Remove an entry :func:`_check_written_by_avseg` accepted: its files one by one, then the folder (which
    fails, leaving the rest, if anything else appeared in it meanwhile)."""
    _check_written_by_avseg(folder)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


def _convert_into(row: PretrainedModel, source: Path, folder: Path, key: str) -> None:
    from avseg.models.av2t_sam import convert as conversion

    temporary = Path(tempfile.mkdtemp(dir=cache_folder(folder.parent), prefix=f".{folder.name}."))
    try:
        logger.warning("converting %s (%s) into %s; done once", row.name, source.name, folder)
        if row.converter == "vct":
            from avseg.models.vct import convert as vct_conversion

            vct_conversion.convert(source, temporary)
        elif row.converter == "auralsam2":
            from avseg.models.auralsam2 import convert as auralsam2_conversion

            auralsam2_conversion.convert(source, temporary)
        else:
            conversion.convert(source, temporary, kind=row.converter, projector=row.projector)
        written = sorted(path for path in temporary.iterdir() if path.is_file())
        sizes = {path.name: path.stat().st_size for path in written}
        checksums = {path.name: file_crc32(path) for path in written}
        write_json(temporary / MARKER, {"key": key, "name": row.name, "repo": row.repo, "files": sizes, "crc32": checksums})
        with_umask_mode(temporary)  # mkdtemp makes it 0700; a shared cache is read by others
        if folder.exists() or folder.is_symlink():
            _remove_entry(folder)
        os.replace(temporary, folder)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
