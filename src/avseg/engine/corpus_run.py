"""``avseg segment`` over a corpus, in one process or in many under torchrun.

    avseg segment clips/ --model M --out out/                                   # one process
    torchrun --nproc-per-node 4 --no-python avseg segment --list corpus.txt --model M --out out/

Every process (rank ``r`` of ``w``; a process started alone is rank 0 of 1):

1. reads the corpus and checks it and the settings (:mod:`avseg.engine.corpus`); files
   named on the command line are also checked as a lone video always was. All of this
   is one line and exit status 2 before the model loads, in every process alike;
2. loads one model on its own device (the GPU of its ``LOCAL_RANK``, or the CPU);
3. takes the plan of the first process, which read the records of every video: the
   videos still to do, and the rows of those already done (one view of the folder, so
   that no video is taken by two processes or by none, however long each took to load);
4. removes what a killed run left of its own videos (staging folders) and segments
   every ``w``-th video of the plan from its rank's: round-robin, so shards stay even,
   and on a rerun the remaining videos are shared anew. The next video is opened
   (probed, checked, decoding its first frames) in a background thread while the
   model runs on the current one. A video that fails (an :class:`AvsegError`: broken,
   refused by a check, its folder holding files avseg did not write) is printed and
   recorded, and the shard goes on; a place that cannot be written
   (:class:`~avseg.errors.OutputError`: a full disk) stops the run, since every
   following video would fail the same way, as does anything unexpected (a bug);
5. hands its rows and timings to the first process, which writes ``index.jsonl`` and
   ``failures.jsonl`` and prints a line per process and the total (videos per hour and
   frames per second, over the videos segmented by this run); the last line counts the
   failures. The exit status is 1 when a video failed, 0 otherwise, in every process.

A process killed at any moment loses only the video it was segmenting (and the one
being opened): every finished video's folder and record are in place, and a rerun
skips them. torchrun stops the other processes when one dies; they too lose only
their current video.

Progress: a bar per process for the corpus (at its rank's line), and under it the frames
of the current video when there is one process; both stay off when the output is not a
terminal, where each video gets one line and the run its closing lines.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from avseg.engine.corpus import (
    FAILURES,
    INDEX,
    Corpus,
    CorpusVideo,
    check_output_root,
    corpus_videos,
    expected_record,
    index_row,
    is_done,
    model_identity,
    read_record,
    write_index,
    write_record,
)
from avseg.engine.dense import Sampling, check_sampling
from avseg.engine.distributed import Ranks, join
from avseg.engine.segment import STAGING_NAMES, OpenedVideo, open_video
from avseg.errors import AvsegError, ConfigError, OutputError
from avseg.outputs import remove_leftovers


@dataclass
class SegmentOptions:
    """The options of ``avseg segment`` (see its ``--help``)."""

    model: str
    out: Path
    cues: str | None = None
    expression: str | None = None
    vocabulary: str | None = None
    clap_model: str | None = None
    sam3_model: str | None = None
    set: list[str] = field(default_factory=list)
    captioner: str | None = None
    llm: str | None = None
    rate: str = "all"
    keyframes: int = 1
    propagator: str = "none"
    format: str = "png"
    window: int = 5
    allow_silent: bool = False
    device: str = "auto"
    precision: str | None = None
    compile: bool = False

    @property
    def sampling(self) -> Sampling:
        return Sampling(None if self.rate == "all" else int(self.rate), self.keyframes)

    @property
    def auto_cues(self) -> bool:
        return (self.cues or "").strip() == "auto"


def segment_corpus(arguments: Sequence[str | Path], list_file: str | Path | None, options: SegmentOptions) -> int:
    """Segment the corpus of ``arguments`` or ``list_file`` into ``options.out`` (see the module docstring);
    the exit status."""
    return _CorpusRun(corpus_videos(arguments, list_file), options, join("gloo")).run()


@dataclass
class _Plan:
    """What the first process decided: the videos still to do (by their index in the corpus) and the rows of
    the others."""

    pending: list[int]
    skipped: dict[int, dict[str, Any]]


@dataclass
class _Tally:
    """One process's work in this run."""

    rank: int
    segmented: int = 0
    failed: int = 0
    frames: int = 0
    seconds: float = 0.0


