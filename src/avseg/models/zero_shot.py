"""Zero-shot AVS with LAION CLAP and SAM 3 (model name ``zeroshot-sam3``).

No AVS training data is used, the field's central shortage. For each second
of audio and its frame:

1. **Gate.** A second whose RMS level is below ``silence_db`` (-60 dBFS, the
   rule of TeSO's dynamic mask) is silent: nothing is prompted, the mask is
   empty, and neither CLAP nor SAM 3 runs.
2. **Hear.** LAION CLAP (transformers ``ClapModel``, default
   ``laion/larger_clap_general``) embeds the second, resampled to the 48 kHz
   of its feature extractor, which repeat-pads short audio to CLAP's 10-s
   input. The embedding is scored against the vocabulary's texts
   ``"This is a sound of {sound}."`` (LAION-CLAP's zero-shot template) and
   turned into class probabilities with CLAP's own learned temperature,
   ``softmax(exp(logit_scale_a) * cosine)``: the calibration contrastive
   training gave it, not one fitted here.
3. **Choose.** Classes with probability at least ``min_probability`` (0.25: a
   class must take a quarter of the mass, so at most four ever can) become
   prompts, the ``max_prompts`` (3) most probable at most. A sound that
   matches nothing in the vocabulary well prompts nothing.
4. **Look.** SAM 3 (transformers ``Sam3Model``) is prompted with each chosen
   class's object name. The frame's vision features are computed once and
   shared by its prompts, which run as one batch. A query scores
   ``sigmoid(pred_logits) * sigmoid(presence_logits)``, as SAM 3's own
   post-processing does; the queries scoring above ``query_threshold`` (0.5)
   form the class's mask logits, their pixel-wise maximum (the union of the
   instances: sigmoid is monotone, so the max logit is the max probability).
5. **Combine.** The class maps are resized bilinearly from SAM 3's mask
   resolution to the label size. Binary logits are their maximum over the
   prompted classes: > 0 where some prompted class claims the pixel, and
   ``EMPTY_LOGIT`` (-100, certain background) where nothing was prompted or
   no query passed. For AVSS the output is per-class logits
   ``(T, 1 + V, H, W)``: background 0 and each prompted class its map, so the
   argmax is a class exactly where the binary logit is > 0 and the most
   confident class wins where masks overlap.

The thresholds are reasoned defaults, not tuned on AVSBench here; they are
settings (:class:`ZeroShotConfig`). SAM 3's preprocessing is reimplemented
without torchvision (:func:`sam3_pixel_values`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from avseg.audio import level_db, resample, second_windows
from avseg.config import Recipe, build_config
from avseg.data.clip import Clip
from avseg.errors import AvsegError, ConfigError

MODEL_NAME = "zeroshot-sam3"
SOUND_TEMPLATE = "This is a sound of {}."
SAM3_IMAGE_SIZE = 1008
SAM3_MEAN = SAM3_STD = 0.5
EMPTY_LOGIT = -100.0


@dataclass(frozen=True)
class Category:
    """A vocabulary entry: ``name`` (reported), ``sound`` (what CLAP listens for), ``visual`` (SAM 3's prompt)."""

    name: str
    sound: str
    visual: str

    @classmethod
    def parse(cls, entry: str) -> Category:
        """``"dog barking: dog"`` (the sound, then the object that makes it) or ``"dog"`` (both)."""
        sound, _, visual = (part.strip() for part in entry.partition(":"))
        return cls(sound, sound, visual or sound)

    @classmethod
    def from_class_name(cls, name: str) -> Category:
        """A dataset class name (``emergency-car``, ``race_car``) in words, for both models."""
        text = AVSS_TEXT.get(name, name.replace("_", " ").replace("-", " "))
        return cls(name, text, text)


S4_VOCABULARY = tuple(
    Category(name, name.replace("_", " "), visual)
    for name, visual in (
        ("baby_laughter", "baby"),
        ("female_singing", "woman"),
        ("male_speech", "man"),
        ("dog_barking", "dog"),
        ("cat_meowing", "cat"),
        ("lions_roaring", "lion"),
        ("horse_clip-clop", "horse"),
        ("coyote_howling", "coyote"),
        ("mynah_bird_singing", "mynah bird"),
        ("playing_acoustic_guitar", "acoustic guitar"),
        ("playing_tabla", "tabla"),
        ("playing_violin", "violin"),
        ("playing_piano", "piano"),
        ("playing_ukulele", "ukulele"),
        ("playing_glockenspiel", "glockenspiel"),
        ("helicopter", "helicopter"),
        ("race_car", "race car"),
        ("driving_buses", "bus"),
        ("ambulance_siren", "ambulance"),
        ("typing_on_computer_keyboard", "computer keyboard"),
        ("chainsawing_trees", "chainsaw"),
        ("cap_gun_shooting", "cap gun"),
        ("lawn_mowing", "lawn mower"),
    )
)
"""The 23 AVSBench-object (S4, MS3) categories (the official ``preprocess_s4.py`` list), each with the object
that makes the sound as SAM 3's prompt."""

AVSS_CLASSES = (
    "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy", "bus", "car", "cat", "cello",
    "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck", "elephant", "emergency-car", "erhu", "flute",
    "frying-food", "girl", "goose", "guitar", "gun", "guzheng", "hair-dryer", "handpan", "harmonica", "harp",
    "helicopter", "hen", "horse", "keyboard", "leopard", "lion", "man", "marimba", "missile-rocket", "motorcycle",
    "mower", "parrot", "piano", "pig", "pipa", "saw", "saxophone", "sheep", "sitar", "sorna", "squirrel", "tabla",
    "tank", "tiger", "tractor", "train", "trombone", "truck", "trumpet", "tuba", "ukulele", "utv", "vacuum-cleaner",
    "violin", "wolf", "woman",
)  # fmt: skip
"""The 70 AVSBench-semantic classes in ``label2idx.json`` order (index 1..70; 0 is background)."""

AVSS_TEXT = {"sorna": "suona", "utv": "utility vehicle"}
"""AVSS names that are not words either model knows: ``sorna`` is the suona (a Chinese horn)."""

VOCABULARIES = {"s4": S4_VOCABULARY, "avss": tuple(Category.from_class_name(name) for name in AVSS_CLASSES)}


def load_vocabulary(spec: str) -> tuple[Category, ...]:
    """``s4`` (23 categories), ``avss`` (70 classes), a text file (one entry per line, ``#`` starts a comment)
    or a comma-separated list; entries as :meth:`Category.parse`."""
    if spec in VOCABULARIES:
        return VOCABULARIES[spec]
    path = Path(spec)
    if path.is_file():
        try:
            entries = [line.split("#")[0] for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a UTF-8 text file (expected one vocabulary entry per line)") from None
    elif path.suffix == ".txt":
        raise ConfigError(f"{path}: vocabulary file not found")
    else:
        entries = spec.split(",")
    vocabulary = tuple(Category.parse(entry) for entry in entries if entry.strip())
    names = [category.name for category in vocabulary]
    if not vocabulary:
        raise ConfigError(f"vocabulary {spec!r}: no entries")
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"vocabulary {spec!r}: {duplicate!r} appears twice")
    return vocabulary


@dataclass
class ZeroShotConfig:
    """Settings of ``zeroshot-sam3``: a recipe's ``model_config``, or ``avseg segment``'s options."""

    clap_model: str = "laion/larger_clap_general"
    """LAION CLAP: a transformers ``ClapModel`` hub name or folder, with its feature extractor and tokenizer."""
    sam3_model: str = "facebook/sam3"
    """SAM 3: a transformers ``Sam3Model`` hub name or folder, with its tokenizer."""
    vocabulary: str | None = None
    """See :func:`load_vocabulary`. None: ``s4`` on S4 and MS3, ``avss`` elsewhere. AVSS evaluation always
    uses the dataset's own classes, so its semantic maps index them."""
    template: str = SOUND_TEMPLATE
    silence_db: float = -60.0
    min_probability: float = 0.25
    max_prompts: int = 3
    query_threshold: float = 0.5

    def __post_init__(self) -> None:
        if "{}" not in self.template:
            raise ConfigError(f"template: {self.template!r} has no {{}} for the sound")
        if not 0 < self.min_probability <= 1:
            raise ConfigError(f"min_probability: must lie in (0, 1], got {self.min_probability}")
        if self.max_prompts < 1:
            raise ConfigError(f"max_prompts: must be at least 1, got {self.max_prompts}")
        if not 0 <= self.query_threshold < 1:
            raise ConfigError(f"query_threshold: must lie in [0, 1), got {self.query_threshold}")


def zero_shot_config(settings: dict[str, Any], where: str = "zero-shot settings: ") -> ZeroShotConfig:
    """A :class:`ZeroShotConfig` from a mapping; unknown keys and wrong types are one-line errors."""
    return build_config(ZeroShotConfig, settings, where)


def sam3_pixel_values(frames: np.ndarray, size: int = SAM3_IMAGE_SIZE) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` frames -> float ``(T, 3, size, size)``, as ``Sam3ImageProcessor`` without torchvision.

    The official processor resizes the uint8 image to 1008x1008 (bilinear with antialiasing, aspect ratio
    not kept), so the result is rounded to whole grey levels, then rescales by 1/255 and normalises with
    mean = std = 0.5. Here the resize runs in float and is rounded the same way; torchvision's fixed-point
    uint8 kernel can differ by one grey level.
    """
    images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    images = images.round().clamp(0, 255)
    return (images / 255 - SAM3_MEAN) / SAM3_STD


class ClapScorer(nn.Module):
    """LAION CLAP scoring 1-s windows against the vocabulary's sound texts (embedded once, here)."""

    def __init__(self, model: nn.Module, feature_extractor: Any, tokenizer: Any, sounds: Sequence[str], template: str):
        super().__init__()
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        tokens = tokenizer([template.format(sound) for sound in sounds], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            texts = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        self.register_buffer("text_embeddings", texts.pooler_output, persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @torch.no_grad()
    def probabilities(self, windows: np.ndarray) -> torch.Tensor:
        """``(N, sample_rate)`` windows -> ``(N, V)`` class probabilities, on the CPU.

        ``is_longer`` is False for every window: none is longer than CLAP's 10 s (for short audio the
        extractor of fused CLAP models would mark one at random, so results would depend on the batch).
        """
        features = self.feature_extractor(list(windows), sampling_rate=self.sample_rate, return_tensors="pt")
        device, dtype = self.text_embeddings.device, self.text_embeddings.dtype
        audio = self.model.get_audio_features(
            input_features=features["input_features"].to(device, dtype),
            is_longer=torch.zeros(len(windows), 1, dtype=torch.bool, device=device),
        ).pooler_output
        logits = self.model.logit_scale_a.exp() * audio @ self.text_embeddings.T
        return logits.softmax(-1).cpu()


class Sam3Prompter(nn.Module):
    """SAM 3 prompted with the vocabulary's object names (tokenised once, here), several classes per frame."""

    def __init__(self, model: nn.Module, tokenizer: Any, prompts: Sequence[str], query_threshold: float):
        super().__init__()
        self.model = model.eval()
        self.query_threshold = query_threshold
        length = model.config.text_config.max_position_embeddings  # SAM 3's processor pads every prompt to it
        tokens = tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        self.register_buffer("input_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("attention_mask", tokens["attention_mask"], persistent=False)

    @torch.no_grad()
    def class_logits(self, frame: np.ndarray, classes: Sequence[int]) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` frame -> ``(len(classes), h, w)`` mask logits at SAM 3's mask resolution."""
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        device = self.input_ids.device
        pixels = sam3_pixel_values(frame[None], self.model.config.image_size).to(device, self.model.dtype)
        vision = self.model.get_vision_features(pixel_values=pixels)
        shared = Sam3VisionEncoderOutput(
            fpn_hidden_states=tuple(h.expand(len(classes), -1, -1, -1) for h in vision.fpn_hidden_states),
            fpn_position_encoding=tuple(p.expand(len(classes), -1, -1, -1) for p in vision.fpn_position_encoding),
        )
        index = torch.as_tensor(list(classes), device=device)
        outputs = self.model(vision_embeds=shared, input_ids=self.input_ids[index], attention_mask=self.attention_mask[index])
        scores = outputs.pred_logits.sigmoid() * outputs.presence_logits.sigmoid()
        rejected = (scores <= self.query_threshold)[..., None, None]
        return outputs.pred_masks.masked_fill(rejected, EMPTY_LOGIT).amax(1)


@dataclass
class Heard:
    """What the audio of one second decided: its level, CLAP's probabilities (None if gated), the prompts."""

    level_db: float
    probabilities: torch.Tensor | None
    prompted: list[int]


class ZeroShotSegmenter:
    """Clips in, per-frame logits out (binary ``(T, H, W)``, or ``(T, 1 + V, H, W)`` when ``semantic``)."""

    def __init__(
        self,
        clap: ClapScorer,
        sam3: Sam3Prompter,
        vocabulary: Sequence[Category],
        config: ZeroShotConfig,
        semantic: bool = False,
        device: str | torch.device = "cpu",
    ):
        self.clap = clap.to(device)
        self.sam3 = sam3.to(device)
        self.vocabulary = tuple(vocabulary)
        self.config = config
        self.semantic = semantic

    def hear(self, clip: Clip) -> list[Heard]:
        """Gate, score and choose the prompts of every second of ``clip`` (CLAP runs on sounding ones only)."""
        levels = level_db(clip.waveform, clip.sample_rate, clip.num_frames)
        sounding = np.flatnonzero(levels > self.config.silence_db)
        probabilities: dict[int, torch.Tensor] = {}
        if len(sounding):
            rate = self.clap.sample_rate
            windows = second_windows(resample(clip.waveform, clip.sample_rate, rate), rate, clip.num_frames)
            probabilities = dict(zip(sounding.tolist(), self.clap.probabilities(windows[sounding])))
        return [Heard(float(level), probabilities.get(t), self.choose(probabilities.get(t))) for t, level in enumerate(levels)]

    def choose(self, probabilities: torch.Tensor | None) -> list[int]:
        """The classes to prompt: probability >= ``min_probability``, the ``max_prompts`` most probable."""
        if probabilities is None:
            return []
        top = probabilities.topk(min(self.config.max_prompts, len(probabilities)))
        return [int(c) for p, c in zip(top.values, top.indices) if p >= self.config.min_probability]

    @torch.no_grad()
    def predict_with_details(self, clips: Sequence[Clip]) -> tuple[list[torch.Tensor], list[list[dict[str, Any]]]]:
        """Logits of each clip's valid frames at its label size, and per frame :meth:`describe`'s fields."""
        logits, details = [], []
        for clip in clips:
            heard = self.hear(clip)
            size = tuple(clip.masks.shape[1:] if clip.masks is not None else clip.frames.shape[1:3])
            frames = np.flatnonzero(clip.frame_valid)
            logits.append(torch.stack([self.frame_logits(clip.frames[t], heard[t].prompted, size) for t in frames]))
            details.append([self.describe(heard[t]) for t in frames])
        return logits, details

    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]:
        return self.predict_with_details(clips)[0]

    def frame_logits(self, frame: np.ndarray, prompted: list[int], size: tuple[int, int]) -> torch.Tensor:
        """One frame's binary ``(H, W)`` or per-class ``(1 + V, H, W)`` logits (see the module docstring)."""
        maps = torch.empty(0, *size)
        if prompted:
            maps = F.interpolate(self.sam3.class_logits(frame, prompted)[None].float(), size=size, mode="bilinear", align_corners=False)
            maps = maps[0].cpu()
        if not self.semantic:
            return torch.cat([maps, torch.full((1, *size), EMPTY_LOGIT)]).amax(0)
        logits = torch.full((1 + len(self.vocabulary), *size), EMPTY_LOGIT)
        logits[0] = 0.0
        logits[[1 + c for c in prompted]] = maps
        return logits

    def describe(self, heard: Heard) -> dict[str, Any]:
        """``avseg segment``'s summary fields: ``sounding_score`` (CLAP's top class probability, 0 when the
        gate closed), the top class, the prompted class names and the level in dBFS."""
        probabilities = heard.probabilities
        return {
            "sounding_score": float(probabilities.max()) if probabilities is not None else 0.0,
            "top_class": self.vocabulary[int(probabilities.argmax())].name if probabilities is not None else None,
            "prompts": [self.vocabulary[c].name for c in heard.prompted],
            "level_db": round(heard.level_db, 1),
        }


