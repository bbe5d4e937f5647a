import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def save_tiny_teso(folder: Path) -> Path:
    """An untrained tiny TeSO (MiniLM and log-mel widths) saved as ``avseg train`` saves it for the demo
    recipe (weights + system.json): the segment plumbing's model, which need not be a good one."""
    import torch

    from avseg.config import load_recipe
    from avseg.engine.demo import DEMO_RECIPE
    from avseg.models.registry import save_system_info
    from avseg.models.teso import TeSO, TeSOConfig

    torch.manual_seed(0)
    TeSO(TeSOConfig.tiny(text_dim=384, audio_dim=64)).save_pretrained(folder)
    save_system_info(folder, load_recipe(DEMO_RECIPE))
    return folder


def save_tiny_model(kind: str, folder: Path, mask_generator: str | None = None) -> Path:
    """A tiny randomised AuralSAM2 or VCT (``kind``) saved as ``avseg train`` saves it (weights, config, system.json):
    the model of the tests that take these video models through the rest of avseg. VCT's mask-image generator is
    ``mask_generator`` (a hub name), else a tiny SAM 2 saved beside the folder (``folder.parent / "sam2"``)."""
    import torch

    torch.manual_seed(0)
    if kind == "auralsam2":
        from test_auralsam2 import randomised

        from avseg.models.auralsam2.model import AuralSAM2, AuralSAM2Config

        model = randomised(AuralSAM2(AuralSAM2Config.tiny()))
    elif kind == "vct":
        from test_vct import randomised, tiny_sam2

        from avseg.models.vct.model import VCT, VCTConfig

        generator = mask_generator or str(tiny_sam2(folder.parent / "sam2"))
        model = randomised(VCT(VCTConfig.tiny(mask_generator=generator)))
    else:
        raise ValueError(f"no tiny {kind!r}")
    return save_trained(model, folder)


def save_trained(model, folder: Path) -> Path:
    """``model`` (AuralSAM2 or VCT: VGGish at 16 kHz) saved as ``avseg train`` saves it."""
    from avseg.config import DataConfig, EncodersConfig, Recipe
    from avseg.models.registry import save_system_info

    model.save_pretrained(folder)
    save_system_info(folder, Recipe(model=model.name, encoders=EncodersConfig(audio="vggish"), data=DataConfig(sample_rate=16000)))
    return folder


@pytest.fixture(scope="module")
def tiny_teso_dir(tmp_path_factory) -> Path:
    """:func:`save_tiny_teso`, once per test module."""
    return save_tiny_teso(tmp_path_factory.mktemp("model") / "teso")


@pytest.fixture(scope="module")
def tiny_teso(tiny_teso_dir):
    """The tiny TeSO loaded as ``avseg segment`` loads it, with the cues ``bell, dog``."""
    from avseg.engine.session import load_segmenter

    return load_segmenter(tiny_teso_dir, ("bell", "dog"), device="cpu")


def make_video(
    path: Path,
    seconds: float = 5.0,
    fps: float | Fraction = 10,
    size: tuple[int, int] = (64, 48),
    audio_rate: int | None = 16000,
    layout: str = "mono",
    tone_hz: float = 440.0,
    faststart: bool = False,
) -> Path:
    """An mp4 whose frame i is a flat grey of level ``(5 * i) % 256`` and whose audio is a sine."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        audio = container.add_stream("aac", rate=audio_rate, layout=layout) if audio_rate else None
        for i in range(int(round(seconds * float(fps)))):
            image = np.full((size[1], size[0], 3), (5 * i) % 256, dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            write_audio_stream(container, audio, seconds, tone_hz)
    return path


def make_timed_video(
    path: Path,
    times: list[float],
    size: tuple[int, int] = (64, 48),
    audio_rate: int | None = 16000,
    rotation: int = 0,
    hflip: bool = False,
    vflip: bool = False,
    image=None,
) -> Path:
    """An mp4 whose frame k is shown at ``times[k]`` seconds (a variable rate when they are uneven), flat grey
    ``(5 * k) % 256`` unless ``image(k)`` draws it, stored with a display rotation (degrees counter-clockwise,
    then mirrored) as phones store portrait video, and a sine as long as the video."""
    time_base = Fraction(1, 1000)
    average = Fraction(len(times) - 1, 1) / Fraction(times[-1]).limit_denominator(1000) if len(times) > 1 else Fraction(10)
    seconds = times[-1] + float(1 / average)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=average.limit_denominator(1000))
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.codec_context.time_base = time_base
        if rotation or hflip or vflip:
            video.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        audio = container.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
        for k, time in enumerate(times):
            pixels = image(k) if image is not None else np.full((size[1], size[0], 3), (5 * k) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = round(time / time_base), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            write_audio_stream(container, audio, seconds, 440.0)
    return path


def write_audio_stream(container, stream, seconds, tone_hz):
    rate, layout = stream.codec_context.sample_rate, stream.codec_context.layout.name
    channels = len(stream.codec_context.layout.channels)
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    planes = np.stack([tone * (c + 1) / channels for c in range(channels)])
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=layout)
    frame.sample_rate, frame.pts = rate, 0
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def make_audio_file(path: Path, seconds: float, rate: int, layout: str = "mono", tone_hz: float = 440.0) -> Path:
    """A lossless (FLAC in .mka) audio file: channel c carries the tone scaled by (c + 1) / channels."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("flac", rate=rate, layout=layout)
        write_audio_stream(container, stream, seconds, tone_hz)
    return path


def one_line_error(capsys, argv, *fragments):
    """Run the CLI in-process; it must exit 2 with exactly one ``avseg: error:`` line naming ``fragments``."""
    from avseg.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse usage errors leave through parser.exit
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avseg: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """One small synthetic dataset per layout, written once per session."""
    from avseg.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("synthetic")
    for layout in ("s4", "ms3", "avss", "refavs"):
        write_dataset(layout, root / layout, videos=15, seed=7, size=48)
    return root
