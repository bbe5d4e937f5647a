"""``--precision`` and ``--compile`` of ``avseg segment`` and ``avseg evaluate`` (a tiny AV2T-SAM on CPU)."""

import json

import pytest
import torch
from conftest import make_video

from avseg.cli import build_parser, main
from avseg.config import EncodersConfig, Recipe
from avseg.engine.dense import Sampling
from avseg.engine.precision import Inference, repeated_blocks
from avseg.engine.session import load_segmenter
from avseg.errors import ConfigError
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig
from avseg.models.system_info import save_system_info


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny AV2T-SAM folder with parameter-free encoders (log-mel audio, thumbnail frames)."""
    folder = tmp_path_factory.mktemp("precision") / "av2t"
    torch.manual_seed(0)
    AV2TSAM(AV2TSAMConfig.tiny(audio_dim=64, vision_dim=48)).save_pretrained(folder)
    save_system_info(folder, Recipe(model="av2t-sam", encoders=EncodersConfig(audio="logmel", image="thumbnail")))
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=2, size=(64, 48))


@pytest.mark.parametrize("command", [["segment", "v.mp4", "--model", "m", "--out", "o"], ["evaluate", "recipe.yaml"]])
def test_options_parse_on_segment_and_evaluate(command):
    parser = build_parser()
    defaults = parser.parse_args(command)
    assert (defaults.precision, defaults.compile) == (None, False)
    chosen = parser.parse_args([*command, "--precision", "bf16", "--compile"])
    assert (chosen.precision, chosen.compile) == ("bf16", True)


def test_unknown_precision_is_a_one_line_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:
        main(["segment", "v.mp4", "--model", "m", "--out", str(tmp_path / "o"), "--precision", "fp8"])
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "argument --precision: invalid choice: 'fp8'" in error[0]


def test_precision_defaults_by_device_and_fp16_is_refused_on_cpu():
    assert Inference.resolve(torch.device("cpu")).precision == "fp32"
    assert Inference.resolve(torch.device("cuda")).precision == "bf16"  # only the name: nothing runs on it
    with pytest.raises(ConfigError, match="--precision fp16: half precision runs on CUDA only"):
        Inference.resolve(torch.device("cpu"), "fp16")


def test_fp16_on_cpu_fails_before_anything_is_written(model, video, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["segment", str(video), "--model", str(model), "--out", str(out), "--device", "cpu", "--precision", "fp16"]) == 2
    assert capsys.readouterr().err.startswith("avseg: error: --precision fp16: half precision runs on CUDA only")
    assert not out.exists()


def test_bf16_segment_runs_the_encoders_in_bf16_and_writes_fp32_results(model, video, tmp_path):
    dtypes = {}
    for precision in ("bf16", "fp32"):
        loaded = load_segmenter(model, device="cpu", precision=precision)
        sam = loaded.segmenter.model.sam.vision_encoder
        sam.register_forward_hook(lambda module, args, output, p=precision: dtypes.update({p: output.last_hidden_state.dtype}) and None)
        out = loaded.segment(video, tmp_path / precision, progress=False, sampling=Sampling(1))  # one frame a second: fast
        summary = json.loads((out / "summary.json").read_text())
        assert len(summary["frames"]) == 2 and (out / "overlay.mp4").is_file()
    assert dtypes == {"bf16": torch.bfloat16, "fp32": torch.float32}


def test_bf16_through_the_command_line(model, video, tmp_path, capsys):
    assert main(["segment", str(video), "--model", str(model), "--out", str(tmp_path / "o"), "--device", "cpu", "--precision", "bf16", "--rate", "1"]) == 0
    assert "masks, overlay.mp4 and summary.json" in capsys.readouterr().out
    assert len(list((tmp_path / "o" / "clip" / "masks").glob("*.png"))) == 2


def test_compile_selects_the_repeated_blocks():
    tiny = AV2TSAM(AV2TSAMConfig.tiny())
    blocks = repeated_blocks(tiny)
    hiera = list(tiny.sam.vision_encoder.backbone.blocks)
    assert all(any(block is b for b in blocks) for block in [*hiera, *tiny.evf.beit3.encoder.layers])
    assert not any(isinstance(block, (torch.nn.Linear, torch.nn.Sequential)) for block in blocks)  # leaves and adapter MLPs stay eager


def test_compiled_blocks_give_the_same_masks_and_report_the_first_call(model, video, tmp_path, capsys):
    """``eager``: dynamo traces the blocks (hooks and all) without inductor's C++ build, which takes minutes here."""
    plain = load_segmenter(model, device="cpu").segment(video, tmp_path / "plain", progress=False, sampling=Sampling(1))
    loaded = load_segmenter(model, device="cpu")
    loaded.inference = Inference(torch.device("cpu"), "fp32", compile=True, compile_backend="eager")
    loaded.inference.prepare(loaded.segmenter)
    compiled = loaded.segment(video, tmp_path / "compiled", progress=False, sampling=Sampling(1))
    assert loaded.inference.first_call_seconds is not None
    assert "compile: first call" in capsys.readouterr().err
    for first, second in zip(*(json.loads((out / "summary.json").read_text())["frames"] for out in (plain, compiled))):
        assert first["sounding_score"] == pytest.approx(second["sounding_score"], abs=1e-4)  # compiled kernels may reorder sums
