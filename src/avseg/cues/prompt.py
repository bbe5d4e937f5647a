"""The chain-of-thought instruction that turns a caption into text cues, and the parser of its answer.

TeSO (ECCV 2024) asks a frozen LLM, "prompted with chain-of-thought
instructions", for the potential sounding objects in a frame's caption: "The
[man] is touching the upper edge of his guitar" gives ``man``. The paper does
not publish its prompt; this one is ours.

The prompt. A system line states the task; the user turn gives the caption and
asks the model to (1) list what the caption mentions, (2) decide for each one
whether it could be making a sound in this scene, and (3) keep at most
:data:`MAX_CUES`, most likely first, named with words from the caption. The
answer ends with one machine-readable line, ``OBJECTS: ["man", "guitar"]`` (a
JSON list). Three worked examples precede the real caption as earlier chat
turns: the paper's own (the guitar is only touched, so only the man is kept), a
scene with two sources (a dog and the ocean) and a scene with none (``[]``).
Cues are *potential* sources: TeSO's audio then selects among them, so the
prompt asks for what *could* sound, not for what does.

The parser, :func:`parse_cues`, never raises and never invents a cue: every
name it returns is a span of the LLM's output (lower-cased, whitespace
collapsed, a leading article dropped). Spans that are not object names are
dropped: fewer than two letters, more than :data:`MAX_NAME_WORDS` words, or a
word for "no object" such as ``none``. A well-formed answer is the last
``OBJECTS:`` marker followed by a JSON list. Anything else is logged as a
warning and read by the first of these fallbacks that finds something:

1. the text after the last ``OBJECTS:`` marker, read leniently: a Python-style
   list, an unquoted comma-separated list, or, when the list was cut off by
   the token limit, only its complete quoted names;
2. the last JSON list of strings anywhere in the output (a model that dropped
   the marker, or wrapped its list in a markdown code fence);
3. the paper's markup: single names in square brackets, as in "The [man] ...";
4. otherwise no cue at all: an empty list, which TeSO's dynamic mask treats as
   "nothing could sound" rather than as a made-up object.

We do not fall back to guessing nouns from the caption: without the LLM's
judgement that would turn every wall and shirt into a sound source. The raw
output is cached next to the parsed cues, so a better parser can be re-run
later without the models.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import warnings
from typing import Iterator

logger = logging.getLogger(__name__)

MAX_CUES = 4
"""K in the paper: at most 4 cues per frame."""

MAX_NAME_WORDS = 4
"""A cue longer than this is a sentence, not an object name, and is dropped."""

SYSTEM = (
    "You read short descriptions of video frames and find the things in them that could be making a sound. "
    "You reason step by step and end with a machine-readable answer."
)

INSTRUCTION = """Description of a video frame: "{caption}"

Which things in this description could be making a sound? Think step by step:
1. List the people, animals, instruments, vehicles, machines and other objects that the description mentions.
2. For each one, decide whether it could be making a sound in this scene. People speak or sing, animals call, instruments sound when they are played, and vehicles and machines sound when they run. Things such as a wall, a table, the sky or a shirt cannot make a sound themselves.
3. Keep at most {max_cues} of them, the most likely first, each named with a short noun phrase taken from the description.

End your answer with one last line that starts with OBJECTS: followed by a JSON list of the names. Write OBJECTS: [] if nothing in the description could be making a sound."""

EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "a man is touching the upper edge of his guitar",
        "The description mentions a man and a guitar.\n"
        "The man could be speaking or singing. The guitar is only touched at its edge, not played, "
        "so it is probably silent.\n"
        'OBJECTS: ["man"]',
    ),
    (
        "a dog running on the beach next to the ocean",
        "The description mentions a dog, a beach and the ocean.\n"
        "The dog could be barking. The waves of the ocean make a sound. The beach itself is silent.\n"
        'OBJECTS: ["dog", "ocean"]',
    ),
    (
        "a red brick wall with a window",
        "The description mentions a brick wall and a window.\n"
        "Neither a wall nor a window can make a sound by itself.\n"
        "OBJECTS: []",
    ),
)

PROMPT_ID = hashlib.sha256(json.dumps([SYSTEM, INSTRUCTION, EXAMPLES, MAX_CUES]).encode()).hexdigest()[:12]
"""Changes whenever the prompt does, so caches made with another prompt are not mixed in."""


def build_messages(caption: str) -> list[dict[str, str]]:
    """The chat (system, worked examples, then the caption) that asks for ``caption``'s sound sources."""
    messages = [{"role": "system", "content": SYSTEM}]
    for example, answer in EXAMPLES:
        messages.append({"role": "user", "content": _instruction(example)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _instruction(caption)})
    return messages