class ZeroShotSystem:
    """``zeroshot-sam3`` for the registry: CLAP and SAM 3, frozen; nothing to train."""

    def __init__(self, clap: ClapScorer, sam3: Sam3Prompter, vocabulary: Sequence[Category], config: ZeroShotConfig, semantic: bool):
        self.model = nn.ModuleDict({"clap": clap, "sam3": sam3})
        self.vocabulary = tuple(vocabulary)
        self.config = config
        self.semantic = semantic

    @property
    def sample_rate(self) -> int:
        """The audio rate CLAP hears (clips at another rate are resampled)."""
        return self.model["clap"].sample_rate

    @classmethod
    def from_models(
        cls,
        clap: nn.Module,
        clap_features: Any,
        clap_tokenizer: Any,
        sam3: nn.Module,
        sam3_tokenizer: Any,
        config: ZeroShotConfig,
        vocabulary: Sequence[Category],
        semantic: bool = False,
    ) -> ZeroShotSystem:
        """From loaded transformers models (``ClapModel``, ``Sam3Model``), their processors and a vocabulary."""
        scorer = ClapScorer(clap, clap_features, clap_tokenizer, [c.sound for c in vocabulary], config.template)
        prompter = Sam3Prompter(sam3, sam3_tokenizer, [c.visual for c in vocabulary], config.query_threshold)
        return cls(scorer, prompter, vocabulary, config, semantic)

    @classmethod
    def from_pretrained(cls, config: ZeroShotConfig, class_names: Sequence[str] | None = None, default_vocabulary: str = "avss") -> ZeroShotSystem:
        """CLAP and SAM 3 from ``config``'s hub names or folders (loaded strictly).

        With ``class_names`` (a semantic task's classes, background first) the output is a semantic map over
        them; otherwise binary, over ``config.vocabulary`` (``default_vocabulary`` if unset).
        """
        from transformers import (
            AutoTokenizer,
            ClapFeatureExtractor,
            ClapModel,
            Sam3Model,
        )
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # keep the CLI's output to our own lines
        if class_names is not None and config.vocabulary is not None:
            raise ConfigError("vocabulary: a semantic task is scored on the dataset's own classes; leave vocabulary unset")
        if class_names is not None:
            vocabulary = tuple(Category.from_class_name(name) for name in class_names[1:])
        else:
            vocabulary = load_vocabulary(config.vocabulary or default_vocabulary)
        return cls.from_models(
            clap=_load_model(ClapModel, config.clap_model, "CLAP"),
            clap_features=_load(ClapFeatureExtractor.from_pretrained, config.clap_model, "CLAP's feature extractor"),
            clap_tokenizer=_load(AutoTokenizer.from_pretrained, config.clap_model, "CLAP's tokenizer"),
            sam3=_load_model(Sam3Model, config.sam3_model, "SAM 3"),
            sam3_tokenizer=_load(AutoTokenizer.from_pretrained, config.sam3_model, "SAM 3's tokenizer"),
            config=config,
            vocabulary=vocabulary,
            semantic=class_names is not None,
        )

    @classmethod
    def from_recipe(cls, recipe: Recipe, num_classes: int = 2) -> ZeroShotSystem:
        """From a recipe's ``model_config``; a semantic task (``num_classes > 2``: AVSS) is scored on the
        classes of the recipe's dataset (its ``label2idx.json``)."""
        from avseg.data.avsbench import AVSS, read_class_names

        config = zero_shot_config(recipe.model_config, f"{recipe.source or 'recipe'}: model_config")
        class_names = None
        if num_classes > 2:
            class_names = read_class_names(AVSS.resolve_root(Path(recipe.data.root)) / AVSS.label_file)
        return cls.from_pretrained(config, class_names, "s4" if recipe.data.layout in ("s4", "ms3") else "avss")

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int) -> Any:
        raise ConfigError(f"{MODEL_NAME} has nothing to train; evaluate it with avseg evaluate RECIPE")

    def segmenter(self, device: str | torch.device = "cpu") -> ZeroShotSegmenter:
        return ZeroShotSegmenter(self.model["clap"], self.model["sam3"], self.vocabulary, self.config, self.semantic, device)