class _CorpusRun:
    def __init__(self, corpus: Corpus, options: SegmentOptions, ranks: Ranks):
        self.corpus, self.options, self.ranks = corpus, options, ranks
        self.out = Path(options.out)
        self.videos = corpus.videos
        self.prefix = f"[rank {ranks.rank}] " if ranks.several else ""

    def run(self) -> int:
        options = self.options
        if self.ranks.rank == 0 and self.corpus.note():
            print(f"avseg: note: {self.corpus.note()}", file=sys.stderr, flush=True)
        check_output_root(self.out, self.videos)
        for video in self.videos:
            if video.named:
                check_sampling(video.path, options.sampling, options.allow_silent)
        self.load()
        plan = self.ranks.from_first(self.plan() if self.ranks.rank == 0 else None)
        shard = self.ranks.shard(plan.pending)
        own = shard + (list(plan.skipped) if self.ranks.rank == 0 else [])  # the folders no other process writes
        remove_leftovers(self.out, {self.videos[index].folder for index in own}, STAGING_NAMES)
        started = time.perf_counter()
        rows, tally = self.segment_shard(shard)
        gathered = self.ranks.gather((rows, tally))
        wall = time.perf_counter() - started  # until the slowest process is done
        rows = {**plan.skipped, **{index: row for shard_rows, _ in gathered for index, row in shard_rows.items()}}
        failed = sum(row["status"] == "failed" for row in rows.values())
        if self.ranks.rank == 0:
            write_index(self.out, [rows[index] for index in range(len(self.videos))])
            self.close([tally for _, tally in gathered], wall, len(plan.skipped), failed)
        self.ranks.barrier()  # the first process has written and printed everything before any of them exits
        return 1 if failed else 0

    def load(self) -> None:
        """The model on this process's device, its identity, and the propagator."""
        from avseg.config import apply_overrides
        from avseg.engine.session import load_cue_models, load_segmenter, parse_cues
        from avseg.engine.train import resolve_device
        from avseg.propagation import load_propagator

        options = self.options
        given = {"vocabulary": options.vocabulary, "clap_model": options.clap_model, "sam3_model": options.sam3_model}
        self.model_settings = apply_overrides({key: value for key, value in given.items() if value is not None}, options.set)
        self.cue_names = () if options.auto_cues else parse_cues(options.cues)
        per_video = check_video_cues(options.model, self.videos, self.cue_names, options.auto_cues)
        device = str(self.ranks.device(resolve_device(options.device)))
        cue_models = (lambda: load_cue_models(options.captioner, options.llm, device)) if options.auto_cues else None
        self.loaded = load_segmenter(
            options.model, self.cue_names, self.model_settings, device, cue_models, options.precision, options.compile, per_video, options.expression
        )
        self.model = model_identity(self.loaded.info, self.model_settings)
        source = Path(self.loaded.info["source"])
        self.propagator = load_propagator(options.propagator, source if source.is_dir() else None, {**self.loaded.info, "sam3_model": options.sam3_model}, device)

    def settings(self, video: CorpusVideo) -> dict[str, Any]:
        """The settings part of ``video``'s record (see :mod:`avseg.engine.corpus`)."""
        from dataclasses import asdict

        from avseg.models.zero_shot.vocabulary import load_vocabulary

        options = self.options
        if video.cues is not None or self.cue_names:
            cues: Any = list(video.cues if video.cues is not None else self.cue_names)
        elif options.auto_cues:
            from avseg.cues.captioner import DEFAULT_CAPTIONER
            from avseg.cues.llm import DEFAULT_LLM

            cues = {"auto": {"captioner": options.captioner or DEFAULT_CAPTIONER, "llm": options.llm or DEFAULT_LLM}}
        else:
            cues = None
        vocabulary = load_vocabulary(video.vocabulary) if video.vocabulary is not None else getattr(self.loaded.segmenter, "vocabulary", None)
        return {
            "rate": options.rate,
            "keyframes": options.keyframes,
            "propagator": options.propagator,
            "format": options.format,
            "window": options.window,
            "precision": self.loaded.inference.precision,
            "allow_silent": options.allow_silent,
            "cues": cues,
            "expression": options.expression,
            "vocabulary": [asdict(entry) for entry in vocabulary] if vocabulary is not None else None,
        }

    def expected(self, video: CorpusVideo) -> dict[str, Any]:
        return expected_record(video, self.model, self.settings(video))

    def plan(self) -> _Plan:
        """The first process's reading of the records: which videos are done already."""
        pending, skipped = [], {}
        for index, video in enumerate(self.videos):
            record = read_record(self.out / video.folder)
            if is_done(record, self.expected(video)):
                skipped[index] = index_row(video, "skipped", self.out, record.get("result"))
            else:
                pending.append(index)
        return _Plan(pending, skipped)

    def open(self, index: int) -> tuple[OpenedVideo, dict[str, Any]]:
        """Video ``index`` opened (in the opener's thread), with the record it will get (its file as it is now)."""
        video, options = self.videos[index], self.options
        expected = self.expected(video)
        channels = getattr(self.loaded.segmenter, "audio_channels", 1)
        opened = open_video(video.path, options.sampling, self.loaded.info["sample_rate"], options.window, self.propagator is not None, options.allow_silent, channels)
        return opened, expected

    def segment_shard(self, shard: list[int]) -> tuple[dict[int, dict[str, Any]], _Tally]:
        """This process's videos, each opened while the one before it runs; their rows by corpus index."""
        rows: dict[int, dict[str, Any]] = {}
        tally = _Tally(self.ranks.rank)
        show_bar = len(self.videos) > 1 or self.ranks.several
        bar = tqdm(total=len(shard), desc=f"rank {self.ranks.rank}" if self.ranks.several else "videos", unit="video", position=self.ranks.rank, disable=None if show_bar else True)
        started = time.perf_counter()
        with bar, ThreadPoolExecutor(1, thread_name_prefix="avseg-open") as opener:
            upcoming = opener.submit(self.open, shard[0]) if shard else None
            try:
                for position, index in enumerate(shard):
                    current = upcoming
                    upcoming = opener.submit(self.open, shard[position + 1]) if position + 1 < len(shard) else None
                    rows[index] = self.segment_one(self.videos[index], current, tally)
                    bar.update(1)
                    bar.set_postfix(failed=tally.failed, refresh=False)
            finally:
                _close_unused(upcoming)
        tally.seconds = time.perf_counter() - started
        return rows, tally

    def segment_one(self, video: CorpusVideo, opening: Future, tally: _Tally) -> dict[str, Any]:
        """One video: its row, done or failed (an :class:`OutputError`, or anything but an AvsegError, stops the run)."""
        options = self.options
        started = time.perf_counter()
        result: dict[str, Any] = {}

        def commit_record(folder: Path, masks: int) -> None:
            result.update(frames=masks, seconds=opened.timing.info.duration, time_spent_s=round(time.perf_counter() - started, 3))
            write_record(folder, expected, result)

        try:
            opened, expected = opening.result()
            with opened:
                folder = self.loaded.segment(
                    video.path, self.out, options.window, progress=not self.ranks.several, cues=video.cues, vocabulary=video.vocabulary,
                    sampling=options.sampling, propagator=self.propagator, mask_format=options.format, allow_silent=options.allow_silent,
                    opened=opened, on_complete=commit_record,
                )  # fmt: skip
        except OutputError:
            raise
        except AvsegError as error:
            tally.failed += 1
            tqdm.write(f"{self.prefix}avseg: error: {error}", file=sys.stderr)
            return index_row(video, "failed", self.out, {"time_spent_s": round(time.perf_counter() - started, 3)}, self.ranks.rank, str(error))
        tally.segmented += 1
        tally.frames += result["frames"]
        frames, seconds = result["frames"], result["time_spent_s"]
        masks = "masks" if options.format == "png" else "masks.jsonl"
        tqdm.write(f"{self.prefix}{video.path}: {frames} frame{'s' if frames != 1 else ''} in {seconds:.1f}s ({frames / max(seconds, 1e-9):.2f} frames/s); {masks}, overlay.mp4 and summary.json in {folder}", file=sys.stdout)
        return index_row(video, "done", self.out, result, self.ranks.rank)

    def close(self, tallies: list[_Tally], wall: float, skipped: int, failed: int) -> None:
        """The closing lines: one per process (when there are several), the total, and the count of failures."""
        lines = [f"rank {t.rank}: {_throughput(t.segmented, t.frames, t.seconds)}, {t.failed} failed" for t in tallies] if self.ranks.several else []
        segmented, frames = sum(t.segmented for t in tallies), sum(t.frames for t in tallies)
        processes = f" on {self.ranks.world} processes" if self.ranks.several else ""
        lines.append(f"total{processes}: {_throughput(segmented, frames, wall)}")
        reasons = f" (reasons in {self.out / FAILURES})" if failed else ""
        lines.append(f"{len(self.videos)} video{'s' if len(self.videos) != 1 else ''}: {segmented} segmented, {skipped} already done, {failed} failed{reasons}; index in {self.out / INDEX}")
        for line in lines:
            tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def _throughput(videos: int, frames: int, seconds: float) -> str:
    seconds = max(seconds, 1e-9)
    return f"{videos} video{'s' if videos != 1 else ''}, {frames} frames in {seconds:.1f} s ({videos / seconds * 3600:.0f} videos/h, {frames / seconds:.2f} frames/s)"


