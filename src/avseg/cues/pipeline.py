"""Text cues for every frame of a dataset, cached on disk so that an interrupted run resumes.

:func:`generate_cues` walks a dataset's clips, captions their real frames (not
AVSS padding) in batches, asks the LLM what in each caption could be sounding,
and appends the answers to a cache folder. :func:`load_cues` reads the cache
back as ``{clip id: [names of frame 0, names of frame 1, ...]}``.
:func:`write_oracle_cues` writes the synthetic benchmark's visible object
names in the same format, with no model.

The cache is a folder of two files:

* ``manifest.json``: the identity of what made the cues, i.e. the dataset
  reader, the captioner, the LLM and the prompt (or the oracle). It is written
  once, atomically. A later run with a different identity stops with an error
  instead of mixing two models' answers in one cache: choose another folder.
* ``frames.jsonl``: one JSON object per finished frame, with ``clip``,
  ``frame``, ``valid_frames`` and ``num_frames`` (the clip's real and padded
  frame counts), ``image`` (the frame's file, relative to the dataset root),
  ``caption``, ``llm_output`` (raw, for auditing and re-parsing) and ``cues``.
  Each batch is appended and fsync'd, so a crash loses at most the batch in
  flight, and leaves at most one incomplete last line, which the next run
  cuts off. Finished frames are never redone.

Frames that are the same image file are answered once: the cues depend only
on the image, and Ref-AVS has one row per object of a video, every row with
the video's frames.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from avseg.cues.prompt import PROMPT_ID, build_messages, clean_names, parse_cues
from avseg.data.reader import ClipReader, ClipRecord
from avseg.data.synthetic import OBJECTS_FILE, load_objects
from avseg.errors import ConfigError, DatasetError
from avseg.files import with_umask_mode

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FRAMES = "frames.jsonl"
FORMAT = 1
_FIELDS = ("clip", "frame", "valid_frames", "num_frames", "image", "caption", "llm_output", "cues")


@dataclass
class CueStats:
    """How the real frames of a dataset were covered by one run."""

    frames: int = 0
    cached: int = 0
    """already in the cache before this run"""
    reused: int = 0
    """copied from another clip's identical frame"""
    generated: int = 0
    """captioned and answered by the models (or the oracle) in this run"""


