"""A local stand-in for the Hugging Face hub: files written into a hub cache exactly as
``huggingface_hub`` lays it out (``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<commit>/<file>``
linking to the blob, ``refs/<revision>`` holding the commit), so that ``hf_hub_download`` and
``snapshot_download`` find them offline through their own code."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def use_hub_cache(monkeypatch, root: Path, offline: bool = True) -> Path:
    """Point avseg at an empty ``HF_HOME`` under ``root``, with no remembered answer of a hub endpoint;
    returns its hub cache folder."""
    import avseg.hub.download

    monkeypatch.setattr(avseg.hub.download, "_probes", {})
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("AVSEG_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    return root / "hf" / "hub"


def publish(cache: Path, repo: str, files: dict[str, Path | bytes], revision: str = "main") -> str:
    """Put ``files`` (repo path -> local file or bytes) into ``cache`` as one commit of ``repo``; returns the commit."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    contents = {name: value if isinstance(value, bytes) else Path(value).read_bytes() for name, value in files.items()}
    commit = hashlib.sha1(repr(sorted((n, hashlib.sha256(c).hexdigest()) for n, c in contents.items())).encode()).hexdigest()
    snapshot = folder / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    for name, content in contents.items():
        blob = folder / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, target.parent), target)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / revision).write_text(commit)
    return commit


def publish_folder(cache: Path, repo: str, local: Path, revision: str = "main") -> str:
    files = {path.relative_to(local).as_posix(): path for path in sorted(local.rglob("*")) if path.is_file()}
    return publish(cache, repo, files, revision)
