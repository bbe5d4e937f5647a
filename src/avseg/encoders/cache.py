"""A disk cache for the outputs of frozen encoders.

Entries are safetensors files keyed by the SHA-256 of (encoder identity,
input content): change the encoder (its class, config or weights) or the
input (the waveform's samples and rate, the cue text) and the key changes, so
a stale entry can never be returned. Writes go to a unique temporary file that
is renamed into place, so concurrent processes (DDP ranks, parallel
evaluations) can share one cache: a reader sees either no entry or a whole
one, and two writers of the same key write the same bytes. An unreadable
entry (a disk error, a truncated copy) is recomputed and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avseg.files import with_umask_mode


def identity_digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (part of an encoder's identity)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def _path(self, encoder: str, content: bytes) -> Path:
        key = hashlib.sha256(encoder.encode() + b"\0" + content).hexdigest()
        return self.folder / encoder[:16] / key[:2] / f"{key}.safetensors"

    def load(self, encoder: str, content: bytes) -> torch.Tensor | None:
        path = self._path(encoder, content)
        try:
            value = load_file(str(path))["value"]
        except (FileNotFoundError, SafetensorError, OSError, KeyError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def store(self, encoder: str, content: bytes, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().cpu().contiguous()
        path = self._path(encoder, content)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        save_file({"value": value}, str(temporary))
        with_umask_mode(temporary)  # a shared cache: every user the umask allows reads it
        os.replace(temporary, path)
        return value

    def get(self, encoder: str, content: bytes, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        cached = self.load(encoder, content)
        return cached if cached is not None else self.store(encoder, content, compute())


class CachedAudioEncoder:
    """An audio encoder (``embed(waveform, rate, seconds)``) whose outputs are cached on disk."""

    def __init__(self, encoder: Any, cache: FeatureCache):
        self.encoder = encoder
        self.cache = cache
        self.dim = encoder.dim
        self.identity = identity_digest(encoder_identity(encoder))

    def embed(self, waveform: np.ndarray, sample_rate: int, num_seconds: int) -> torch.Tensor:
        samples = np.ascontiguousarray(waveform, dtype=np.float32)
        content = samples.tobytes() + f"|{sample_rate}|{num_seconds}".encode()
        return self.cache.get(self.identity, content, lambda: self.encoder.embed(samples, sample_rate, num_seconds))


class CachedTextEncoder:
    """A text encoder (``encode(texts)``) whose outputs are cached on disk, one entry per string."""

    def __init__(self, encoder: Any, cache: FeatureCache):
        self.encoder = encoder
        self.cache = cache
        self.dim = encoder.dim
        self.identity = identity_digest(encoder_identity(encoder))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [self.cache.load(self.identity, text.encode()) for text in texts]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            for i, value in zip(missing, self.encoder.encode([texts[i] for i in missing])):
                rows[i] = self.cache.store(self.identity, texts[i].encode(), value)
        return torch.stack(rows) if rows else torch.zeros(0, self.dim)


def encoder_identity(encoder: Any) -> dict[str, Any]:
    """Class, configuration and weights of an encoder: what its outputs depend on."""
    identity: dict[str, Any] = {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}"}
    for attribute in ("network", "model"):
        module = getattr(encoder, attribute, None)
        if isinstance(module, torch.nn.Module):
            identity["weights"] = weights_digest(module)
            config = getattr(module, "config", None)
            identity["config"] = config.to_dict() if hasattr(config, "to_dict") else repr(config)
    if isinstance(encoder, torch.nn.Module) and "weights" not in identity:
        identity["weights"] = weights_digest(encoder)
    identity["dim"] = getattr(encoder, "dim", None)
    return identity


class MemoryCache:
    """Encoder outputs kept for the life of the process, keyed by the input's content.

    Validation reruns the same clips every epoch and training revisits them every epoch, so
    each distinct input (a waveform with its rate and length, a clip's frames) is encoded once;
    a perturbed input hashes differently and is encoded anew.
    """

    def __init__(self):
        self._values: dict[str, torch.Tensor] = {}

    def get(self, parts: Sequence[Any], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        digest = hashlib.sha1()
        for part in parts:
            digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        key = digest.hexdigest()
        if key not in self._values:
            with torch.no_grad():
                self._values[key] = compute()
        return self._values[key]
