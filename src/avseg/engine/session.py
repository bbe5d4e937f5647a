"""Segment videos with one model under one audio condition: what ``avseg segment`` and ``avseg app`` run.

:func:`load_segmenter` holds the checks and loading of ``avseg segment`` (a
folder, a name of ``avseg models`` or a hub repo; which model takes cues, which
takes a vocabulary), so the web app and the command line cannot drift apart; :meth:`LoadedSegmenter.segment` runs
:func:`avseg.engine.segment.segment_video` on a video, or on a copy of it whose
audio is muted or taken from another clip (the video stream is copied, not
re-encoded, so the model sees the same frames under every condition).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from avseg.engine.precision import Inference
from avseg.engine.segment import fixed_cues, segment_video
from avseg.errors import ConfigError
from avseg.files import write_json
from avseg.media import audio_condition_copy


@dataclass
class LoadedSegmenter:
    """A model ready to segment videos: the system's segmenter, its info, and TeSO's cues: typed names, or
    ``cue_models`` (a captioner and an LLM) that make each video's cues (``--cues auto``)."""

    segmenter: Any
    info: dict[str, Any]
    cue_names: tuple[str, ...] = ()
    cue_models: tuple[Any, Any] | None = None
    inference: Inference | None = None
    """Precision and compilation (``--precision``, ``--compile``); None runs the segmenter as it is."""
    system: Any = None
    """What the segmenter was made from: a zero-shot system makes one for another vocabulary (:meth:`segmenter_for`)."""
    vocabularies: dict[str, Any] = field(default_factory=dict)
    """The segmenters made for other vocabularies, by their ``--vocabulary`` text."""

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
        cues: Sequence[str] | None = None,
        vocabulary: str | None = None,
        **options: Any,
    ) -> Path:
        """``avseg segment`` on ``video`` into ``out_root/<stem>``. ``audio``: None keeps the video's own
        audio, ``"mute"`` silences it, a file path puts that file's audio in its place (cut or looped
        to the video's length); the summary then records the condition. ``cues``, ``vocabulary``: this video's
        own (a ``--list`` line's), instead of those the model was loaded with. ``options``: ``sampling``,
        ``propagator``, ``mask_format``, ``video_name``, ``allow_silent``, ``opened`` and ``on_complete`` of
        :func:`~avseg.engine.segment.segment_video`."""
        video = Path(video)
        segmenter = self.segmenter_for(vocabulary)
        names = tuple(cues) if cues is not None else self.cue_names
        if names:
            segmenter.cues = fixed_cues(names, video.stem, window)
        runner = auto_cue_segmenter(segmenter, video, *self.cue_models) if self.cue_models and cues is None else segmenter
        if self.inference is not None:
            runner = self.inference.wrap(runner)
        if audio is None:
            return segment_video(runner, video, out_root, self.info["sample_rate"], self.label, window, progress=progress, **options)
        with tempfile.TemporaryDirectory(prefix="avseg-audio-") as folder:
            copy = audio_condition_copy(video, Path(folder) / video.name, audio, self.info["sample_rate"])
            out = segment_video(runner, copy, out_root, self.info["sample_rate"], self.label, window, progress=progress, **options)
        summary_path = out / "summary.json"
        summary = json.loads(summary_path.read_text())
        summary.update(video=options.get("video_name") or str(video), audio="muted" if audio == "mute" else f"swapped with {Path(audio).name}")
        write_json(summary_path, summary)
        return out


    def segmenter_for(self, vocabulary: str | None) -> Any:
        """The segmenter, or (zero-shot) one listening for and prompting ``vocabulary`` instead, made once per
        vocabulary from the same loaded networks."""
        if vocabulary is None:
            return self.segmenter
        if not hasattr(self.system, "with_vocabulary"):
            raise ConfigError(f"vocabulary: {self.info['model']} takes no vocabulary (only zeroshot-sam3 does)")
        if vocabulary not in self.vocabularies:
            device = self.inference.device if self.inference is not None else "cpu"
            self.vocabularies[vocabulary] = self.system.with_vocabulary(vocabulary).segmenter(device)  # its networks are prepared already
        return self.vocabularies[vocabulary]


def load_cue_models(captioner: str | None = None, llm: str | None = None, device: str = "auto") -> tuple[Any, Any]:
    """The captioner and LLM of ``avseg cues`` (defaults when None), for ``--cues auto``."""
    from avseg.cues.captioner import DEFAULT_CAPTIONER, Captioner
    from avseg.cues.llm import DEFAULT_LLM, CueLLM
    from avseg.engine.train import resolve_device

    device = str(resolve_device(device))
    return Captioner.from_pretrained(captioner or DEFAULT_CAPTIONER, device=device), CueLLM.from_pretrained(llm or DEFAULT_LLM, device=device)


