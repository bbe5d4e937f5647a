"""Ref-AVS reader: referring audio-visual segmentation, with its null subset.

Layout (official): ``metadata.csv`` with ``vid, uid, split, fid, exp``;
``media/{folder}/frames/{0..9}.jpg``, ``media/{folder}/audio.wav`` and
``gt_mask/{folder}/fid_{fid}/0000{i}.png``. Each row is one sample: a clip, an
expression and the object (``fid``) it refers to. Splits are ``train``,
``val``, ``test_s`` (seen), ``test_u`` (unseen) and ``test_n`` (null).

Decisions, following the official loader where it is right:

* The media folder is ``uid.rsplit('_', 2)[0]``, as the official loader
  computes it; null rows (``null_c-{vid}_null_k``, ``null_m-...``) live in their
  own ``null_*`` folders. When that folder does not exist we fall back to the
  ``vid`` column.
* Null rows (uid starting with ``null_``, every ``test_n`` row, and some train
  and val rows) refer to nothing: their right answer is an empty mask by
  definition, so their mask files are not read (the release ships all-zero
  ones; a null row that falls back to the ``vid`` folder must not pick up
  object ``fid``'s real mask there).
* Masks are binarised with ``> 0`` at their stored resolution. The official
  loader first resizes them bilinearly to 256x256, which slightly dilates
  edges; we do not. A mask must have its frame's size (it was drawn on that
  frame); any other size is reported, not stretched.
* Rows whose split is not one of the five (the release has 25 ``TODO`` rows)
  are skipped.
* Sounding labels (``clip.meta["sounding_labels"]``, for TeSO's InfoNCE): the
  referred object's category, the middle field of ``uid``
  (``{folder}_{category}_{k}``, the same split that gives the media folder),
  on the frames where its mask is not empty; null rows name none.
"""

from __future__ import annotations

from pathlib import Path

from avseg.data.files import read_csv
from avseg.data.reader import ClipReader, ClipRecord
from avseg.errors import DatasetError

REFAVS_FRAMES = 10
REFAVS_SPLITS = ("train", "val", "test_s", "test_u", "test_n")


class RefAVS(ClipReader):
    """Ref-AVS. ``root`` holds ``metadata.csv``, ``media/`` and ``gt_mask/``."""

    splits = REFAVS_SPLITS
    meta_file = "metadata.csv"

    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        if not (root / cls.meta_file).is_file():
            if not root.is_dir():
                raise DatasetError(root, "dataset folder does not exist")
            raise DatasetError(root / cls.meta_file, "missing file")
        return root

    def read_records(self) -> list[ClipRecord]:
        rows = read_csv(self.root / self.meta_file, ["vid", "uid", "split", "fid", "exp"])
        records = []
        for line, row in enumerate(rows, start=2):
            if row["split"] not in REFAVS_SPLITS:
                continue
            if not row["fid"].isdigit():
                raise DatasetError(self.root / self.meta_file, f"line {line}: fid must be an integer, got {row['fid']!r}")
            records.append(self.record(self.root, row, line))
        return records

    @staticmethod
    def media_folder(root: Path, row: dict[str, str]) -> str:
        folder = row["uid"].rsplit("_", 2)[0]
        return folder if (root / "media" / folder).is_dir() else row["vid"]

    @staticmethod
    def record(root: Path, row: dict[str, str], line: int = 0) -> ClipRecord:
        folder = RefAVS.media_folder(root, row)
        is_null = row["uid"].startswith("null_") or row["split"] == "test_n"
        mask_dir = root / "gt_mask" / folder / f"fid_{int(row['fid'])}"
        masks = tuple(None if is_null else mask_dir / f"{i:05d}.png" for i in range(REFAVS_FRAMES))
        return ClipRecord(
            id=row["uid"],
            frames=tuple(root / "media" / folder / "frames" / f"{i}.jpg" for i in range(REFAVS_FRAMES)),
            audio=root / "media" / folder / "audio.wav",
            masks=masks,
            mask_valid=(True,) * REFAVS_FRAMES,
            num_frames=REFAVS_FRAMES,
            meta={
                "subset": "refavs",
                "split": row["split"],
                "uid": row["uid"],
                "vid": row["vid"],
                "object_id": int(row["fid"]),
                "expression": row["exp"],
                "null": is_null,
                "row": line,
            },
        )

    def sounding_labels(self, record: ClipRecord, masks) -> list[list[str]]:
        parts = record.meta["uid"].rsplit("_", 2)
        if record.meta["null"] or len(parts) < 3:
            return [[] for _ in record.frames]
        return [[parts[1]] if masks[k].any() else [] for k in range(len(record.frames))]
