"""zeroshot-sam3: tiny CLAP and SAM 3 of the real transformers classes (random weights), tokenizers built here."""

import json

import numpy as np
import pytest
import torch
from conftest import make_video
from PIL import Image

from avseg.cli import main
from avseg.data.clip import Clip
from avseg.models.zero_shot import (
    AVSS_CLASSES,
    EMPTY_LOGIT,
    S4_VOCABULARY,
    Category,
    ZeroShotConfig,
    ZeroShotSegmenter,
    ZeroShotSystem,
    load_vocabulary,
    sam3_pixel_values,
    tiny_clap_config,
    tiny_sam3_config,
    word_tokenizer,
    zero_shot_config,
)
from avseg.silence import gate_logits

RATE = 48000


def tiny_tokenizer():
    """Word-level, over every word the built-in vocabularies and the template use (ids 0-3 are special)."""
    return word_tokenizer(["guitar dog"])


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Tiny CLAP (with a 48 kHz feature extractor, as laion/larger_clap_general's) and SAM 3, saved as on the hub."""
    from transformers import ClapFeatureExtractor, ClapModel, Sam3Model

    root = tmp_path_factory.mktemp("zero_shot")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    ClapModel(tiny_clap_config()).save_pretrained(root / "clap")
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(root / "clap")
    Sam3Model(tiny_sam3_config()).save_pretrained(root / "sam3")
    for name in ("clap", "sam3"):
        tokenizer.save_pretrained(root / name)
    return root


def load(model_dirs, **settings) -> ZeroShotSystem:
    config = ZeroShotConfig(clap_model=str(model_dirs / "clap"), sam3_model=str(model_dirs / "sam3"), **settings)
    return ZeroShotSystem.from_pretrained(config)


def sounding_clip(seconds=3, size=(40, 48), level=0.3, seed=0) -> Clip:
    rng = np.random.default_rng(seed)
    return Clip(
        frames=rng.integers(0, 256, (seconds, *size, 3), dtype=np.uint8),
        waveform=(level * rng.standard_normal(seconds * 16000)).astype(np.float32),
        sample_rate=16000,
    )


def count_calls(monkeypatch, owner, name: str) -> list:
    """Record the keyword arguments of every call to ``owner.name``."""
    calls, original = [], getattr(owner, name)

    def recorded(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def test_sam3_preprocessing_by_hand():
    grey = np.full((1, 30, 50, 3), 51, dtype=np.uint8)
    pixels = sam3_pixel_values(grey)
    assert pixels.shape == (1, 3, 1008, 1008)
    assert torch.allclose(pixels, torch.tensor((51 / 255 - 0.5) / 0.5))
    # Halving columns that alternate 0 and 200 with SAM 3's antialiased bilinear filter (a triangle two input
    # pixels wide): weights 1/8, 3/8, 3/8, 1/8 over four neighbours, so every inner output pixel is
    # 200 * (1/8 + 3/8) = 100 grey levels.
    stripes = np.zeros((1, 1008, 2016, 3), dtype=np.uint8)
    stripes[:, :, 1::2] = 200
    inner = sam3_pixel_values(stripes)[0, :, :, 1:-1]
    assert torch.allclose(inner, torch.tensor((100 / 255 - 0.5) / 0.5))
    # PIL's bilinear resize is antialiased the same way: within one grey level on a random image.
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    reference = np.asarray(Image.fromarray(image).resize((1008, 1008), Image.BILINEAR), dtype=np.float32)
    ours = (sam3_pixel_values(image[None])[0].permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255
    assert np.abs(ours - reference).max() <= 1.0 + 1e-3


def test_vocabularies(tmp_path):
    assert len(S4_VOCABULARY) == 23 and len(AVSS_CLASSES) == 70 and len(load_vocabulary("avss")) == 70
    guitar = next(c for c in S4_VOCABULARY if c.name == "playing_acoustic_guitar")
    assert (guitar.sound, guitar.visual) == ("playing acoustic guitar", "acoustic guitar")
    assert Category.from_class_name("emergency-car") == Category("emergency-car", "emergency car", "emergency car")
    assert load_vocabulary(" dog barking: dog , piano,") == (Category("dog barking", "dog barking", "dog"), Category("piano", "piano", "piano"))
    listing = tmp_path / "sounds.txt"
    listing.write_text("# what my videos hold\nengine revving: car\n\nbell  # rings\n")
    assert [c.visual for c in load_vocabulary(str(listing))] == ["car", "bell"]


def test_silent_clip_gives_empty_masks_and_never_runs_the_models(model_dirs, monkeypatch):
    segmenter = load(model_dirs, vocabulary="s4").segmenter()
    sam3_calls = count_calls(monkeypatch, segmenter.sam3.model, "forward")
    vision_calls = count_calls(monkeypatch, segmenter.sam3.model, "get_vision_features")
    clap_calls = count_calls(monkeypatch, segmenter.clap.model, "get_audio_features")
    silent = sounding_clip(seconds=4, level=0.0)
    hum = sounding_clip(seconds=2, level=10 ** (-75 / 20))  # -75 dBFS: below the -60 dBFS gate
    logits, details = segmenter.predict_with_details([silent, hum])
    assert [tuple(x.shape) for x in logits] == [(4, 40, 48), (2, 40, 48)]
    assert all((x == EMPTY_LOGIT).all() for x in logits)
    assert sam3_calls == vision_calls == clap_calls == []
    assert details[1][0] | {"level_db": 0} == {"sounding_score": 0.0, "top_class": None, "prompts": [], "level_db": 0}
    # the level is the 90th percentile of 25 ms frame levels: for noise a little above its RMS (frames vary)
    assert -75.0 <= details[1][0]["level_db"] < -74.0


def test_silence_gate_switches_off_and_equals_a_mask_on_the_ungated_output(model_dirs, monkeypatch):
    system = load(model_dirs, vocabulary="s4", query_threshold=0.0, min_probability=0.01)
    segmenter = system.segmenter()
    clap_calls = count_calls(monkeypatch, segmenter.clap.model, "get_audio_features")
    clip = sounding_clip(seconds=3)
    clip.waveform[16000:32000] = 0.0
    ungated, silent = segmenter.predict_ungated([clip])
    assert len(clap_calls) == 1 and silent[0].tolist() == [False, True, False]
    assert (ungated[0][1] > EMPTY_LOGIT).any()  # with the gate off the models hear the silent second too
    gated = segmenter.predict([clip])[0]
    assert torch.equal(gated, gate_logits(ungated[0], silent[0])) and (gated[1] == EMPTY_LOGIT).all()
    segmenter.silence_gate = False
    assert torch.equal(segmenter.predict([clip])[0], ungated[0])
    semantic = ZeroShotSegmenter(segmenter.clap, segmenter.sam3, segmenter.vocabulary, system.config, semantic=True)
    empty = semantic.frame_logits(None, None, [], (40, 48))
    assert torch.equal(gate_logits(torch.randn(1, *empty.shape), np.array([True]))[0], empty)


def test_gate_setting_and_its_older_name():
    assert ZeroShotConfig().silence_gate_dbfs == -60.0
    assert zero_shot_config({"silence_db": -50}).silence_gate_dbfs == -50.0  # recipes written before the gate had its name
    assert zero_shot_config({"silence_gate_dbfs": None}).silence_gate_dbfs is None


def test_one_heard_class_is_the_only_sam3_prompt(model_dirs, monkeypatch):
    system = load(model_dirs, vocabulary="s4", query_threshold=0.0)
    segmenter = system.segmenter()
    clap, sam3 = segmenter.clap, segmenter.sam3
    guitar = [c.name for c in system.vocabulary].index("playing_acoustic_guitar")
    # A random tiny text tower embeds every prompt almost alike; give each class its own axis instead,
    # and make the audio tower's projection land on the guitar's.
    axes = torch.eye(len(system.vocabulary), clap.text_embeddings.shape[1])
    monkeypatch.setattr(clap, "text_embeddings", axes)

    class HearsGuitar(torch.nn.Module):
        def forward(self, pooled):
            return axes[guitar].expand(len(pooled), -1)

    monkeypatch.setattr(clap.model, "audio_projection", HearsGuitar())
    sam3_calls = count_calls(monkeypatch, sam3.model, "forward")
    vision_calls = count_calls(monkeypatch, sam3.model, "get_vision_features")
    logits, details = segmenter.predict_with_details([sounding_clip(seconds=3)])

    expected = sam3.input_ids.new_tensor(tiny_tokenizer()("acoustic guitar", padding="max_length", max_length=16)["input_ids"])
    assert len(vision_calls) == 1 and len(sam3_calls) == 3  # one vision pass for the window; the decoder per frame
    assert vision_calls[0]["pixel_values"].shape[0] == 3
    for call in sam3_calls:
        assert call["input_ids"].tolist() == [expected.tolist()]
        assert call["vision_embeds"].fpn_hidden_states[0].shape[0] == 1
    assert all(d["prompts"] == ["playing_acoustic_guitar"] and d["sounding_score"] > 0.99 for d in details[0])
    assert (logits[0] > EMPTY_LOGIT).any()  # every query kept (threshold 0): SAM 3's masks, not the floor


def test_prompts_and_how_masks_combine(model_dirs, monkeypatch):
    system = load(model_dirs, vocabulary="bell, dog, drum, bird")
    base = system.segmenter()
    clip = sounding_clip(seconds=2, size=(8, 8))
    clip.masks = np.zeros((2, 16, 16), dtype=np.uint8)  # label size 16x16
    monkeypatch.setattr(base.clap, "probabilities", lambda windows: torch.tensor([[0.1, 0.3, 0.25, 0.35]] * len(windows)))
    maps = torch.full((4, 4, 4), -5.0)
    maps[1, :2], maps[2, :, :1], maps[3, 3:] = 4.0, 8.0, 2.0  # dog: top half, drum: left column, bird: bottom row
    monkeypatch.setattr(base.sam3, "class_logits", lambda vision, row, classes: maps[list(classes)])

    assert base.hear(clip)[0].prompted == [3, 1, 2]  # >= 0.25, most probable first
    binary = base.predict([clip])[0]
    assert binary.shape == (2, 16, 16)
    expected = torch.nn.functional.interpolate(maps[None, 1:], size=(16, 16), mode="bilinear")[0].amax(0)  # resized, then max
    assert torch.allclose(binary[0], expected)

    capped = ZeroShotSegmenter(base.clap, base.sam3, system.vocabulary, ZeroShotConfig(max_prompts=1), semantic=True)
    semantic = capped.predict([clip])[0]
    assert semantic.shape == (2, 1 + 4, 16, 16)
    assert (semantic[:, 0] == 0).all() and (semantic[:, [1, 2, 3]] == EMPTY_LOGIT).all()  # only bird was prompted
    assert ((semantic.argmax(1) == 4) == (binary_of(semantic) > 0)).all()


def binary_of(semantic: torch.Tensor) -> torch.Tensor:
    return semantic[:, 1:].amax(1)


def test_evaluate_avss_recipe_scores_semantic_maps(model_dirs, synthetic, tmp_path):
    recipe = tmp_path / "zeroshot_avss.yaml"
    recipe.write_text(
        "name: zs\nmodel: zeroshot-sam3\n"
        f"data: {{layout: avss, root: {synthetic / 'avss'}, sample_rate: 48000}}\n"
        f"model_config: {{clap_model: {model_dirs / 'clap'}, sam3_model: {model_dirs / 'sam3'}}}\n"
        f"output: {tmp_path / 'runs'}\n"
    )
    assert main(["evaluate", str(recipe), "--perturb", "mute", "--precision", "bf16"]) == 0
    report = json.loads((tmp_path / "runs" / "zs" / "eval-test" / "report.json").read_text())
    assert report["checkpoint"] == "zeroshot-sam3" and {"mIoU", "F"} <= set(report["results"]["mute"])
    assert (report["precision"], report["compile"], report["compile_first_call_s"]) == ("bf16", False, None)


def test_segment_end_to_end(model_dirs, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=10, size=(64, 48), audio_rate=44100, layout="stereo")
    models = ["--clap-model", str(model_dirs / "clap"), "--sam3-model", str(model_dirs / "sam3")]
    command = ["segment", str(video), "--model", "zeroshot-sam3", *models, "--vocabulary", "guitar, dog", "--out", str(tmp_path / "out")]
    assert main([*command, "--set", "query_threshold=0.0", "--rate", "2"]) == 0
    out = tmp_path / "out" / "clip"
    masks = [np.asarray(Image.open(path)) for path in sorted((out / "masks").iterdir())]
    assert len(masks) == 6 and all(m.shape == (48, 64) and set(np.unique(m)) <= {0, 255} for m in masks)
    assert (out / "overlay.mp4").is_file() and "overlay.mp4" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == f"zeroshot-sam3 ({model_dirs / 'clap'} + {model_dirs / 'sam3'})"
    for frame in summary["frames"]:
        assert frame["sounding_score"] >= 0.5 and frame["top_class"] in frame["prompts"]  # two classes: the top one passes
        assert set(frame["prompts"]) <= {"guitar", "dog"} and frame["level_db"] > -60


def test_a_list_gives_each_video_its_own_vocabulary(model_dirs, tmp_path):
    for name in ("a", "b"):
        make_video(tmp_path / f"{name}.mp4", seconds=1, fps=2, size=(32, 24), audio_rate=44100)
    (tmp_path / "strings.txt").write_text("violin\nguitar\n")
    listed = tmp_path / "corpus.txt"
    listed.write_text('{"path": "a.mp4", "vocabulary": "strings.txt"}\nb.mp4\n')  # the file beside the list; the command's
    models = ["--clap-model", str(model_dirs / "clap"), "--sam3-model", str(model_dirs / "sam3")]
    out = tmp_path / "out"
    assert main(["segment", "--list", str(listed), "--model", "zeroshot-sam3", *models, "--vocabulary", "dog, piano", "--out", str(out)]) == 0
    for name, heard in (("a", {"violin", "guitar"}), ("b", {"dog", "piano"})):
        rows = json.loads((out / name / "summary.json").read_text())["frames"]
        assert {row["top_class"] for row in rows} <= heard and any(row["top_class"] for row in rows)
        record = json.loads((out / name / "record.json").read_text())
        assert {entry["name"] for entry in record["settings"]["vocabulary"]} == heard  # the entries, not the file's name
        assert record["model"]["sources"].keys() == {"clap_model", "sam3_model"}  # local folders, by their content


def test_bad_input_is_a_one_line_error(model_dirs, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=2)
    segment = ["segment", str(video), "--out", str(tmp_path / "o"), "--model", "zeroshot-sam3"]
    models = ["--clap-model", str(model_dirs / "clap"), "--sam3-model", str(model_dirs / "sam3")]
    recipe = tmp_path / "zs.yaml"
    recipe.write_text("model: zeroshot-sam3\ndata: {layout: s4, root: nowhere}\n")
    cases = [
        (segment, "laion/larger_clap_general: CLAP is not in the hub cache"),  # the hub is out of reach in tests
        ([*segment, "--clap-model", str(model_dirs / "clap"), "--sam3-model", str(tmp_path / "nothing")], "nothing: cannot load SAM 3"),
        ([*segment, *models, "--vocabulary", "mine.txt"], "mine.txt: vocabulary file not found"),
        ([*segment, *models, "--vocabulary", " , "], "no entries"),
        ([*segment, *models, "--set", "min_probability=2"], "min_probability: must lie in (0, 1]"),
        ([*segment, *models, "--set", "thresold=0.3"], "thresold: unknown key"),
        ([*segment, "--cues", "dog"], "give it a --vocabulary instead"),
        (["evaluate", str(recipe), "--checkpoint", str(tmp_path)], "zero-shot; it has no checkpoint"),
        (["train", str(recipe)], "nothing to train"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("avseg: error:") and message in err, err
