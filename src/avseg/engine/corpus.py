"""A corpus for ``avseg segment``: which videos, where each one's outputs go, which are done, and the index.

Inputs (:func:`corpus_videos`). ``avseg segment`` takes video files, folders (every
file with a video suffix, :data:`VIDEO_SUFFIXES`, at any depth, hidden names
skipped), glob patterns (quoted, so that avseg expands them: ``"clips/**/*.mp4"``),
or ``--list FILE``. A list holds one video per line: a path, or a JSON object
``{"path": ..., "cues": ..., "vocabulary": ...}`` (cues as ``--cues``, a string or
a list of names, for TeSO; a vocabulary as ``--vocabulary`` for zero-shot
models); blank lines are skipped. Relative paths, and vocabulary files, are
found beside the list, so that the same list works from any folder and on every
machine. A line without cues or vocabulary takes the command's.

One output folder per video, ``OUT/<stem>/``:

* a video listed twice (the same file, however named) is segmented once, and a note
  says so; listed twice with different cues or vocabularies it is refused;
* two different videos with the same stem would write one folder: refused before
  any work, naming both (rename one, or segment them into different ``--out``
  folders), as are stems that are not plain folder names and the stems of
  :data:`CORPUS_FILES`.

Completion records (:func:`expected_record`, :func:`is_done`). A video's outputs are
committed whole (:func:`avseg.outputs.staged_folder`), and ``record.json`` is
committed with them: the input's identity, the model's and the settings'. A rerun
skips a video whose record equals what this run would write; a folder that merely
exists, or whose record names another input, model or settings, is segmented again
(it is replaced only if it holds nothing but what avseg writes there). Decisions:

* the input is its file name, size and modification time (``mtime_ns``), as make and
  rsync compare files: a changed file is segmented again, and the same corpus
  mounted at another place (another machine) still matches. Its folder is not
  part of it: the output folder is already named by the stem, and a different file
  with the same name, size and time to the nanosecond is not a case to design for;
* the model is its name and the SHA-256 of every file of its folder (``config.json``,
  the weights, ``system.json``): a model copied elsewhere still matches, retrained
  weights do not. A by-name model (``zeroshot-sam3``) is its names and settings,
  and the content of those of its sources that are local folders;
* the settings are everything that changes the masks or the files: ``--rate``,
  ``--keyframes``, ``--propagator``, ``--format``, ``--window``, the precision, the
  cues (or ``auto`` with the captioner and LLM), the vocabulary's entries,
  ``--allow-silent`` and the zero-shot ``--set`` values. Not the device, the
  compilation or the avseg version: where and how fast it runs, or an upgrade,
  does not redo a corpus (the version is recorded beside them).

What comes out beside the videos' folders (:data:`CORPUS_FILES`), written at the end of
a run by its first process alone, each whole under a temporary name then renamed, so
that concurrent processes never write the same file and a killed run leaves the
previous run's files as they were:

* ``index.jsonl``: a line per video of the corpus, in the corpus's order: ``video``,
  ``status`` (``done``: segmented by this run; ``skipped``: its record matched;
  ``failed``), ``output`` (its folder; none when failed), ``frames`` (masks),
  ``seconds`` (the video's length), ``time_spent_s`` (for a skipped video, the time
  it took when it was done), ``rank`` (the process that segmented it in this run)
  and, when failed, ``reason``. Every run writes the whole index again, so a
  resumed corpus has one consistent index;
* ``failures.jsonl``: this run's failed videos with their one-line reasons
  (empty when none failed). A failed video has no record, so a rerun tries it again.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from avseg.engine.segment import OUTPUT_NAMES, RECORD, output_folder_name
from avseg.errors import ConfigError, OutputError
from avseg.files import atomic_write, file_sha256
from avseg.outputs import check_parent_folder, check_writable

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv"}
)
"""What a folder given to ``avseg segment`` contributes (any case); a glob or a list takes any file it names."""
INDEX = "index.jsonl"
FAILURES = "failures.jsonl"
CORPUS_FILES = (INDEX, FAILURES)
"""What a corpus writes in ``OUT`` beside the videos' folders."""
LIST_KEYS = ("path", "cues", "vocabulary")
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class CorpusVideo:
    """One video of a corpus: its path, its own cues or vocabulary (None: the command's), and where it was
    named (``origin``: a list's ``FILE:LINE``, or empty for a command-line argument, a folder's or a glob's)."""

    path: Path
    cues: tuple[str, ...] | None = None
    vocabulary: str | None = None
    origin: str = ""
    named: bool = False
    """Named as a file on the command line: checked before the model loads, as ``avseg segment`` always did."""

    @property
    def folder(self) -> str:
        return output_folder_name(self.path)

    def __str__(self) -> str:
        return f"{self.path} ({self.origin})" if self.origin else str(self.path)


