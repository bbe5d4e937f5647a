"""TeSO text cues: prompt parsing, the captioner and LLM wrappers, the cached pipeline and `avseg cues`.

The models are tiny, randomly initialised instances of the real classes (BLIP-2
with an OPT decoder, Qwen2), with a byte-level BPE tokenizer built here, so
their output is garbage: exactly what the parser must survive.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"

from avseg.cli import main  # noqa: E402
from avseg.cues.pipeline import (  # noqa: E402
    FRAMES,
    generate_cues,
    load_cues,
    oracle_cues,
    write_oracle_cues,
)
from avseg.cues.prompt import (  # noqa: E402
    EXAMPLES,
    INSTRUCTION,
    MAX_CUES,
    SYSTEM,
    build_messages,
    parse_cues,
)
from avseg.data.avsbench import AVSS, MS3, S4  # noqa: E402
from avseg.data.refavs import RefAVS  # noqa: E402
from avseg.data.synthetic import load_objects, write_dataset  # noqa: E402
from avseg.errors import ConfigError, DatasetError  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer():
    """A byte-level BPE (any text encodes) trained on the prompt, so prompts stay a few hundred tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([SYSTEM, INSTRUCTION, *(text for pair in EXAMPLES for text in pair)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        chat_template=CHAT_TEMPLATE, model_max_length=4096,
    )


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Tiny BLIP-2 captioner and Qwen2 chat LLM, saved as model folders like the hub's."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Qwen2Config,
        Qwen2ForCausalLM,
    )
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    processor = Blip2Processor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tiny_tokenizer(), num_query_tokens=4)
    vocab = len(processor.tokenizer)
    layer = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    blip2 = Blip2Config(
        vision_config=dict(layer, image_size=32, patch_size=8),
        qformer_config=dict(layer, vocab_size=vocab, encoder_hidden_size=32, max_position_embeddings=64),
        text_config=dict(
            model_type="opt", vocab_size=vocab, hidden_size=32, ffn_dim=64, num_hidden_layers=1, num_attention_heads=2,
            word_embed_proj_dim=32, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        ),
        num_query_tokens=4,
        image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"),
    )
    qwen2 = Qwen2Config(
        **layer, vocab_size=len(tokenizer), num_key_value_heads=1, max_position_embeddings=4096,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    for model, processor_or_tokenizer, folder in [
        (Blip2ForConditionalGeneration(blip2), processor, "captioner"),
        (Qwen2ForCausalLM(qwen2), tokenizer, "llm"),
    ]:
        # Sampling defaults, as chat models ship them: the wrappers must still decode greedily.
        model.generation_config.update(do_sample=True, temperature=0.7, top_p=0.8, top_k=20)
        model.save_pretrained(root / folder)
        processor_or_tokenizer.save_pretrained(root / folder)
    return root


@pytest.fixture(scope="module")
def models(model_dirs):
    from avseg.cues.captioner import Captioner
    from avseg.cues.llm import CueLLM

    captioner = Captioner.from_pretrained(str(model_dirs / "captioner"), device="cpu", max_new_tokens=8)
    llm = CueLLM.from_pretrained(str(model_dirs / "llm"), device="cpu", max_new_tokens=24)
    return captioner, llm


class Counting:
    """Wraps a captioner or LLM: counts what it is given, and can fail on call number ``fail_at``."""

    def __init__(self, inner, fail_at=None):
        self.inner, self.fail_at, self.calls, self.items = inner, fail_at, 0, 0

    def identity(self):
        return self.inner.identity()

    def _count(self, items):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("interrupted")
        self.items += len(items)

    def caption(self, images):
        self._count(images)
        return self.inner.caption(images)

    def generate(self, conversations):
        self._count(conversations)
        return self.inner.generate(conversations)


class FakeCaptioner:
    """Captions an image by its mean colour; cheap, for tests of the pipeline's bookkeeping."""

    def __init__(self, name="fake-captioner"):
        self.name, self.images = name, 0

    def identity(self):
        return {"model": self.name}

    def caption(self, images):
        self.images += len(images)
        return [f"a guitar and a wall, shade {int(image.mean())}" for image in images]


class ScriptedLLM:
    """Answers with the given strings in turn (realistic, malformed and garbage answers)."""

    def __init__(self, answers):
        self.answers, self.count = answers, 0

    def identity(self):
        return {"model": "scripted"}

    def generate(self, conversations):
        replies = [self.answers[(self.count + k) % len(self.answers)] for k in range(len(conversations))]
        self.count += len(conversations)
        return replies


def read_entries(out):
    return [json.loads(line) for line in (out / FRAMES).read_text().splitlines()]


def assert_grounded(entry):
    """Every cue is a span of the LLM's own output: the parser never invents one."""
    text = " ".join(entry["llm_output"].lower().split())
    assert len(entry["cues"]) <= MAX_CUES
    assert len(set(entry["cues"])) == len(entry["cues"])
    for name in entry["cues"]:
        assert name in text, (name, entry["llm_output"])


# --- the parser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, expected",
    [
        ('The description mentions a man and a guitar.\nThe man could be singing.\nOBJECTS: ["man", "guitar"]', ["man", "guitar"]),
        ('OBJECTS: ["Man", "the Acoustic  Guitar"]\nI hope this helps! Let me know if you need more.', ["man", "acoustic guitar"]),
        ('Reasoning...\n```json\nOBJECTS: ["dog", "ocean"]\n```', ["dog", "ocean"]),
        ('**OBJECTS:** ["drum", "bell", "flute", "siren", "engine", "bird"]', ["drum", "bell", "flute", "siren"]),
        ('OBJECTS: ["dog", "Dog", "a dog", "bird"]', ["dog", "bird"]),
        ("Nothing here makes a sound.\nOBJECTS: []", []),
        ('{"objects": ["bird", "engine"]}', ["bird", "engine"]),
        ('I must end with OBJECTS: and a JSON list.\nThe woman could be speaking.\nOBJECTS: ["woman"]', ["woman"]),
        ('OBJECTS: [1, 2, {"a": 3}]', []),  # JSON, but no names
        ('OBJECTS: ["x", "a man playing a red electric guitar on stage"]', []),  # a letter, and a sentence
    ],
)
def test_parse_well_formed_answers(output, expected):
    assert parse_cues(output) == expected