def _close_unused(opening: Future | None) -> None:
    """Close a video opened ahead that will not be segmented (the run stopped), so its decoder thread ends."""
    if opening is None or opening.cancel():
        return
    try:
        opened, _ = opening.result()
    except BaseException:  # noqa: BLE001 - its error no longer matters: the run is stopping for another reason
        return
    opened.close()


def check_video_cues(model: str, videos: Sequence[CorpusVideo], cues: Sequence[str], auto: bool) -> bool:
    """The cues and vocabularies of a ``--list``'s lines fit the model; whether the lines bring cues."""
    from avseg.engine.session import check_cues
    from avseg.models.registry import ZERO_SHOT_MODELS

    with_vocabulary = next((video for video in videos if video.vocabulary is not None), None)
    if with_vocabulary is not None and str(model) not in ZERO_SHOT_MODELS:
        raise ConfigError(f"{with_vocabulary.origin}: vocabulary: {model} takes no vocabulary (only zeroshot-sam3 does)")
    with_cues = next((video for video in videos if video.cues is not None), None)
    if with_cues is None:
        return False
    check_cues(model, with_cues.cues, option=f"{with_cues.origin}: cues")
    if not cues and not auto:
        without = next((video for video in videos if video.cues is None), None)
        if without is not None:
            raise ConfigError(f"{without}: TeSO segments with text cues: give this line cues, or pass --cues (or --cues auto) for the lines without")
    return True