@dataclass(frozen=True)
class Corpus:
    """The videos, in order, and the repeats folded into them (for the note that says so)."""

    videos: tuple[CorpusVideo, ...]
    repeats: tuple[tuple[CorpusVideo, CorpusVideo], ...] = ()
    """(repeat, the entry it repeats)."""

    def note(self) -> str | None:
        """One line about the repeats, or None."""
        if not self.repeats:
            return None
        shown = ", ".join(f"{repeat.origin or repeat.path} repeats {first.origin or first.path}" for repeat, first in self.repeats[:3])
        more = ", ..." if len(self.repeats) > 3 else ""
        return f"{len(self.repeats)} repeated entr{'y' if len(self.repeats) == 1 else 'ies'} ({shown}{more}): each video is segmented once"


def corpus_videos(arguments: Sequence[str | os.PathLike], list_file: str | os.PathLike | None) -> Corpus:
    """The corpus of ``avseg segment``'s arguments (files, folders, globs) or of ``--list``: one-line errors for
    an empty corpus, both kinds of input at once, a malformed list, and two videos with one output folder."""
    if list_file is not None and arguments:
        raise ConfigError("--list and videos on the command line: give the videos one way (add them to the list)")
    if list_file is not None:
        videos = read_list(Path(list_file))
    elif arguments:
        videos = [video for argument in arguments for video in expand_argument(str(argument))]
    else:
        raise ConfigError("no videos: name video files, folders or glob patterns, or --list FILE")
    corpus = _fold_repeats(videos)
    check_folder_names(corpus.videos)
    return corpus


