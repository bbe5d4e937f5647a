"""Segment one video with one model under one audio condition, as ``avseg segment`` does.

:func:`load_segmenter` holds the checks and calls of ``avseg segment`` (which
model takes cues, which takes a vocabulary), so the web app and the command
line cannot drift apart; :meth:`LoadedSegmenter.segment` runs
:func:`avseg.engine.segment.segment_video` on a video, or on a copy of it whose
audio is muted or taken from another clip (the video stream is copied, not
re-encoded, so the model sees the same frames under every condition).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from avseg.app.inputs import audio_condition_copy
from avseg.engine.segment import fixed_cues, segment_video
from avseg.errors import ConfigError


@dataclass
class LoadedSegmenter:
    """A model ready to segment videos: the system's segmenter, its info and the TeSO cue names."""

    segmenter: Any
    info: dict[str, Any]
    cue_names: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.info['model']} ({self.info['source']})"

    def segment(
        self,
        video: str | Path,
        out_root: str | Path,
        window: int = 5,
        audio: str | Path | None = None,
        progress: bool = True,
    ) -> Path:
        """``avseg segment`` on ``video`` into ``out_root/<stem>``. ``audio``: None keeps the video's own
        audio, ``"mute"`` silences it, a file path puts that file's audio in its place (cut or looped
        to the video's length); the summary then records the condition."""
        video = Path(video)
        if self.cue_names:
            self.segmenter.cues = fixed_cues(self.cue_names, video.stem, window)
        if audio is None:
            return segment_video(self.segmenter, video, out_root, self.info["sample_rate"], self.label, window, progress=progress)
        with tempfile.TemporaryDirectory(prefix="avseg-audio-") as folder:
            copy = audio_condition_copy(video, Path(folder) / video.name, audio, self.info["sample_rate"])
            out = segment_video(self.segmenter, copy, out_root, self.info["sample_rate"], self.label, window, progress=progress)
        summary_path = out / "summary.json"
        summary = json.loads(summary_path.read_text())
        summary.update(video=str(video), audio="muted" if audio == "mute" else f"swapped with {Path(audio).name}")
        summary_path.write_text(json.dumps(summary, indent=1))
        return out


def parse_cues(text: str | None) -> tuple[str, ...]:
    """``"guitar, man"`` -> ``("guitar", "man")`` (empty names dropped)."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def check_cues(model: str | Path, cues: Sequence[str], option: str = "--cues") -> str:
    """The model's kind, once the cues fit it: TeSO needs them, the others take none (``option`` names
    the field in the messages)."""
    from avseg.models.registry import ZERO_SHOT_MODELS, read_system_info

    zero_shot = str(model) in ZERO_SHOT_MODELS
    if zero_shot and cues:
        vocabulary = "--vocabulary" if option.startswith("--") else "vocabulary"
        raise ConfigError(f"{option}: {model} hears which objects sound; give it a {vocabulary} instead")
    model_name = str(model) if zero_shot else read_system_info(model)["model"]
    if model_name == "teso" and not cues:
        raise ConfigError(f"TeSO segments with text cues: pass {option} 'guitar,man' (the objects that could sound)")
    if model_name != "teso" and cues:
        raise ConfigError(f"{option}: {model_name} takes no text cues (only TeSO does)")
    return model_name


def load_segmenter(
    model: str | Path,
    cues: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    device: str = "auto",
) -> LoadedSegmenter:
    """The checks and loading of ``avseg segment``: a trained model folder (TeSO needs ``cues``, the
    others take none) or a zero-shot model name (``settings``: its config fields, e.g. ``vocabulary``)."""
    from avseg.engine.train import resolve_device
    from avseg.models.registry import load_system

    check_cues(model, cues)
    system, info = load_system(model, cues={}, settings=settings or {})
    return LoadedSegmenter(system.segmenter(resolve_device(device)), info, tuple(cues))


def run_segment(
    model: str | Path,
    video: str | Path,
    out_root: str | Path,
    cues: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    audio: str | Path | None = None,
    window: int = 5,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Load ``model`` and segment one ``video`` into ``out_root/<stem>`` (see :meth:`LoadedSegmenter.segment`)."""
    return load_segmenter(model, cues, settings, device).segment(video, out_root, window, audio, progress)


def mask_agreement(first: str | Path, second: str | Path) -> list[float]:
    """Per frame, the IoU (J) of the masks of two results of the same video; two empty masks agree (1)."""
    masks = [sorted((Path(folder) / "masks").glob("*.png")) for folder in (first, second)]
    if len(masks[0]) != len(masks[1]):
        raise ValueError(f"{first} and {second} have {len(masks[0])} and {len(masks[1])} masks")
    scores = []
    for a, b in zip(*masks):
        mask_a, mask_b = (np.asarray(Image.open(path)) > 0 for path in (a, b))
        union = (mask_a | mask_b).sum()
        scores.append(1.0 if union == 0 else float((mask_a & mask_b).sum() / union))
    return scores
