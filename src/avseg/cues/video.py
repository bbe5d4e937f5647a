"""TeSO's text cues for any video (``avseg segment --cues auto``).

The frames ``avseg segment`` samples (one per second, at the AVSBench instant) go through the same
pipeline and cache as a dataset's (:func:`~avseg.cues.pipeline.generate_cues`): each frame is
captioned, the LLM names what could sound, and the answers are cached per frame. The frames are
written as PNG files into the cache folder under the video's SHA-256, so the cache's image keys name
them, and the clip id is ``<stem>-<first 12 hex of the SHA-256>``: a re-encoded or edited video with
the same name gets its own cues, the same video reuses them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from avseg.cues.pipeline import CueStats, generate_cues, load_cues
from avseg.data.clip import Clip
from avseg.data.files import read_rgb
from avseg.data.reader import ClipRecord
from avseg.errors import MediaError
from avseg.files import file_sha256
from avseg.hub.locations import avseg_cache_dir, cache_folder
from avseg.media import iter_frames


def cue_cache_folder(captioner: Any, llm: Any) -> Path:
    """Where ``--cues auto`` caches the cues of every video: ``$AVSEG_CACHE/cues/<captioner>--<llm>``, one
    cache per pair of models (its manifest names them), outside the output folders that a run replaces."""
    names = "--".join(re.sub(r"[^\w.-]+", "_", str(getattr(model, "name", model)).strip("/"))[-60:] for model in (captioner, llm))
    return cache_folder(avseg_cache_dir() / "cues" / names)


class VideoFrames:
    """A one-clip reader (what :func:`generate_cues` reads) over a video's sampled frames, stored in ``root``."""

    def __init__(self, video: str | Path, root: str | Path):
        self.video = Path(video)
        self.root = Path(root)
        digest = file_sha256(self.video)[:12]
        frames = _sampled_frames(self.video, self.root / "frames" / digest)
        count = len(frames)
        record = ClipRecord(
            id=f"{self.video.stem}-{digest}", frames=tuple(frames), audio=self.video,
            masks=(None,) * count, mask_valid=(False,) * count, num_frames=count, meta={"video": str(self.video)},
        )  # fmt: skip
        self.records = [record]

    def load(self, record: ClipRecord) -> Clip:
        frames = np.stack([read_rgb(path) for path in record.frames])
        return Clip(frames=frames, waveform=np.zeros(0, dtype=np.float32), sample_rate=16000, meta={"id": record.id})


def _sampled_frames(video: Path, folder: Path) -> list[Path]:
    """The sampled frames as ``00000.png, ...``, written once (into a temporary folder renamed into place)."""
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            for index, sample in enumerate(iter_frames(video, "avsbench")):
                Image.fromarray(sample.image).save(temporary / f"{index:05d}.png")
            os.replace(temporary, folder)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    frames = sorted(folder.glob("*.png"))
    if not frames:
        raise MediaError(video, "is shorter than its first sampling instant (15/16 of a second); nothing to caption")
    return frames


def video_cues(video: str | Path, cache: str | Path, captioner: Any, llm: Any, batch_size: int = 8) -> tuple[list[list[str]], CueStats]:
    """One list of cue names per sampled second of ``video``, generated once and cached in ``cache``."""
    frames = VideoFrames(video, cache)
    stats = generate_cues(frames, cache, captioner, llm, batch_size)
    return load_cues(cache)[frames.records[0].id], stats


class PerSecondCues:
    """A TeSO segmenter fed each window's own cues: ``avseg segment`` streams a video's windows in order
    (one frame per second), or names in ``clip.meta["seconds"]`` the second each frame falls in (dense rates;
    a frame past the last sampled second takes that second's cues)."""

    def __init__(self, segmenter: Any, cues: Sequence[Sequence[str]]):
        self.segmenter = segmenter
        self.cues = list(cues)
        self.seconds_done = 0

    @torch.no_grad()
    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]:
        logits = []
        for clip in clips:
            seconds = clip.meta.get("seconds", range(self.seconds_done, self.seconds_done + clip.num_frames))
            window = [self.cues[min(second, len(self.cues) - 1)] for second in seconds] if self.cues else []
            self.segmenter.cues = {clip.id: window}
            self.seconds_done += clip.num_frames
            logits += self.segmenter.predict([clip])
        return logits
