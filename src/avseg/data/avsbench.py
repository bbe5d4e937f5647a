"""AVSBench readers: S4 (single source), MS3 (multi-source) and AVSS (semantic).

Layouts and annotation rules are the official ones:

* **S4** (``Single-source/``): ``s4_meta_data.csv`` (``name, start, category,
  split``; as in the official loader, name and category are taken by position
  and split by its header); ``s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png``,
  ``s4_data/gt_masks/...`` alike, ``s4_data/audio_wav/{split}/{category}/{name}.wav``.
  Train clips carry only mask 1 (the first frame); val and test carry 5.
* **MS3** (``Multi-sources/``): ``ms3_meta_data.csv`` (``name, split``; the
  name by position, the split by its header); frames at
  ``ms3_data/visual_frames/{name}/{name}.mp4_{1..5}.png`` (no split folder, and
  the ``.mp4_`` is really in the file names), masks at
  ``ms3_data/gt_masks/{split}/{name}/{name}_{1..5}.png``, audio at
  ``ms3_data/audio_wav/{split}/{name}.wav``. All 5 masks in every split. Masks
  are palette PNGs; the official loader never binarises them explicitly, we
  take non-zero as foreground (see :mod:`avseg.data.files`).
* **AVSS** (AVSBench-semantic): ``metadata.csv`` (``vid, uid, s_min, s_sec,
  a_obj, split, label``, read by name), ``label2idx.json`` (71 names in class
  order, background first); per clip ``{label}/{uid}/frames/{i}.jpg``,
  ``labels_rgb/{i}.png`` (0-indexed) and ``audio.wav``. v1s and v1m clips have
  5 frames, v2 clips 10; every clip is padded to 10 frames, with
  ``frame_valid`` marking the real ones. Only frame 0 of a v1s *train* clip is
  annotated (the official ``gt_temporal_mask_flag``). Colour masks map to class
  indices through the PASCAL-VOC bit-interleaved palette; unknown colours are
  background.

Sounding labels (``clip.meta["sounding_labels"]``, for TeSO's InfoNCE):

* **S4**: the clip's category from the csv, on every real frame (one source
  sounds through the whole clip).
* **AVSS**: per frame, the classes present in its label map (background
  excluded); frames without an annotation (v1s train frames 2-5) name none.
* **MS3**: none. Its csv has no category column and its masks are binary. The
  frame's text cues are not used instead: they name what *could* sound (every
  visible candidate), and taking them as positives would pull the audio
  embedding towards silent objects, the preference TeSO is meant to fight.
  MS3 clips therefore train without the InfoNCE term; the same videos with
  per-frame classes are AVSBench-semantic's ``v1m`` subset.

Where the official code differs from what is done here, and why:

* The official AVSS loader pads frames with zeros *after* normalisation (the
  mean colour) and includes padded frames in its test metric. We pad with
  black frames, flag them, and leave it to the evaluator to skip them.
* The official loaders resize nothing at read time (frames were resized to
  224x224 when extracted); ``size=`` here resizes on request. A mask whose
  size differs from its frame's is an error, never stretched.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from avseg.data.clip import Clip
from avseg.data.files import read_color_mask, read_csv, require_file
from avseg.data.reader import ClipReader, ClipRecord
from avseg.errors import DatasetError

S4_FRAMES = 5
AVSS_FRAMES = 10
AVSS_SUBSET_FRAMES = {"v1s": 5, "v1m": 5, "v2": 10}


def mask_image_files(subset: str, root: Path, split: str, name: str, frames: int, category: str = "") -> tuple[str, ...]:
    """Where the published mask images (what VCT reads, :mod:`avseg.models.vct.mask_images`) sit beside an AVSBench
    clip (the model checks they exist). S4 and MS3: VCT's own 384 copies where ``generate_data_384`` wrote them (made
    from AVSBench-semantic's frame-resolution images, what the release trains and tests on), else COMBO's:

    - S4: ``s4_data_384/pre_SAM_mask_384/{split}/{category}/{name}/{name}_{k}_mask_color.png``, else
      ``s4_data/pre_SAM_mask/{split}/{category}/{name}/{name}_{k}_mask_color.png`` (k = 1..5; COMBO's are 224 x 224)
    - MS3: ``ms3_data_384/pre_SAM_mask_384/{name}/{name}_{k}_mask_color.png``, else
      ``ms3_data/pre_SAM_mask/{name}/{name}.mp4_{k}_mask_color.png`` (k = 1..5)
    - AVSS: ``pre_SAM_mask/AVSBench_semantic/{subset}/{uid}/frames/{i}_mask_color.png`` (i from 0; the VCT release's
      ``s4_process.py`` reads ``frames/``, COMBO's reader ``processed_frames/``: the first that exists)."""
    if subset in ("s4", "ms3"):
        clip_folder = Path(split, category, name) if subset == "s4" else Path(name)
        vct = root / f"{subset}_data_384" / "pre_SAM_mask_384" / clip_folder
        if vct.is_dir():
            return tuple(str(vct / f"{name}_{k}_mask_color.png") for k in range(1, frames + 1))
        combo = root / f"{subset}_data" / "pre_SAM_mask" / clip_folder
        stem = name if subset == "s4" else f"{name}.mp4"
        return tuple(str(combo / f"{stem}_{k}_mask_color.png") for k in range(1, frames + 1))
    base = root / "pre_SAM_mask" / "AVSBench_semantic" / subset / name
    folder = next((base / sub for sub in ("frames", "processed_frames") if (base / sub).is_dir()), base / "frames")
    return tuple(str(folder / f"{i}_mask_color.png") for i in range(frames))


def _find_root(root: Path, marker: str, conventional: str) -> Path:
    """Accept the folder holding ``marker`` or its parent holding ``conventional/marker``."""
    if (root / marker).is_file():
        return root
    if (root / conventional / marker).is_file():
        return root / conventional
    if not root.is_dir():
        raise DatasetError(root, "dataset folder does not exist")
    raise DatasetError(root / marker, "missing file")


class S4(ClipReader):
    """AVSBench single-source (S4). ``root`` is ``Single-source/`` or its parent."""

    meta_file = "s4_meta_data.csv"

    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        return _find_root(root, cls.meta_file, "Single-source")

    def read_records(self) -> list[ClipRecord]:
        # The official loader reads name and category by position (0 and 2), split by name.
        rows = read_csv(self.root / self.meta_file, ["name", "category", "split"], positions={"name": 0, "category": 2})
        return [self.record(self.root, row) for row in rows]

    @staticmethod
    def record(root: Path, row: dict[str, str]) -> ClipRecord:
        name, category, split = row["name"], row["category"], row["split"]
        data = root / "s4_data"
        frames_dir = data / "visual_frames" / split / category / name
        masks_dir = data / "gt_masks" / split / category / name
        annotated = 1 if split == "train" else S4_FRAMES
        return ClipRecord(
            id=name,
            frames=tuple(frames_dir / f"{name}_{k}.png" for k in range(1, S4_FRAMES + 1)),
            audio=data / "audio_wav" / split / category / f"{name}.wav",
            masks=tuple(masks_dir / f"{name}_{k}.png" if k <= annotated else None for k in range(1, S4_FRAMES + 1)),
            mask_valid=tuple(k <= annotated for k in range(1, S4_FRAMES + 1)),
            num_frames=S4_FRAMES,
            meta={"subset": "s4", "split": split, "category": category, "mask_image_files": mask_image_files("s4", root, split, name, S4_FRAMES, category)},
        )

    def sounding_labels(self, record: ClipRecord, masks: np.ndarray) -> list[list[str]]:
        return [[record.meta["category"]] for _ in record.frames]


class MS3(ClipReader):
    """AVSBench multi-source (MS3). ``root`` is ``Multi-sources/`` or its parent."""

    meta_file = "ms3_meta_data.csv"

    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        return _find_root(root, cls.meta_file, "Multi-sources")

    def read_records(self) -> list[ClipRecord]:
        rows = read_csv(self.root / self.meta_file, ["name", "split"], positions={"name": 0})
        return [self.record(self.root, row) for row in rows]

    @staticmethod
    def record(root: Path, row: dict[str, str]) -> ClipRecord:
        name, split = row["name"], row["split"]
        data = root / "ms3_data"
        return ClipRecord(
            id=name,
            frames=tuple(data / "visual_frames" / name / f"{name}.mp4_{k}.png" for k in range(1, S4_FRAMES + 1)),
            audio=data / "audio_wav" / split / f"{name}.wav",
            masks=tuple(data / "gt_masks" / split / name / f"{name}_{k}.png" for k in range(1, S4_FRAMES + 1)),
            mask_valid=(True,) * S4_FRAMES,
            num_frames=S4_FRAMES,
            meta={"subset": "ms3", "split": split, "mask_image_files": mask_image_files("ms3", root, split, name, S4_FRAMES)},
        )


def voc_palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 PASCAL-VOC colours: bits of the class index interleaved into R, G, B."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(num_classes):
        code, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((code >> channel) & 1) << shift
            code >>= 3
            if code == 0:
                break
        palette[index] = colour
    return palette


class AVSS(ClipReader):
    """AVSBench-semantic (AVSS): 71 classes, clips padded to 10 frames.

    ``subsets`` restricts the rows to some of ``v1s``, ``v1m``, ``v2``. ``foreground``: the masks become binary
    (every class > 0 is 1, ``num_classes`` 2), as AuralSAM2's release trains and scores AVSBench-semantic
    (``avs.code/v2.code``: ``label > 0``); the clips' sounding labels still name the classes.
    """

    meta_file = "metadata.csv"
    label_file = "label2idx.json"

    def __init__(self, root, split="test", sample_rate=None, size=None, subsets=("v1s", "v1m", "v2"), channels=1, foreground=False):
        self.subsets = tuple(subsets)
        super().__init__(root, split, sample_rate, size, channels)
        self.class_names = read_class_names(self.root / self.label_file)
        self.palette = voc_palette(len(self.class_names))
        self.foreground = foreground
        self.num_classes = 2 if foreground else len(self.class_names)

    def load(self, record: ClipRecord) -> Clip:
        clip = super().load(record)
        return replace(clip, masks=(clip.masks > 0).astype(np.uint8)) if self.foreground else clip

    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        return _find_root(root, cls.meta_file, "AVSBench-semantic")

    def read_records(self) -> list[ClipRecord]:
        rows = read_csv(self.root / self.meta_file, ["uid", "split", "label"])
        for line, row in enumerate(rows, start=2):
            if row["label"] not in AVSS_SUBSET_FRAMES:
                raise DatasetError(self.root / self.meta_file, f"line {line}: unknown label {row['label']!r} (expected v1s, v1m or v2)")
        return [self.record(self.root, row) for row in rows if row["label"] in self.subsets]

    @staticmethod
    def record(root: Path, row: dict[str, str]) -> ClipRecord:
        uid, split, subset = row["uid"], row["split"], row["label"]
        folder = root / subset / uid
        count = AVSS_SUBSET_FRAMES[subset]
        annotated = 1 if (subset == "v1s" and split == "train") else count
        return ClipRecord(
            id=uid,
            frames=tuple(folder / "frames" / f"{i}.jpg" for i in range(count)),
            audio=folder / "audio.wav",
            masks=tuple(folder / "labels_rgb" / f"{i}.png" if i < annotated else None for i in range(count)),
            mask_valid=tuple(i < annotated for i in range(count)),
            num_frames=AVSS_FRAMES,
            meta={
                "subset": subset,
                "split": split,
                "vid": row.get("vid", ""),
                "sounding": row.get("a_obj", ""),
                "mask_image_files": mask_image_files(subset, root, split, uid, count),
            },
        )

    def read_mask(self, path: Path) -> np.ndarray:
        return read_color_mask(path, self.palette)

    def sounding_labels(self, record: ClipRecord, masks: np.ndarray) -> list[list[str]]:
        return [[self.class_names[c] for c in np.unique(masks[k]) if c > 0] for k in range(len(record.frames))]


def read_class_names(path: Path) -> list[str]:
    """Class names in index order from ``label2idx.json`` (background is index 0)."""
    require_file(path)
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"invalid JSON ({exc})") from None
    if not isinstance(mapping, dict) or not mapping:
        raise DatasetError(path, "expected a non-empty JSON object of class name -> index")
    values = list(mapping.values())
    if not all(isinstance(v, int) for v in values) or sorted(values) != list(range(min(values), min(values) + len(values))):
        raise DatasetError(path, "class indices must be consecutive integers")
    return sorted(mapping, key=mapping.__getitem__)