def _instruction(caption: str) -> str:
    return INSTRUCTION.format(caption=" ".join(caption.split()), max_cues=MAX_CUES)


_MARKER = re.compile(r"objects[\"'`*]*\s*[:=]", re.IGNORECASE)
_QUOTED = re.compile(r"\"([^\"\n]*)\"|'([^'\n]*)'")
_BRACKETED_NAME = re.compile(r"\[([^\[\]\"',\n]{1,60})\]")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_NOT_NAMES = frozenset({"none", "nothing", "null", "n/a", "no objects", "empty"})


def parse_cues(output: str) -> list[str]:
    """At most :data:`MAX_CUES` distinct, lower-case object names from an LLM answer (see the module docs)."""
    markers = list(_MARKER.finditer(output))
    tail = output[markers[-1].end() :].lstrip(" \t*`") if markers else None
    if tail is not None:
        names = _json_list(tail)
        if names is not None:
            return clean_names(names)
    for fallback, names in _fallbacks(output, tail):
        names = clean_names(names)
        if names:
            logger.warning("cue answer is not an OBJECTS line with a JSON list; using %s %s", fallback, names)
            return names
    logger.warning("cue answer has no readable object list; no cues for this frame: %r", _excerpt(output))
    return []


def _fallbacks(output: str, tail: str | None) -> Iterator[tuple[str, list]]:
    """The fallbacks of the module docs, in order, each computed only when the previous found nothing."""
    if tail is not None:
        yield "the OBJECTS line read leniently", _lenient_list(tail)
    yield "the last JSON list", _last_json_list(output) or []
    yield "the bracketed names", [match.group(1) for match in _BRACKETED_NAME.finditer(output)]


def clean_names(names: list) -> list[str]:
    """Lower-case, trimmed, article-free names; duplicates, non-strings and non-names dropped; at most K."""
    cleaned: list[str] = []
    for name in names:
        if not isinstance(name, str):
            continue
        name = " ".join(name.lower().split()).strip("\"'`*.,;:!?()[]{}<> ")
        name = _ARTICLE.sub("", name)
        if name in _NOT_NAMES or sum(char.isalpha() for char in name) < 2 or len(name.split()) > MAX_NAME_WORDS:
            continue
        if name not in cleaned:
            cleaned.append(name)
    return cleaned[:MAX_CUES]


def _json_list(text: str) -> list | None:
    """The JSON list at the start of ``text``, or None."""
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _lenient_list(tail: str) -> list[str]:
    """Names after an ``OBJECTS:`` marker that are not valid JSON."""
    if tail.startswith("["):
        close = tail.find("]")
        if close < 0:  # cut off by the token limit: only names whose closing quote was written
            return [a or b for a, b in _QUOTED.findall(tail.split("\n", 1)[0])]
        body = tail[: close + 1]
        try:
            with warnings.catch_warnings():  # e.g. SyntaxWarning for an invalid escape in model output
                warnings.simplefilter("ignore")
                value = ast.literal_eval(body)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = body[1:-1].split(",")
        return value if isinstance(value, list) else []
    return tail.split("\n", 1)[0].split(",")


def _last_json_list(text: str) -> list | None:
    """The last ``[...]`` in ``text`` that parses as a JSON list of strings, or None."""
    for start in reversed([match.start() for match in re.finditer(r"\[", text)]):
        value = _json_list(text[start:])
        if value is not None and all(isinstance(item, str) for item in value):
            return value
    return None


def _excerpt(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