def auto_cue_segmenter(segmenter: Any, video: Path, captioner: Any, llm: Any) -> Any:
    """``segmenter`` with the cues of ``video``'s own frames (captioned, then named by the LLM; cached in
    :func:`~avseg.cues.video.cue_cache_folder`, so a second run of the same video reuses them)."""
    from avseg.cues.video import PerSecondCues, cue_cache_folder, video_cues

    cache = cue_cache_folder(captioner, llm)
    cues, stats = video_cues(video, cache, captioner, llm)
    names = sorted({name for second in cues for name in second})
    print(f"{video}: cues for {stats.frames} seconds in {cache} ({stats.generated} new, {stats.cached} cached): {names}")
    return PerSecondCues(segmenter, cues)


def parse_cues(text: str | None) -> tuple[str, ...]:
    """``"guitar, man"`` -> ``("guitar", "man")`` (empty names dropped)."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def check_cues(model: str | Path, cues: Sequence[str], option: str = "--cues", auto: bool = False) -> str:
    """The model's kind, once the cues fit it: TeSO needs them (typed, or ``auto``: made for each video, by
    the captioner and LLM or given by a ``--list`` line), the others take none (``option`` names the field in
    the messages)."""
    from avseg.models.registry import ZERO_SHOT_MODELS, read_system_info

    zero_shot = str(model) in ZERO_SHOT_MODELS
    if zero_shot and (cues or auto):
        vocabulary = "--vocabulary" if option.startswith("--") else "vocabulary"
        raise ConfigError(f"{option}: {model} hears which objects sound; give it a {vocabulary} instead")
    model_name = str(model) if zero_shot else read_system_info(model)["model"]
    if model_name == "teso" and not cues and not auto:
        raise ConfigError(f"TeSO segments with text cues: pass {option} 'guitar,man' (the objects that could sound), or {option} auto")
    if model_name != "teso" and (cues or auto):
        raise ConfigError(f"{option}: {model_name} takes no text cues (only TeSO does)")
    return model_name


def reads_expression(model: str | Path) -> bool:
    """Whether ``model`` (a catalogue name, or a resolved model folder) is a Ref-AVS model that segments what a
    referring expression names (AuralSAM2's Ref-AVS variant: its ``config.json`` has a ``text_encoder``)."""
    from avseg.hub.pretrained import find_pretrained

    row = find_pretrained(str(model))
    if row is not None:
        return row.needs_expression
    config = Path(model) / "config.json"
    try:
        return bool(json.loads(config.read_text()).get("text_encoder"))
    except (OSError, ValueError, AttributeError):
        return False


def check_expression(model: str | Path, expression: str | None, option: str = "--expression", resolved: bool = True) -> str | None:
    """The expression, stripped, once it fits the model: a Ref-AVS model needs one, the others take none.
    ``resolved=False`` (before any download: a name, a hub repo or a folder) refuses only a missing expression of a
    catalogue row that needs one; the resolved folder's own config decides the rest."""
    expression = (expression or "").strip() or None
    needed = reads_expression(model)
    if needed and expression is None:
        raise ConfigError(f"{model} is a Ref-AVS model: it segments what an expression refers to; pass {option} 'the dog on the left'")
    if expression is not None and not needed and resolved:
        raise ConfigError(f"{option}: {model} reads no expression (only a Ref-AVS model such as auralsam2-refavs does)")
    return expression


def load_segmenter(
    model: str | Path,
    cues: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    device: str = "auto",
    cue_models: tuple[Any, Any] | Callable[[], tuple[Any, Any]] | None = None,
    precision: str | None = None,
    compile: bool = False,
    cues_per_video: bool = False,
    expression: str | None = None,
) -> LoadedSegmenter:
    """The checks and loading of ``avseg segment``: a trained model folder, a name of ``avseg models`` or
    a hub repo id (TeSO needs ``cues``, or ``cue_models`` that make them, or a function loading those once the
    model is known to take cues, or ``cues_per_video``: each video comes with its own, which the caller
    checked; the others take none), or a zero-shot model name
    (``settings``: its config fields, e.g. ``vocabulary``). ``precision`` (None: the device's default) and
    ``compile``: see :mod:`avseg.engine.precision`. ``expression``: what a Ref-AVS model segments (it needs one;
    the others take none); a catalogue row's missing expression is refused before any download."""
    from avseg.engine.train import resolve_device
    from avseg.hub.resolve import resolve_model
    from avseg.models.registry import load_system

    inference = Inference.resolve(resolve_device(device), precision, compile)
    check_expression(model, expression, resolved=False)
    model = resolve_model(model)
    expression = check_expression(model, expression)
    check_cues(model, cues, auto=cue_models is not None or cues_per_video)
    if callable(cue_models):
        cue_models = cue_models()
    system, info = load_system(model, cues={}, settings=settings or {})
    segmenter = inference.prepare(system.segmenter(inference.device))
    if hasattr(segmenter, "prepare_for_videos"):  # what every video needs, loaded once: a failure is one line before any video
        segmenter.prepare_for_videos()
    if expression is not None:
        segmenter.expression = expression
    return LoadedSegmenter(segmenter, info, tuple(cues), cue_models, inference, system)


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