def expand_argument(argument: str) -> list[CorpusVideo]:
    """A command-line argument: a folder's videos, a glob's files (sorted), or the file it names."""
    path = Path(argument)
    if path.is_dir():
        found = sorted(p for p in _walk(path) if p.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise ConfigError(f"{path}: a folder with no video files in it ({', '.join(sorted(VIDEO_SUFFIXES))}, at any depth)")
        return [CorpusVideo(p) for p in found]
    if not path.exists() and _GLOB_CHARACTERS & set(argument):
        found = sorted(Path(p) for p in glob.glob(argument, recursive=True) if Path(p).is_file())
        if not found:
            raise ConfigError(f"{argument}: the pattern matches no file")
        return [CorpusVideo(p) for p in found]
    return [CorpusVideo(path, named=True)]


def _walk(folder: Path) -> Iterable[Path]:
    """The files under ``folder`` at any depth, hidden names (and what is under them) left out: avseg's own
    staging folders are hidden, and so is what a user keeps out of sight."""
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        yield from (Path(root) / name for name in files if not name.startswith("."))


def read_list(path: Path) -> list[CorpusVideo]:
    """``--list FILE`` (see the module docstring); every problem is one line naming ``FILE:LINE``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"--list {path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--list {path}: not a UTF-8 text file (expected one video path or JSON object per line)") from None
    except OSError as error:
        raise ConfigError(f"--list {path}: cannot read ({error.strerror or error})") from None
    videos = [_list_entry(line.strip(), f"{path}:{number}", path.parent) for number, line in enumerate(lines, start=1) if line.strip()]
    if not videos:
        raise ConfigError(f"--list {path}: lists no videos")
    return videos


def _list_entry(text: str, origin: str, beside: Path) -> CorpusVideo:
    if not text.startswith("{"):
        return CorpusVideo(beside / text, origin=origin)
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{origin}: not a JSON object ({error.msg} at column {error.colno})") from None
    if not isinstance(entry, dict):
        raise ConfigError(f"{origin}: not a JSON object")
    unknown = sorted(set(entry) - set(LIST_KEYS))
    if unknown:
        raise ConfigError(f"{origin}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} (a line holds {', '.join(LIST_KEYS)})")
    video = entry.get("path")
    if not isinstance(video, str) or not video.strip():
        raise ConfigError(f"{origin}: 'path' must name the video file")
    return CorpusVideo(beside / video, _list_cues(entry.get("cues"), origin), _list_vocabulary(entry.get("vocabulary"), origin, beside), origin)


def _list_cues(cues: Any, origin: str) -> tuple[str, ...] | None:
    from avseg.engine.session import parse_cues

    if cues is None:
        return None
    if isinstance(cues, list) and all(isinstance(name, str) for name in cues):
        names = tuple(name.strip() for name in cues if name.strip())
    elif isinstance(cues, str):
        if cues.strip() == "auto":
            raise ConfigError(f"{origin}: cues 'auto' is for the whole run (--cues auto), not a line")
        names = parse_cues(cues)
    else:
        raise ConfigError(f"{origin}: 'cues' must be a list of names or a comma-separated string")
    if not names:
        raise ConfigError(f"{origin}: 'cues' names no object (leave the key out to use the command's --cues)")
    return names


def _list_vocabulary(vocabulary: Any, origin: str, beside: Path) -> str | None:
    from avseg.models.zero_shot.vocabulary import VOCABULARIES, load_vocabulary

    if vocabulary is None:
        return None
    if isinstance(vocabulary, list) and all(isinstance(entry, str) for entry in vocabulary):
        vocabulary = ", ".join(vocabulary)
    if not isinstance(vocabulary, str):
        raise ConfigError(f"{origin}: 'vocabulary' must be as --vocabulary: s4, avss, a .txt file or a comma list")
    if vocabulary not in VOCABULARIES and (beside / vocabulary).is_file():
        vocabulary = str(beside / vocabulary)
    try:
        load_vocabulary(vocabulary)  # checked now, before any work
    except ConfigError as error:
        raise ConfigError(f"{origin}: {error}") from None
    return vocabulary


def _fold_repeats(videos: list[CorpusVideo]) -> Corpus:
    """One entry per file (the first); a repeat with other cues or another vocabulary is refused."""
    first: dict[str, CorpusVideo] = {}
    kept, repeats = [], []
    for video in videos:
        key = os.path.realpath(video.path)
        earlier = first.setdefault(key, video)
        if earlier is video:
            kept.append(video)
        elif (earlier.cues, earlier.vocabulary) != (video.cues, video.vocabulary):
            raise ConfigError(f"{video} repeats {earlier} with other cues or another vocabulary; list each video once")
        else:
            repeats.append((video, earlier))
    return Corpus(tuple(kept), tuple(repeats))


def check_folder_names(videos: Sequence[CorpusVideo]) -> None:
    """Every video's output folder is a plain name, not one of :data:`CORPUS_FILES`, and no other video's."""
    seen: dict[str, CorpusVideo] = {}
    for video in videos:
        name = video.folder
        if name in CORPUS_FILES:
            raise ConfigError(f"{video}: its output folder OUT/{name} would take the place of the corpus's {name}; rename the video")
        if name in seen:
            raise ConfigError(f"{seen[name]} and {video} would both write to OUT/{name}/; segment them in separate calls or rename one")
        seen[name] = video


def check_output_root(out: Path, videos: Sequence[CorpusVideo]) -> None:
    """Before any work: ``OUT`` can hold the corpus, the corpus files there are avseg's (so they may be
    replaced), and the folders of the videos named on the command line may be written (the others are
    checked when their turn comes, and a refused one is a failed video)."""
    check_parent_folder(out / INDEX)
    for name in CORPUS_FILES:
        _check_corpus_file(out / name)
    for video in videos:
        if video.named:
            check_writable(out / video.folder, OUTPUT_NAMES)


def _check_corpus_file(path: Path) -> None:
    """An existing ``index.jsonl`` or ``failures.jsonl`` is replaced only if it is one avseg wrote: a file whose
    every line is a JSON object naming a ``video``."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_file():
        raise OutputError(f"{path}: is not a file avseg wrote (a link or a folder); move it away or choose another --out")
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, OSError):
        rows = [None]
    if not all(isinstance(row, dict) and "video" in row for row in rows):
        raise OutputError(f"{path}: is not a {path.name} avseg wrote; move it away or choose another --out")