@pytest.mark.parametrize(
    "output, expected",
    [
        ("```json\n[\"dog\", \"ocean\"]\n```", ["dog", "ocean"]),  # no marker, fenced JSON
        ("OBJECTS: ['man', 'drum']", ["man", "drum"]),  # Python-style list
        ("OBJECTS: man, drum", ["man", "drum"]),  # no brackets
        ('The man sings.\nOBJECTS: ["man", "gui', ["man"]),  # cut off by the token limit
        ("The [man] is touching the upper edge of his guitar", ["man"]),  # the paper's markup
        ("OBJECTS: none", []),
        ("", []),
        ("etheretherether ts\ufffd^ts\ufffd^ ]][[ {{ 12 3", []),
    ],
)
def test_parse_malformed_answers_fall_back_without_inventing(output, expected, caplog):
    with caplog.at_level("WARNING", logger="avseg.cues.prompt"):
        names = parse_cues(output)
    assert names == expected
    assert caplog.records  # every fallback is logged
    for name in names:
        assert name in output.lower()


def test_prompt_asks_with_worked_examples():
    messages = build_messages("a  man\nplaying a guitar")
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(EXAMPLES) + ["user"]
    assert '"a man playing a guitar"' in messages[-1]["content"]
    assert "touching the upper edge of his guitar" in messages[1]["content"]
    assert [parse_cues(m["content"]) for m in messages[2::2]] == [["man"], ["dog", "ocean"], []]


# --- the model wrappers -----------------------------------------------------------------------


def test_captioner_is_deterministic_and_batch_independent(models):
    captioner, _ = models
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + 8 * k, 48, 3), dtype=np.uint8) for k in range(3)]
    batched = captioner.caption(images)
    assert len(batched) == 3 and all(isinstance(c, str) for c in batched)
    assert batched == captioner.caption(images)
    assert batched == [captioner.caption([image])[0] for image in images]
    assert captioner.caption([]) == []

    from avseg.cues.captioner import Captioner

    prompted = Captioner(captioner.model, captioner.processor, name="prompted", prompt="a photo of", max_new_tokens=8)
    raw = prompted.processor.batch_decode(
        prompted.model.generate(
            **prompted.processor(images=[Image.fromarray(images[0])], text=["a photo of"], return_tensors="pt"),
            generation_config=prompted.generation_config,
        ),
        skip_special_tokens=True,
    )[0]
    assert raw.startswith("a photo of")  # the decoder echoes its prompt ...
    assert prompted.caption(images[:1]) == [" ".join(raw.removeprefix("a photo of").split())]  # ... which is removed
    with pytest.raises(ValueError, match="uint8"):
        captioner.caption([images[0].astype(np.float32)])


