"""Opening the dataset a recipe names (and writing the synthetic one when asked to)."""

from __future__ import annotations

from pathlib import Path

from avseg.config import DataConfig
from avseg.data.reader import ClipReader

LAYOUTS = ("s4", "ms3", "avss", "refavs")


def reader_class(layout: str) -> type[ClipReader]:
    from avseg.data.avsbench import AVSS, MS3, S4
    from avseg.data.refavs import RefAVS
    from avseg.errors import ConfigError

    readers = dict(zip(LAYOUTS, (S4, MS3, AVSS, RefAVS)))
    if layout not in readers:
        raise ConfigError(f"data.layout: unknown layout {layout!r} (use {', '.join(readers)})")
    return readers[layout]


def prepare_dataset(data: DataConfig) -> None:
    """Write the synthetic dataset at ``data.root`` if the recipe asks for one and it is not there yet."""
    from avseg.data.synthetic import OBJECTS_FILE, write_dataset

    if data.synthetic_videos > 0 and not (Path(data.root) / OBJECTS_FILE).is_file():
        fps = data.synthetic_fps or None
        write_dataset(data.layout, data.root, data.synthetic_videos, seed=0, size=data.synthetic_size, fps=fps, motion=data.synthetic_motion)


def open_split(data: DataConfig, split: str) -> ClipReader:
    """The split's reader; on the synthetic benchmark, with its record of what sounds as the readers'
    fallback for sounding labels (MS3's files name no category)."""
    from avseg.data.synthetic import OBJECTS_FILE, attach_sounding_labels
    from avseg.errors import ConfigError

    options = {}
    if data.foreground:
        if data.layout != "avss":
            raise ConfigError(f"data.foreground: only for the avss layout ({data.layout} masks are binary already)")
        options["foreground"] = True
    reader = reader_class(data.layout)(data.root, split=split, sample_rate=data.sample_rate, channels=data.channels, **options)
    return attach_sounding_labels(reader) if (reader.root / OBJECTS_FILE).is_file() else reader
