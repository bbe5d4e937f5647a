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


class ServedHub:
    """A local HTTP server that answers what ``huggingface_hub`` asks the hub for a public model repo:
    the file listing (``/api/models/ORG/NAME/tree/REV``, what ``list_repo_files`` reads), a file's
    metadata and content (``HEAD``/``GET /ORG/NAME/resolve/REV/PATH``, with ``X-Repo-Commit`` and an
    ``ETag`` that is the content's SHA-256, as for LFS files), and anything else with a 404. Point
    ``HF_ENDPOINT`` at :attr:`url`. ``requests`` records each request's method and path."""

    def __init__(self, repos: dict[str, dict[str, bytes]], revision: str = "main"):
        import http.server
        import threading

        self.repos, self.revision, self.requests = repos, revision, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repr(sorted(self.repos[repo].items())).encode()).hexdigest()

    def _answer(self, handler, body: bool) -> None:
        import json
        import re
        from urllib.parse import unquote, urlsplit

        path = unquote(urlsplit(handler.path).path)
        self.requests.append((handler.command, path))
        tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        repo = (tree or resolve)[1] if (tree or resolve) else None
        if path == "/":
            self._send(handler, 200, b"", {}, body)
        elif repo not in self.repos:
            self._send(handler, 404, b"", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, body)
        elif (tree or resolve)[2] not in (self.revision, self.commit(repo)):
            self._send(handler, 404, b"", {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, body)
        elif tree:
            files = self.repos[repo]
            listing = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()} for name, data in sorted(files.items())]
            self._send(handler, 200, json.dumps(listing).encode(), {"Content-Type": "application/json"}, body)
        elif resolve[3] in self.repos[repo]:
            data = self.repos[repo][resolve[3]]
            headers = {"X-Repo-Commit": self.commit(repo), "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            self._send(handler, 200, data, headers, body)
        else:
            self._send(handler, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}, body)

    @staticmethod
    def _send(handler, status: int, data: bytes, headers: dict, body: bool) -> None:
        handler.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(data))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)