def test_llm_left_padding_gives_the_same_answers_as_one_by_one(models):
    _, llm = models
    conversations = [build_messages("a man"), build_messages("a dog barking next to a red car on a busy street at night")]
    assert llm.tokenizer.padding_side == "left"
    assert llm.generate(conversations) == [llm.generate([c])[0] for c in conversations]
    assert llm.generate([]) == []


def test_model_loading_errors_are_one_line(tmp_path, model_dirs):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from avseg.cues.captioner import Captioner
    from avseg.cues.llm import CueLLM

    with pytest.raises(ConfigError, match="cannot load an image captioner"):
        Captioner.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="cannot load a language model"):
        CueLLM.from_pretrained(str(tmp_path / "nowhere"))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_dirs / "llm"))
    tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        CueLLM(AutoModelForCausalLM.from_pretrained(str(model_dirs / "llm")), tokenizer)


# --- the pipeline and its cache ---------------------------------------------------------------


def test_cli_generates_caches_and_skips_finished_frames(tmp_path, model_dirs, capsys):
    write_dataset("s4", tmp_path / "s4", videos=3, seed=1, size=32)
    args = [
        "cues", "--data", str(tmp_path / "s4"), "--layout", "s4", "--out", str(tmp_path / "cues"),
        "--captioner", str(model_dirs / "captioner"), "--llm", str(model_dirs / "llm"),
        "--batch-size", "16", "--device", "cpu",
    ]  # fmt: skip
    assert main(args) == 0
    assert "cues for 15 frames" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "cues" / "manifest.json").read_text())
    assert manifest["captioner"]["model"] == str(model_dirs / "captioner") and manifest["dataset"] == "S4"
    entries = read_entries(tmp_path / "cues")
    assert len(entries) == 15
    for entry in entries:
        assert isinstance(entry["caption"], str) and isinstance(entry["llm_output"], str)
        assert_grounded(entry)
    cues = load_cues(tmp_path / "cues")
    assert sorted(cues) == sorted(record.id for record in S4(tmp_path / "s4", split=None).records)
    assert all(len(frames) == 5 for frames in cues.values())
    assert main(args) == 0
    assert "0 new" in capsys.readouterr().out and len(read_entries(tmp_path / "cues")) == 15


