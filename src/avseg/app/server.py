"""The Gradio page of ``avseg app``: upload a video, segment it, compare it with muted or swapped audio.

:class:`SegmentApp` owns a temporary folder for the whole life of the app:
Gradio's uploads (``GRADIO_TEMP_DIR`` points into it while the app runs), the
synthetic examples and every result; leaving the ``with`` block stops the
server and removes the folder (``avseg app`` also keeps Gradio's and torch's
own temporary folders in one of its own: :mod:`avseg.app.scratch`). Loaded
models are kept, one per model and settings, so a comparison or a second video
does not load the model again.

The page speaks of an upload by the user's file name, never by the server's
path of it: in its messages, and in ``summary.json`` (``video``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Sequence

import gradio as gr
import pandas as pd

from avseg.app.inputs import (
    check_audio_source,
    check_max_seconds,
    check_upload,
    write_examples,
)
from avseg.engine.dense import Sampling
from avseg.engine.session import (
    LoadedSegmenter,
    check_cues,
    check_expression,
    load_cue_models,
    load_segmenter,
    mask_agreement,
    parse_cues,
)
from avseg.errors import AvsegError, ConfigError

COMPARISONS = ("none", "muted audio", "swapped audio")
APP_SAMPLING = Sampling(rate=1)
"""The page segments one frame per second (AVSBench's sampling): two runs per comparison stay quick on a CPU,
and the timeline and mask archive stay small; ``avseg segment`` gives every frame."""
OUTPUTS = ("status", "overlay", "compared", "agreement", "timeline", "summary", "masks")


class SegmentApp:
    def __init__(
        self, models: Sequence[str] = (), max_seconds: float = 600, device: str = "auto", window: int = 5,
        captioner: str | None = None, llm: str | None = None,
    ):  # fmt: skip
        self.models = list(dict.fromkeys([*map(str, models), *_named_models()]))
        self.max_seconds, self.device, self.window = check_max_seconds(max_seconds), device, window
        self.captioner, self.llm = captioner, llm
        self._loaded: dict[tuple, LoadedSegmenter] = {}
        self._cue_models = None

    def __enter__(self) -> SegmentApp:
        self._folder = tempfile.TemporaryDirectory(prefix="avseg-app-")
        self.root = Path(self._folder.name)
        self._previous_upload_dir = os.environ.get("GRADIO_TEMP_DIR")
        os.environ["GRADIO_TEMP_DIR"] = str(self.root / "uploads")
        self.examples = write_examples(self.root / "examples")
        self.blocks = build_page(self)
        return self

    def __exit__(self, *exc_info) -> None:
        self.blocks.close()
        if self._previous_upload_dir is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = self._previous_upload_dir
        self._folder.cleanup()

    def launch(self, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> str:
        """Serve the page on ``port`` (0: any free port); ``block=False`` returns at once (tests), the URL
        either way. A port that is taken, or an address that is not this machine's, is one line."""
        self.blocks.queue(default_concurrency_limit=1)
        try:
            port = port or _free_port(host)
            self.blocks.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block, show_error=False)
        except OSError:  # Gradio's "Cannot find empty port in range", after its own retries
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} (the port is in use, or {host} is not an address of this machine); choose another, or --port 0 for any free port") from None
        return self.blocks.local_url

    def segment(self, video, model, cues, vocabulary, comparison, swap_audio, expression="", progress=gr.Progress()) -> tuple:
        """The page's one action; a bad upload or setting comes back as a one-line status, not a traceback."""
        try:
            return self._segment(video, model, cues, vocabulary, comparison, swap_audio, progress, expression)
        except AvsegError as error:
            return (f"**Error:** {self._as_the_user_names_it(str(error), video, swap_audio)}", *[None] * (len(OUTPUTS) - 1))

    def _as_the_user_names_it(self, message: str, *uploads: str | None) -> str:
        """``message`` with each upload's server path replaced by its file name, and any other path in the
        app's folder by its name in there."""
        for upload in filter(None, uploads):
            message = message.replace(str(upload), Path(upload).name)
        return message.replace(f"{self.root}{os.sep}", "")

    def _segment(self, video, model, cues, vocabulary, comparison, swap_audio, progress, expression="") -> tuple:
        if not video:
            raise ConfigError("upload a video or pick an example first")
        if not model:
            raise ConfigError("pick a model (or start the app with --model FOLDER)")
        name = Path(video).name  # Gradio keeps the uploaded file's name in a folder of its own
        info = check_upload(video, self.max_seconds, name=name)
        audio = self._comparison_audio(comparison, swap_audio, video)
        progress(0.05, desc=f"loading {model}")
        segmenter = self._segmenter(model, cues, vocabulary, expression)
        run = self.root / "runs" / uuid.uuid4().hex[:12]
        progress(0.2, desc="segmenting with the video's own audio")
        options = {"progress": False, "sampling": APP_SAMPLING, "video_name": name, "allow_silent": True}  # as avseg segment --allow-silent
        result = segmenter.segment(video, run / "original", self.window, **options)
        timeline = _timeline(result, "original")
        compared, agreement = None, ""
        if audio is not None:
            progress(0.6, desc=f"segmenting with {comparison}")
            other = segmenter.segment(video, run / "compared", self.window, audio=audio, **options)
            compared = str(other / "overlay.mp4")
            timeline = pd.concat([timeline, _timeline(other, comparison)])
            agreement = _agreement_text(mask_agreement(result, other), comparison)
        progress(0.95, desc="packing the masks")
        masks = shutil.make_archive(str(run / f"{result.name}-masks"), "zip", result, "masks")
        summary = (result / "summary.json").read_text()
        frames = len(list((result / "masks").glob("*.png")))
        silent = " It has no audio track: the model heard silence." if not info.has_audio else ""
        status = f"Segmented **{name}** with {segmenter.label}: {frames} masks (one per second).{silent}{_approximate_note(summary)}"
        return status, str(result / "overlay.mp4"), compared, agreement, timeline, summary, masks

    def _comparison_audio(self, comparison: str, swap_audio: str | None, video: str) -> str | None:
        if comparison == "muted audio":
            return "mute"
        if comparison != "swapped audio":
            return None
        if swap_audio:
            check_audio_source(swap_audio, Path(swap_audio).name)
            return swap_audio
        other = next((e.video for e in self.examples if e.video.name != Path(video).name), None)
        return str(other)

    def _segmenter(self, model: str, cues_text: str | None, vocabulary: str | None, expression: str | None = None) -> LoadedSegmenter:
        """The loaded model (kept for later runs) with this run's cues: typed names, or "auto" (the
        captioner and LLM of ``avseg cues``, loaded once, name what could sound in the video); a Ref-AVS model
        with this run's expression."""
        from avseg.hub.resolve import resolve_model

        auto = (cues_text or "").strip() == "auto"
        cues = () if auto else parse_cues(cues_text)
        check_expression(model, expression, option="expression", resolved=False)
        folder = resolve_model(model)
        expression = check_expression(folder, expression, option="expression")
        check_cues(folder, cues, option="cues", auto=auto)
        settings = {"vocabulary": vocabulary.strip()} if vocabulary and vocabulary.strip() else {}
        key = (model, tuple(sorted(settings.items())))
        if key not in self._loaded:
            self._loaded[key] = load_segmenter(model, cues, settings, self.device, self._auto_cue_models if auto else None, expression=expression)
        loaded = self._loaded[key]
        if expression is not None:
            loaded.segmenter.expression = expression
        return LoadedSegmenter(loaded.segmenter, loaded.info, cues, self._auto_cue_models() if auto else None, loaded.inference)

    def _auto_cue_models(self) -> tuple:
        if self._cue_models is None:
            self._cue_models = load_cue_models(self.captioner, self.llm, self.device)
        return self._cue_models