def input_identity(video: Path) -> dict[str, Any] | None:
    """The input part of a record (see the module docstring); None when the file cannot be read."""
    try:
        status = video.stat()
    except OSError:
        return None
    return {"name": video.name, "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def folder_digest(folder: Path) -> str:
    """The SHA-256 of a model folder's files (every file directly in it, by name and content)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(f"{path.name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def model_identity(info: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The model part of a record: a model folder by its content; a by-name model by its name, its sources
    (hub names, or folders by their content) and its other ``settings`` (``--set`` values)."""
    source = Path(str(info["source"]))
    if source.is_dir():
        return {"model": info["model"], "content": folder_digest(source)}
    identity = {"model": info["model"], "settings": {key: value for key, value in settings.items() if not key.endswith("_model") and key != "vocabulary"}}
    sources = {key: Path(str(value)) for key, value in settings.items() if key.endswith("_model")}
    if any(path.is_dir() for path in sources.values()):  # by content, wherever the folders are
        identity["sources"] = {key: folder_digest(path) if path.is_dir() else str(path) for key, path in sources.items()}
    else:
        identity["source"] = str(info["source"])  # hub names
    return identity


def expected_record(video: CorpusVideo, model: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """What ``record.json`` of ``video`` must hold for this run to skip it (``settings``: this video's own,
    its cues and vocabulary included), in the JSON form it is read back in."""
    return json.loads(json.dumps({"input": input_identity(video.path), "model": model, "settings": settings}))


def read_record(folder: Path) -> dict[str, Any] | None:
    """A video folder's record, or None when there is none (or one that cannot be read: the video is redone)."""
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def is_done(record: dict[str, Any] | None, expected: dict[str, Any]) -> bool:
    """Whether a record says the video was segmented from this input, by this model, with these settings."""
    return record is not None and expected["input"] is not None and all(record.get(key) == expected[key] for key in ("input", "model", "settings"))


def write_record(folder: Path, expected: dict[str, Any], result: dict[str, Any]) -> None:
    """``record.json`` in a video's (staging) folder: the identities and what was made (frames, seconds, time)."""
    from avseg import __version__

    (folder / RECORD).write_text(json.dumps({**expected, "result": result, "avseg": __version__}, indent=1, allow_nan=False) + "\n")


def index_row(video: CorpusVideo, status: str, out: Path, result: dict[str, Any] | None = None, rank: int | None = None, reason: str | None = None) -> dict[str, Any]:
    """One line of ``index.jsonl`` (see the module docstring)."""
    result = result or {}
    row = {
        "video": str(video.path),
        "status": status,
        "output": str(out / video.folder) if status != "failed" else None,
        "frames": result.get("frames"),
        "seconds": result.get("seconds"),
        "time_spent_s": result.get("time_spent_s"),
        "rank": rank,
    }
    if reason is not None:
        row["reason"] = reason
    return row


def write_index(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``index.jsonl`` (every row) and ``failures.jsonl`` (the failed ones), each whole, then renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    failures = [{"video": row["video"], "reason": row["reason"], "rank": row["rank"]} for row in rows if row["status"] == "failed"]
    for name, lines in ((INDEX, rows), (FAILURES, failures)):
        text = "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines)
        try:
            atomic_write(out / name, lambda temporary: temporary.write_text(text, encoding="utf-8"))
        except OSError as error:
            raise OutputError(f"{out / name}: cannot write ({error.strerror or error})") from None

