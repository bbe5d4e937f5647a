"""The zero-shot model's vocabulary: what CLAP listens for and what SAM 3 is asked to find.

An entry names a sound and the object that makes it (``"dog barking: dog"``);
built-in vocabularies cover AVSBench-object (S4, MS3) and AVSBench-semantic
(AVSS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avseg.errors import ConfigError


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
