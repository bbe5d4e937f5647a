"""A broken weights file gives exactly one line on stderr (exit 2): no transformers load report or progress
bar, no torch warning, no traceback; and a pickle payload is refused, never run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_video
from safetensors.torch import load_file, save_file

from avseg.config import EncodersConfig, Recipe
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig
from avseg.models.registry import save_system_info
from avseg.models.teso import TeSO, TeSOConfig


def avseg_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "avseg.cli", *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("avseg: error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def corrupt(folder: Path) -> Path:
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a safetensors header" * 4)
    return folder


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>", "dog", "guitar"]
    tokenizer = Tokenizer(models.WordLevel({word: k for k, word in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=16)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny CLIP text and CLIP folders of the real classes (saved by transformers), broken in several ways,
    and tiny TeSO / AV2T-SAM model folders."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
    )

    root = tmp_path_factory.mktemp("errors")
    torch.manual_seed(0)
    layer = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    text = dict(layer, vocab_size=6, max_position_embeddings=16, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    CLIPTextModelWithProjection(CLIPTextConfig(**text, projection_dim=24)).save_pretrained(root / "text")
    tiny_tokenizer().save_pretrained(root / "text")
    corrupt(root / "text")
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=dict(layer, image_size=32, patch_size=16), projection_dim=16))
    for name in ("clip", "clip_missing"):
        clip.save_pretrained(root / name)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(root / name)
    corrupt(root / "clip")
    state = load_file(str(root / "clip_missing" / "model.safetensors"))
    del state["visual_projection.weight"]
    save_file(state, str(root / "clip_missing" / "model.safetensors"), metadata={"format": "pt"})
    TeSO(TeSOConfig.tiny(text_dim=24, audio_dim=64)).save_pretrained(root / "teso")
    AV2TSAM(AV2TSAMConfig.tiny(audio_dim=64, vision_dim=16)).save_pretrained(root / "av2t")
    return root


def model_folder(folders: Path, kind: str, out: Path, **encoders) -> Path:
    """A copy of a tiny model folder whose system.json names ``encoders``."""
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        (out / name).write_bytes((folders / kind / name).read_bytes())
    save_system_info(out, Recipe(model="teso" if kind == "teso" else "av2t-sam", encoders=EncodersConfig(audio="logmel", **encoders)))
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=2)


def test_corrupt_model_weights_in_segment_model(folders, video, tmp_path):
    model = corrupt(model_folder(folders, "av2t", tmp_path / "m", image="thumbnail"))
    assert_one_line_error(avseg_cli("segment", video, "--model", model, "--out", tmp_path / "o"), f"{model / 'model.safetensors'}: unreadable weights file")
    assert not (tmp_path / "o").exists()


def test_corrupt_clip_folder_named_by_a_model_folder(folders, video, tmp_path):
    model = model_folder(folders, "av2t", tmp_path / "m", image=str(folders / "clip"))
    result = avseg_cli("segment", video, "--model", model, "--out", tmp_path / "o")
    assert_one_line_error(result, f"{folders / 'clip'}: cannot load a CLIP image encoder (SafetensorError")


def test_clip_weights_missing_a_parameter_are_refused_without_a_load_report(folders, video, tmp_path):
    model = model_folder(folders, "av2t", tmp_path / "m", image=str(folders / "clip_missing"))
    result = avseg_cli("segment", video, "--model", model, "--out", tmp_path / "o")
    assert_one_line_error(result, "lack 1 parameters, e.g. visual_projection.weight")


def test_corrupt_text_encoder_folder_in_a_recipe(folders, synthetic, tmp_path):
    encoders = {"audio": "logmel", "text": str(folders / "text")}
    recipe = {"model": "teso", "preset": "tiny", "encoders": encoders, "data": {"layout": "ms3", "root": str(synthetic / "ms3")}}
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    result = avseg_cli("evaluate", tmp_path / "recipe.yaml", "--checkpoint", folders / "teso", "--out", tmp_path / "eval")
    assert_one_line_error(result, f"{folders / 'text'}: cannot load a text encoder (SafetensorError")


class Payload:
    """Unpickling this would run code (writing a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_pickle_payload_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "ran.txt"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": Payload(marker)}, tmp_path / "bad.pth")
    stderr = assert_one_line_error(avseg_cli("convert", "av2t-sam", tmp_path / "bad.pth", "--out", tmp_path / "o"), "refused to unpickle")
    assert "weights_only` set to `False" not in stderr  # torch's advice to load it unsafely is not passed on
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_pickle_payload_as_vggish_weights(folders, video, tmp_path):
    marker = tmp_path / "ran.txt"
    torch.save({"features.0.weight": Payload(marker)}, tmp_path / "vggish.pth")
    model = model_folder(folders, "teso", tmp_path / "m", text="minilm-offline")
    info = json.loads((model / "system.json").read_text())
    info["encoders"].update(audio="vggish", audio_weights=str(tmp_path / "vggish.pth"))
    (model / "system.json").write_text(json.dumps(info))
    result = avseg_cli("segment", video, "--model", model, "--out", tmp_path / "o", "--cues", "dog")
    assert_one_line_error(result, f"{tmp_path / 'vggish.pth'}: cannot read VGGish weights: holds pickled Python objects")
    assert not marker.exists()


def test_quiet_loading_restores_the_settings():
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as transformers_logging

    from avseg.loading import quiet_loading

    before = (transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled(), are_progress_bars_disabled())
    with quiet_loading():
        assert transformers_logging.get_verbosity() == transformers_logging.ERROR
        assert not transformers_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
    assert (transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled(), are_progress_bars_disabled()) == before


def test_dense_segment_options_that_do_not_fit_the_video_are_one_line(video, tmp_path):
    """Checked before the model loads (the model named here is never loaded)."""
    segment = ("segment", video, "--model", "zeroshot-sam3", "--out", tmp_path / "o")
    for args, fragments in (
        (("--rate", "11"), ["--rate 11 is more than clip.mp4's 10 frames per second"]),
        (("--rate", "fast"), ["argument --rate: expected all or a whole number"]),
        (("--rate", "4", "--keyframes", "5"), ["--keyframes 5 is more than the 4 output frames per second of clip.mp4"]),
        (("--keyframes", "11"), ["--keyframes 11 is more than the 10 output frames per second"]),
        (("--format", "gif"), ["argument --format: invalid choice: 'gif'"]),
    ):
        assert_one_line_error(avseg_cli(*segment, *args), *fragments)
    assert not (tmp_path / "o").exists()


def test_a_video_that_breaks_mid_stream_leaves_nothing_behind(folders, tmp_path):
    source = make_video(tmp_path / "source.mp4", seconds=4, fps=10, faststart=True)
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size * 2 // 3])
    from avseg.config import load_recipe
    from avseg.engine.demo import DEMO_RECIPE

    model = tmp_path / "m"
    TeSO(TeSOConfig.tiny(text_dim=384, audio_dim=64)).save_pretrained(model)
    save_system_info(model, load_recipe(DEMO_RECIPE))
    result = avseg_cli("segment", broken, "--model", model, "--out", tmp_path / "o", "--cues", "dog", "--window", "2")
    # found while decoding: the video fails and is recorded (exit 1), rather than refused before any work (exit 2)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith(f"avseg: error: {broken}: "), result.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["failures.jsonl", "index.jsonl"]  # no partial clip/
    assert json.loads((tmp_path / "o" / "failures.jsonl").read_text())["video"] == str(broken)