def test_interrupted_run_resumes_without_redoing_frames(tmp_path, models, synthetic):
    captioner, llm = models
    dataset = MS3(synthetic / "ms3", split="test")
    total = sum(len(record.frames) for record in dataset.records)
    failing = Counting(llm, fail_at=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_cues(dataset, tmp_path / "cues", captioner, failing, batch_size=4)
    first = read_entries(tmp_path / "cues")
    assert len(first) == 8  # two batches finished before the third LLM call failed
    assert len(load_cues(tmp_path / "cues")) == 1  # only the first clip has all its frames
    with (tmp_path / "cues" / FRAMES).open("a") as file:
        file.write('{"clip": "torn')  # a write cut short by a crash

    counted_captioner, counted_llm = Counting(captioner), Counting(llm)
    stats = generate_cues(dataset, tmp_path / "cues", counted_captioner, counted_llm, batch_size=4)
    assert (stats.cached, stats.generated, stats.frames) == (8, total - 8, total)
    assert counted_captioner.items == counted_llm.items == total - 8
    entries = read_entries(tmp_path / "cues")
    assert entries[:8] == first and len(entries) == total
    for entry in entries:
        assert_grounded(entry)  # random-model garbage never yields an invented cue
    assert len({(e["clip"], e["frame"]) for e in entries}) == total
    cues = load_cues(tmp_path / "cues")
    assert sorted(cues) == sorted(record.id for record in dataset.records)


def test_cache_of_other_models_is_refused(tmp_path, synthetic):
    dataset = S4(synthetic / "s4", split="test")
    generate_cues(dataset, tmp_path / "cues", FakeCaptioner(), ScriptedLLM(['OBJECTS: ["guitar"]']))
    with pytest.raises(ConfigError, match="another folder"):
        generate_cues(dataset, tmp_path / "cues", FakeCaptioner("other"), ScriptedLLM(['OBJECTS: ["guitar"]']))
    with pytest.raises(ConfigError, match="another folder"):
        write_oracle_cues(dataset, tmp_path / "cues")
    with pytest.raises(ConfigError, match="batch size"):
        generate_cues(dataset, tmp_path / "other", FakeCaptioner(), ScriptedLLM(["x"]), batch_size=0)
    (tmp_path / "cues" / FRAMES).write_text('{"clip": "a"}\n')
    with pytest.raises(DatasetError, match="line 1"):
        load_cues(tmp_path / "cues")
    with pytest.raises(DatasetError, match="not a cue cache"):
        load_cues(tmp_path / "missing")


def test_malformed_llm_answers_never_crash_or_invent(tmp_path, synthetic):
    answers = [
        'OBJECTS: ["guitar", "Wall", "guitar", "amp", "crowd", "drummer"]',
        "```json\n[\"guitar\"]\n```",
        "The [guitar] could be played.",
        'OBJECTS: ["guit',
        "",
        "\ufffd\ufffd ]]{{ OBJECTS OBJECTS: : [[",
        "I cannot tell what is in the picture.",
    ]
    dataset = MS3(synthetic / "ms3", split="train")
    stats = generate_cues(dataset, tmp_path / "cues", FakeCaptioner(), ScriptedLLM(answers), batch_size=3)
    entries = read_entries(tmp_path / "cues")
    assert len(entries) == stats.generated == stats.frames
    for entry in entries:
        assert_grounded(entry)
    assert {tuple(e["cues"]) for e in entries} == {("guitar", "wall", "amp", "crowd"), ("guitar",), ()}


def test_identical_frames_are_answered_once(tmp_path, synthetic):
    dataset = RefAVS(synthetic / "refavs", split=None)  # one row per object of a video, all with its frames
    videos = {record.meta["vid"] for record in dataset.records}
    captioner = FakeCaptioner()
    stats = generate_cues(dataset, tmp_path / "cues", captioner, ScriptedLLM(['OBJECTS: ["guitar"]']), batch_size=8)
    assert captioner.images == stats.generated == 10 * len(videos) < stats.frames
    assert stats.reused == stats.frames - stats.generated
    cues = load_cues(tmp_path / "cues")
    assert sorted(cues) == sorted(record.id for record in dataset.records)
    captions = {}
    for entry in read_entries(tmp_path / "cues"):
        assert captions.setdefault(entry["image"], entry["caption"]) == entry["caption"]


def test_padding_frames_are_not_captioned(tmp_path, synthetic):
    dataset = AVSS(synthetic / "avss", split=None)
    captioner = FakeCaptioner()
    generate_cues(dataset, tmp_path / "cues", captioner, ScriptedLLM(['OBJECTS: ["guitar"]']), batch_size=8)
    assert captioner.images == sum(len(record.frames) for record in dataset.records)
    cues = load_cues(tmp_path / "cues")
    for record in dataset.records:
        frames = cues[record.id]
        assert len(frames) == record.num_frames == 10
        assert frames[: len(record.frames)] == [["guitar"]] * len(record.frames)
        assert frames[len(record.frames) :] == [[]] * (10 - len(record.frames))


# --- oracle cues ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["s4", "ms3", "avss", "refavs"])
def test_oracle_cues_are_the_synthetic_visible_names(tmp_path, synthetic, layout, capsys):
    out = tmp_path / "oracle"
    assert main(["cues", "--oracle", "--data", str(synthetic / layout), "--layout", layout, "--out", str(out)]) == 0
    assert "cues for" in capsys.readouterr().out
    objects = load_objects(synthetic / layout)
    assert oracle_cues(synthetic / layout) == {clip: entry["visible"] for clip, entry in objects.items()}
    cues = load_cues(out)
    dataset = {"s4": S4, "ms3": MS3, "avss": AVSS, "refavs": RefAVS}[layout](synthetic / layout, split=None)
    assert sorted(cues) == sorted(record.id for record in dataset.records)
    for record in dataset.records:
        visible = objects[record.id if layout != "refavs" else record.meta["vid"]]["visible"]
        assert cues[record.id][: len(visible)] == visible
        assert all(frame == [] for frame in cues[record.id][len(visible) :])
    assert main(["cues", "--oracle", "--data", str(synthetic / layout), "--layout", layout, "--out", str(out)]) == 0
    assert "0 new" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path, synthetic, capsys):
    base = ["cues", "--data", str(synthetic / "s4"), "--layout", "s4", "--out", str(tmp_path / "c")]
    assert main([*base, "--oracle", "--llm", "x"]) == 2
    assert main([*base, "--batch-size", "0"]) == 2
    assert main([*base, "--captioner", str(tmp_path / "nowhere")]) == 2
    assert main(["cues", "--oracle", "--data", str(tmp_path / "nodata"), "--layout", "ms3", "--out", str(tmp_path / "c")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("avseg: error: ") for line in errors)
    assert "--oracle" in errors[0] and "--batch-size" in errors[1] and "nowhere" in errors[2]
