"""Inference precision and compilation: ``--precision`` and ``--compile`` of ``avseg segment`` and ``avseg evaluate``.

Decisions (the papers run fp32; these are avseg's):

* ``bf16`` / ``fp16`` run the segmenter under :func:`torch.autocast`: the weights stay as loaded (fp32), matrix
  products and convolutions run in the low precision, and autocast keeps reductions such as softmax and layer
  norm in fp32. Every call runs under :func:`torch.inference_mode`; logits come back as fp32.
* The default is ``bf16`` on CUDA (bf16 keeps fp32's exponent range, so no loss scaling or overflow checks are
  needed) and ``fp32`` elsewhere: on a CPU without bf16 units autocast is slower, not faster.
* ``fp16`` on a CPU is refused in one line: PyTorch's CPU float16 kernels are slow or missing, so it would
  only give a slower, less precise result. ``bf16`` runs on any CPU (the tests run it).
* ``--compile`` compiles the repeated blocks of every network the segmenter holds (its encoders' transformer
  layers, SAM's Hiera or ViT blocks, the decoders' layers) in place with :func:`torch.compile`: PyTorch's
  "regional compilation", whose identical blocks share one compiled graph, so compilation takes seconds per
  block type instead of minutes per model, and the adapters' pre-hooks and Python control flow around the
  blocks stay as they are. The first call pays the compilation; its time is printed on its own line and kept in
  :attr:`Inference.first_call_seconds` (``avseg evaluate`` records it in ``report.json``).
* Attention: avseg's BEiT-3 calls :func:`torch.nn.functional.scaled_dot_product_attention`; the transformers
  models (SAM 2, SAM 3, CLIP, CLAP, Mask2Former) are built with their default ``attn_implementation``, which
  in transformers >= 4.48 is ``"sdpa"`` wherever the model supports it (see :func:`attention_implementations`).
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from avseg.errors import ConfigError

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def default_precision(device: torch.device) -> str:
    return "bf16" if device.type == "cuda" else "fp32"


@dataclass
class Inference:
    """How a segmenter runs: on ``device``, at ``precision``, compiled or not."""

    device: torch.device
    precision: str
    compile: bool = False
    first_call_seconds: float | None = None
    """With ``compile``: the first call's time (compilation included), once it has run."""
    compile_backend: str = "inductor"
    """``torch.compile``'s backend (``eager`` traces without generating code: the tests, debugging)."""

    @classmethod
    def resolve(cls, device: torch.device, precision: str | None = None, compile: bool = False) -> Inference:
        """Check the options against the device (one-line errors) before anything is loaded."""
        precision = precision or default_precision(device)
        if precision not in PRECISIONS:
            raise ConfigError(f"--precision: unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
        if precision == "fp16" and device.type == "cpu":
            raise ConfigError("--precision fp16: half precision runs on CUDA only (PyTorch's CPU float16 kernels are slow or missing); use bf16 or fp32 on cpu")
        return cls(device, precision, compile)

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    @contextmanager
    def context(self) -> Iterator[None]:
        """``torch.inference_mode``, and autocast to :attr:`dtype` unless fp32."""
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            if self.precision != "fp32":
                stack.enter_context(torch.autocast(self.device.type, dtype=self.dtype))
            yield

    def prepare(self, segmenter: Any) -> Any:
        """Compile ``segmenter``'s repeated blocks in place (with ``compile``); return it."""
        if self.compile:
            for block in repeated_blocks(segmenter):
                block.compile(backend=self.compile_backend)
        return segmenter

    def wrap(self, segmenter: Any) -> PreciseSegmenter:
        return PreciseSegmenter(segmenter, self)

    def describe(self) -> dict[str, Any]:
        """The fields ``avseg evaluate`` records."""
        return {"precision": self.precision, "compile": self.compile, "compile_first_call_s": self.first_call_seconds}


class PreciseSegmenter:
    """``segmenter`` run under :meth:`Inference.context`, logits as fp32: each of its ``predict*`` methods
    (``predict``, ``predict_with_details``, ``predict_ungated``) runs in the context; other attributes (the
    silence gate's fields) read through. It has a method exactly when ``segmenter`` has."""

    def __init__(self, segmenter: Any, inference: Inference):
        self.segmenter = segmenter
        self.inference = inference

    def predict(self, clips: Sequence[Any]) -> list[torch.Tensor]:
        return [logits.float() for logits in self._run(self.segmenter.predict, clips)]

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self.segmenter, name)  # AttributeError when the segmenter has none
        if not (name.startswith("predict") and callable(inner)):
            return inner

        def predict_with_extras(clips: Sequence[Any]) -> tuple[list[torch.Tensor], list[Any]]:
            logits, extras = self._run(inner, clips)  # (logits, per-frame details) or (logits, silent frames)
            return [x.float() for x in logits], extras

        return predict_with_extras

    def _run(self, predict: Any, clips: Sequence[Any]) -> Any:
        first = self.inference.compile and self.inference.first_call_seconds is None
        start = time.perf_counter()
        with self.inference.context():
            result = predict(clips)
        if first:
            self.inference.first_call_seconds = time.perf_counter() - start
            print(f"compile: first call {self.inference.first_call_seconds:.1f} s (compilation included; later calls reuse it)", file=sys.stderr, flush=True)
        return result


def reachable_modules(owner: Any, depth: int = 3) -> list[nn.Module]:
    """The networks an object holds: :class:`nn.Module` attributes of it, or of its plain attributes
    (a segmenter's ``inputs``, an encoder wrapper's ``model``), to ``depth`` levels."""
    found: dict[int, nn.Module] = {}

    def visit(value: Any, level: int) -> None:
        if isinstance(value, nn.Module):
            found.setdefault(id(value), value)
        elif level < depth and hasattr(value, "__dict__") and not isinstance(value, type):
            for item in vars(value).values():
                visit(item, level + 1)

    visit(owner, 0)
    return list(found.values())


def repeated_blocks(owner: Any) -> list[nn.Module]:
    """The members of every ``nn.ModuleList`` of two or more modules of one class in ``owner``'s networks that
    are blocks (modules of modules: a transformer layer, not a lone ``Linear`` or a ``Sequential`` of them),
    outermost first (a block inside another selected block is left to it)."""
    candidates: dict[int, nn.Module] = {}
    for root in reachable_modules(owner):
        for module in root.modules():
            if isinstance(module, nn.ModuleList) and len(module) > 1 and len({type(m) for m in module}) == 1:
                for block in module:
                    if any(next(child.children(), None) is not None for child in block.children()):
                        candidates.setdefault(id(block), block)
    inner = {id(sub) for block in candidates.values() for sub in block.modules() if sub is not block}
    return [block for key, block in candidates.items() if key not in inner]


def attention_implementations(owner: Any) -> dict[str, str]:
    """Per transformers network class that ``owner`` holds, its configured attention implementation."""
    found: dict[str, str] = {}
    for root in reachable_modules(owner):
        for module in root.modules():
            implementation = getattr(getattr(module, "config", None), "_attn_implementation", None)
            if implementation is not None:
                found.setdefault(type(module).__name__, str(implementation))
    return found
