"""What every dataset reader shares: a record of file paths per clip, and one loader.

A subset reader (S4, MS3, AVSS, Ref-AVS) only knows its metadata file and its
path scheme: it turns each metadata row into a :class:`ClipRecord`. Loading a
record into a :class:`~avseg.data.clip.Clip` (decoding frames, masks and audio,
padding, flags) happens here, once, for all of them, and so does the clip's
``meta["sounding_labels"]`` (per frame, the names of the sounding categories),
from the subset's :meth:`ClipReader.sounding_labels` or, for a layout whose
files name no category, from ``label_source`` (the synthetic benchmark's
record of what sounds, :func:`avseg.data.synthetic.attach_sounding_labels`), and, where a dataset
records what is *visible* (the synthetic benchmark), ``meta["visible_labels"]`` from ``visible_source``
(off-screen audio must not name a visible object). The synthetic benchmark
writes its files to the paths these same records name, so the readers are what
the tests exercise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from avseg.data.clip import Clip
from avseg.data.files import read_binary_mask, read_rgb, resize
from avseg.errors import ConfigError, DatasetError, MediaError
from avseg.media import read_audio, read_audio_channels


def _pixels(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


@dataclass(frozen=True)
class ClipRecord:
    """Where one clip's files are, and which frames carry annotations.

    ``masks[k]`` is the mask file of real frame ``k``; None with
    ``mask_valid[k]`` True means "annotated, and empty" (Ref-AVS null rows
    ship no mask), None with ``mask_valid[k]`` False means "not annotated".
    Frames past ``len(frames)`` up to ``num_frames`` are padding.
    """

    id: str
    frames: tuple[Path, ...]
    audio: Path
    masks: tuple[Path | None, ...]
    mask_valid: tuple[bool, ...]
    num_frames: int
    meta: dict[str, Any] = field(default_factory=dict)


class ClipReader(Sequence[Clip]):
    """A sequence of clips read from one split of a dataset on disk.

    Args:
        root: the dataset folder (see each subclass for what it must hold).
        split: which split to read; None reads every row.
        sample_rate: resample audio to this rate; the file's own rate if None.
        size: resize frames (bilinear) and masks (nearest) to ``(width, height)``
            after checking that each mask has its frame's stored size.
        channels: 2 also keeps the audio's own channels in ``clip.channels`` (decoded once more; the mono
            ``waveform`` stays exactly as with 1).
    """

    splits: tuple[str, ...] = ("train", "val", "test")
    num_classes: int = 2

    def __init__(
        self,
        root: str | Path,
        split: str | None = "test",
        sample_rate: int | None = None,
        size: tuple[int, int] | None = None,
        channels: int = 1,
    ):
        self.channels = channels
        if split is not None and split not in self.splits:
            raise ConfigError(f"unknown split {split!r} for {type(self).__name__}; choose from {', '.join(self.splits)}")
        self.root = self.resolve_root(Path(root))
        self.split = split
        self.sample_rate = sample_rate
        self.size = size
        self.records = [r for r in self.read_records() if split is None or r.meta["split"] == split]
        self.label_source: dict[str, list[list[str]]] | None = None
        self.visible_source: dict[str, list[list[str]]] | None = None
        """Per clip id, the sounding names of each real frame, for a layout whose files name none."""

    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        if not root.is_dir():
            raise DatasetError(root, "dataset folder does not exist")
        return root

    def read_records(self) -> list[ClipRecord]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        return self.load(self.records[index])

    def __iter__(self) -> Iterator[Clip]:
        for record in self.records:
            yield self.load(record)

    def load(self, record: ClipRecord) -> Clip:
        frames = self.read_frames(record)
        masks = np.zeros((record.num_frames, *frames.shape[1:3]), dtype=np.uint8)
        for k, path in enumerate(record.masks):
            if path is not None:
                mask = self.read_mask(path)
                if mask.shape != frames.shape[1:3]:
                    raise DatasetError(path, f"mask is {_pixels(mask.shape)} but its frame {record.frames[k].name} is {_pixels(frames.shape[1:3])}")
                masks[k] = mask
        meta = dict(record.meta, id=record.id)
        labels = self.sounding_labels(record, masks)
        if labels is None and self.label_source is not None and record.id in self.label_source:
            labels = [list(names) for names in self.label_source[record.id]]
        if labels is not None:
            meta["sounding_labels"] = labels + [[] for _ in range(record.num_frames - len(labels))]
        if self.visible_source is not None and record.id in self.visible_source:
            meta["visible_labels"] = [list(names) for names in self.visible_source[record.id]]
        if self.size is not None:
            frames = np.stack([resize(frame, self.size, Image.BILINEAR) for frame in frames])
            masks = np.stack([resize(mask, self.size, Image.NEAREST) for mask in masks])
        try:
            waveform, rate = read_audio(record.audio, self.sample_rate)
            channels = read_audio_channels(record.audio, self.sample_rate)[0] if self.channels == 2 else None
        except MediaError as exc:
            raise DatasetError(record.audio, str(exc).removeprefix(f"{record.audio}: ")) from None
        height, width = frames.shape[1:3]
        padding = record.num_frames - len(frames)
        frame_valid = np.arange(record.num_frames) < len(frames)
        if padding:
            frames = np.concatenate([frames, np.zeros((padding, height, width, 3), dtype=np.uint8)])
        mask_valid = np.zeros(record.num_frames, dtype=bool)
        mask_valid[: len(record.mask_valid)] = record.mask_valid
        return Clip(frames, waveform, rate, masks, mask_valid, frame_valid, meta, channels)

    def sounding_labels(self, record: ClipRecord, masks: np.ndarray) -> list[list[str]] | None:
        """Per real frame, the names of the categories that sound in it (the masks are the label maps
        as read); None where the dataset does not say."""
        return None

    def read_frames(self, record: ClipRecord) -> np.ndarray:
        """The clip's frames at their stored size, which must be one size for the whole clip."""
        frames = [read_rgb(path) for path in record.frames]
        for path, frame in zip(record.frames[1:], frames[1:]):
            if frame.shape != frames[0].shape:
                raise DatasetError(path, f"frame is {_pixels(frame.shape)} but {record.frames[0].name} of the same clip is {_pixels(frames[0].shape)}")
        return np.stack(frames)

    def read_mask(self, path: Path) -> np.ndarray:
        """The mask at ``path`` as uint8 ``(H, W)``. It must have its frame's stored size: the
        official loaders never resize masks, so any other size is a broken annotation, not
        something to stretch."""
        return read_binary_mask(path)

    def check(self) -> dict[str, int]:
        """Load every clip (raising on the first bad file) and count what was found."""
        stats = {"clips": 0, "frames": 0, "annotated_frames": 0, "empty_masks": 0, "empty_clips": 0}
        for clip in self:
            annotated = clip.masks[clip.mask_valid]
            empty = ~annotated.reshape(len(annotated), -1).any(1)
            stats["clips"] += 1
            stats["frames"] += int(clip.frame_valid.sum())
            stats["annotated_frames"] += len(annotated)
            stats["empty_masks"] += int(empty.sum())
            stats["empty_clips"] += int(len(annotated) > 0 and empty.all())
        return stats