def _load(load: Callable[[str], Any], name: str, what: str) -> Any:
    """``load(name)``, with a one-line error when it cannot be found or read."""
    try:
        return load(name)
    except (OSError, ValueError) as exc:
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise AvsegError(f"{name}: cannot load {what} ({reason})") from None


def _load_model(model_class: Any, name: str, what: str) -> nn.Module:
    """A transformers model, refusing weights that leave any of its parameters uninitialised."""
    model, info = _load(lambda n: model_class.from_pretrained(n, output_loading_info=True), name, what)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise AvsegError(f"{name}: the {what} weights lack {len(missing)} parameters, e.g. {missing[0]}")
    return model.eval()


def tiny_clap_config() -> Any:
    """A ``ClapConfig`` of the real classes at toy width (random weights: tests and offline demos)."""
    from transformers import ClapConfig

    text = {"vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    audio = {"hidden_size": 32, "patch_embeds_hidden_size": 16, "depths": [1, 1], "num_attention_heads": [2, 2], "num_hidden_layers": 2}
    special = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    return ClapConfig(text_config={**text, **special, "max_position_embeddings": 40}, audio_config=audio, projection_dim=32)


def tiny_sam3_config(image_size: int = 112) -> Any:
    """A ``Sam3Config`` of the real classes at toy width: a 2-layer ViT on ``image_size`` (a multiple of 56)."""
    from transformers import Sam3Config

    grid = image_size // 14
    layer = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    backbone = {
        "model_type": "sam3_vit_model", **layer, "num_hidden_layers": 2, "image_size": image_size, "patch_size": 14,
        "window_size": grid // 2, "global_attn_indexes": [1], "pretrain_image_size": image_size // 2,
    }  # fmt: skip
    text = {"vocab_size": 256, "projection_dim": 32, "num_hidden_layers": 1, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    return Sam3Config(
        vision_config={"backbone_config": backbone, "fpn_hidden_size": 32, "backbone_feature_sizes": [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2]},
        text_config={**layer, **text},
        geometry_encoder_config={**layer, "num_layers": 1},
        detr_encoder_config={**layer, "num_layers": 1},
        detr_decoder_config={**layer, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