def generate_cues(
    reader: ClipReader,
    out_dir: str | Path,
    captioner: Any,
    llm: Any,
    batch_size: int = 8,
    progress: bool = False,
) -> CueStats:
    """Caption, ask and cache every real frame of ``reader`` that ``out_dir`` does not hold yet.

    ``captioner`` needs ``caption(images) -> list[str]`` and ``identity()``
    (a :class:`~avseg.cues.captioner.Captioner`); ``llm`` needs
    ``generate(conversations) -> list[str]`` and ``identity()`` (a
    :class:`~avseg.cues.llm.CueLLM`). ``batch_size`` frames go through both
    models at a time.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    identity = {
        "format": FORMAT,
        "dataset": type(reader).__name__,
        "captioner": captioner.identity(),
        "llm": llm.identity(),
        "prompt": PROMPT_ID,
    }
    stats = CueStats()
    total = sum(len(record.frames) for record in reader.records)
    bar = tqdm(total=total, unit="frame", disable=None if progress else True)
    with CueCache(out_dir, identity) as cache, bar:
        pending: dict[str, _Job] = {}  # image -> frame waiting for the models, in arrival order
        for record in reader.records:
            copies, todo = [], []
            # A record's frames past len(record.frames) are padding (Clip.frame_valid is False there).
            for frame, path in enumerate(record.frames):
                image = _image_key(reader, path)
                stats.frames += 1
                if (record.id, frame) in cache.done:
                    stats.cached += 1
                elif image in cache.by_image:
                    copies.append(_entry(record, frame, image, cache.by_image[image]))
                elif image in pending:
                    pending[image].targets.append((record, frame))
                else:
                    todo.append((frame, image))
            cache.write(copies)
            stats.reused += len(copies)
            bar.update(len(record.frames) - len(todo))
            if todo:
                clip = reader.load(record)
                for frame, image in todo:
                    pending[image] = _Job(clip.frames[frame], [(record, frame)])
            while len(pending) >= batch_size:
                _answer(pending, batch_size, captioner, llm, cache, stats, bar)
        while pending:
            _answer(pending, batch_size, captioner, llm, cache, stats, bar)
    return stats


@dataclass
class _Job:
    image: np.ndarray
    targets: list[tuple[ClipRecord, int]] = field(default_factory=list)


def _answer(
    pending: dict[str, _Job], count: int, captioner: Any, llm: Any, cache: CueCache, stats: CueStats, bar: tqdm
) -> None:
    """Run the oldest ``count`` pending images through both models and cache the answers."""
    keys = list(pending)[:count]
    jobs = [pending.pop(key) for key in keys]
    captions = captioner.caption([job.image for job in jobs])
    outputs = llm.generate([build_messages(caption) for caption in captions])
    entries = []
    for key, job, caption, output in zip(keys, jobs, captions, outputs):
        answer = {"caption": caption, "llm_output": output, "cues": parse_cues(output)}
        entries += [_entry(record, frame, key, answer) for record, frame in job.targets]
    cache.write(entries)
    stats.generated += len(jobs)
    stats.reused += len(entries) - len(jobs)
    bar.update(len(jobs))  # the frames that joined a pending image were counted when they joined


def oracle_cues(dataset_root: str | Path) -> dict[str, list[list[str]]]:
    """The visible object names of each real frame, from a synthetic dataset's ``synthetic_objects.json``.

    Keys are that file's: clip ids, except for Ref-AVS, whose rows (one per
    object) share their video's frames and are listed once per video id.
    Names go through the same cleaning as LLM answers (lower case, at most 4).
    """
    return {
        clip: [clean_names(names) for names in entry["visible"]] for clip, entry in load_objects(dataset_root).items()
    }


def write_oracle_cues(reader: ClipReader, out_dir: str | Path) -> CueStats:
    """Cache the synthetic visible names of every real frame of ``reader``, in the format of :func:`generate_cues`."""
    oracle = oracle_cues(reader.root)
    identity = {"format": FORMAT, "dataset": type(reader).__name__, "oracle": OBJECTS_FILE}
    stats = CueStats()
    with CueCache(out_dir, identity) as cache:
        entries = []
        for record in reader.records:
            key = record.id if record.id in oracle else record.meta.get("vid")
            names = oracle.get(key)
            if names is None or len(names) != len(record.frames):
                problem = f"no visible names for the {len(record.frames)} frames of clip {record.id}"
                raise DatasetError(reader.root / OBJECTS_FILE, problem)
            for frame, path in enumerate(record.frames):
                stats.frames += 1
                if (record.id, frame) in cache.done:
                    stats.cached += 1
                    continue
                answer = {"caption": None, "llm_output": None, "cues": names[frame]}
                entries.append(_entry(record, frame, _image_key(reader, path), answer))
        cache.write(entries)
        stats.generated = len(entries)
    return stats


def load_cues(out_dir: str | Path) -> dict[str, list[list[str]]]:
    """``{clip id: one list of (at most 4) names per frame}`` from a cue cache.

    Each clip has ``num_frames`` lists, padding frames (AVSS 5-frame clips)
    included as empty lists, so ``cues[clip.id][t]`` belongs to
    ``clip.frames[t]``. Clips whose frames are not all cached yet (an
    interrupted run) are left out, with a warning.
    """
    folder = Path(out_dir)
    if not (folder / MANIFEST).is_file():
        raise DatasetError(folder / MANIFEST, "missing file; this folder is not a cue cache")
    cues: dict[str, list[list[str]]] = {}
    missing: dict[str, set[int]] = {}
    for entry in _read_entries(folder / FRAMES, repair=False):
        clip = entry["clip"]
        frames = cues.setdefault(clip, [[] for _ in range(entry["num_frames"])])
        frames[entry["frame"]] = list(entry["cues"])
        missing.setdefault(clip, set(range(entry["valid_frames"]))).discard(entry["frame"])
    unfinished = sorted(clip for clip, frames in missing.items() if frames)
    if unfinished:
        logger.warning(
            "%s: %d clips have unfinished cues and are left out (first: %s)", folder, len(unfinished), unfinished[0]
        )
    return {clip: frames for clip, frames in cues.items() if not missing[clip]}


class CueCache:
    """An open cue cache folder (see the module docs): what is done, and an appender for what is new."""

    def __init__(self, folder: str | Path, identity: dict[str, Any]):
        self.folder = Path(folder)
        _claim(self.folder, identity)
        self.done: set[tuple[str, int]] = set()
        self.by_image: dict[str, dict[str, Any]] = {}
        self._remember(_read_entries(self.folder / FRAMES, repair=True))
        self._file = (self.folder / FRAMES).open("a", encoding="utf-8")

    def write(self, entries: list[dict[str, Any]]) -> None:
        """Append ``entries`` and make them durable before returning."""
        if not entries:
            return
        self._file.write("".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._remember(entries)

    def _remember(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            self.done.add((entry["clip"], entry["frame"]))
            self.by_image[entry["image"]] = entry

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CueCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _image_key(reader: ClipReader, path: Path) -> str:
    """A frame's file relative to the dataset root: the same key on any machine the dataset is copied to."""
    return os.path.relpath(path, reader.root).replace(os.sep, "/")


def _entry(record: ClipRecord, frame: int, image: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "clip": record.id,
        "frame": frame,
        "valid_frames": len(record.frames),
        "num_frames": record.num_frames,
        "image": image,
        "caption": answer["caption"],
        "llm_output": answer["llm_output"],
        "cues": answer["cues"],
    }


def _claim(folder: Path, identity: dict[str, Any]) -> None:
    """Make ``folder`` a cache of ``identity``'s cues, or check that it already is one."""
    identity = json.loads(json.dumps(identity))
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise DatasetError(manifest, "not valid JSON") from None
        if found != identity:
            raise ConfigError(
                f"{folder}: holds cues made by {json.dumps(found)}, not by {json.dumps(identity)}; "
                "write these cues to another folder"
            )
        return
    if (folder / FRAMES).exists():
        raise DatasetError(manifest, f"missing file; cannot tell what made {folder / FRAMES}")
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{MANIFEST}.")
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(json.dumps(identity, indent=1))
        file.flush()
        os.fsync(file.fileno())
    with_umask_mode(temporary)
    os.replace(temporary, manifest)


def _read_entries(path: Path, repair: bool) -> list[dict[str, Any]]:
    """The complete lines of a ``frames.jsonl``; with ``repair``, an incomplete last line is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning("%s: ignoring an incomplete last line (an interrupted write)", path)
        if repair:
            with path.open("r+b") as file:
                file.truncate(end)
    entries = []
    for number, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
        try:
            entry = json.loads(line)
            valid = isinstance(entry, dict) and all(key in entry for key in _FIELDS)
            valid = valid and 0 <= entry["frame"] < entry["valid_frames"] <= entry["num_frames"]
            valid = valid and isinstance(entry["cues"], list)
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise DatasetError(path, f"line {number}: not a cue record")
        entries.append(entry)
    return entries