def _free_port(host: str) -> int:
    """A port the system says is free on ``host`` now (``--port 0``; Gradio itself cannot serve on port 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _named_models() -> list[str]:
    """Models usable by name (``avseg models``): the pretrained names, the zero-shot ones among them."""
    import avseg
    from avseg.models.registry import ZERO_SHOT_MODELS

    names = [row["name"] for row in avseg.available_models() if row["kind"] == "pretrained"]
    return list(dict.fromkeys([*names, *ZERO_SHOT_MODELS]))


def _approximate_note(summary: str) -> str:
    """What the status adds when the masks are approximate (VCT's generated mask images, in ``summary.json``'s rows)."""
    made = sorted({row["mask_images"] for row in json.loads(summary)["frames"] if row.get("approximate")})
    return f" Its mask images were {' and '.join(made)}, so the masks are approximate." if made else ""


def _timeline(result: Path, condition: str) -> pd.DataFrame:
    frames = json.loads((result / "summary.json").read_text())["frames"]
    rows = [{"time (s)": f["time"], "value": f[key], "series": f"{label} ({condition})"}
            for f in frames for key, label in (("sounding_score", "sounding score"), ("mask_area", "mask area"))]
    return pd.DataFrame(rows)


def _agreement_text(per_frame: list[float], comparison: str) -> str:
    mean = sum(per_frame) / len(per_frame)
    frames = ", ".join(f"{j:.2f}" for j in per_frame)
    verdict = "the masks barely change: the model is not using the audio here" if mean >= 0.9 else "the audio changes what the model segments"
    return f"**Agreement with {comparison}: J = {mean:.3f}** (mean IoU over {len(per_frame)} frames; per frame {frames}): {verdict}."


def build_page(app: SegmentApp) -> gr.Blocks:
    with gr.Blocks(title="avseg: audio-visual segmentation", analytics_enabled=False) as page:
        gr.Markdown("# avseg: audio-visual segmentation\nSegment the objects that make the sound, then mute or swap the audio and see what changes.")
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Video", sources=["upload"], elem_id="video")
                model = gr.Dropdown(app.models, value=app.models[0] if app.models else None, label="Model (name or folder)", allow_custom_value=True)
                cues = gr.Textbox(label="Cues (TeSO): the objects that could sound, or auto", placeholder="guitar, man (or auto)", elem_id="cues")
                vocabulary = gr.Textbox(label="Vocabulary (zero-shot): s4, avss or a comma list", placeholder="avss")
                expression = gr.Textbox(value="", label="Expression (Ref-AVS models): what to segment", placeholder="the dog on the left", elem_id="expression")
                comparison = gr.Radio(list(COMPARISONS), value="muted audio", label="Compare with")
                swap_audio = gr.File(label="Swap in the audio of (default: another example)", file_types=["audio", "video"], type="filepath")
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                gr.Examples([[str(e.video), e.cues] for e in app.examples], inputs=[video, cues], label="Synthetic examples")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    overlay = gr.Video(label="Mask with the video's own audio", interactive=False, elem_id="overlay")
                    compared = gr.Video(label="Mask with the compared audio", interactive=False)
                agreement = gr.Markdown(elem_id="agreement")
                timeline = gr.LinePlot(x="time (s)", y="value", color="series", title="Per frame: sounding score and mask area", height=260)
                masks = gr.File(label="Masks (zip of PNGs)")
                with gr.Accordion("summary.json", open=False):
                    summary = gr.Code(language="json")
        button.click(app.segment, [video, model, cues, vocabulary, comparison, swap_audio, expression],
                     [status, overlay, compared, agreement, timeline, summary, masks], api_name="segment")
    return page


def serve(
    models: Sequence[str], host: str = "127.0.0.1", port: int = 7860, max_seconds: float = 600, device: str = "auto",
    captioner: str | None = None, llm: str | None = None,
) -> None:  # fmt: skip
    """``avseg app``: serve until Ctrl-C (or SIGTERM, under :func:`~avseg.app.scratch.process_temporary_folder`);
    the temporary folder goes with the server either way."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"avseg app: listening on {host}: anyone who can reach this address can upload videos and run models")
    with SegmentApp(models, max_seconds, device, captioner=captioner, llm=llm) as app:
        try:  # a stop request may come while Gradio still starts up (its server already answers then)
            print(f"avseg app: {app.launch(host, port, block=False)} (Ctrl-C stops it)", flush=True)
            while app.blocks.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("avseg app: stopped")
