"""Frame captions, the first half of TeSO's "describing and collecting" step.

:class:`Captioner` wraps a transformers image-to-text model whose processor
takes images and an optional text prompt (BLIP and BLIP-2 are tested; others
of that shape, such as InstructBLIP or GIT, load the same way), through
``AutoProcessor`` and ``AutoModelForImageTextToText``.

Default model: ``Salesforce/blip2-opt-2.7b``. TeSO does not name its
captioner; the reference asks for BLIP-2 or newer. BLIP-2 writes one short
sentence centred on the salient objects and what they do ("a man playing a
guitar on stage"), which is exactly what the cue LLM needs: the paper's own
example caption has that form. Chat-style VLMs asked for a description tend
to write paragraphs that mention every wall and shirt, which only gives the
LLM more silent things to reject. The OPT-2.7B variant is the smallest BLIP-2
release (3.9B parameters, about 7.7 GB in float16); the larger ones
(``Salesforce/blip2-opt-6.7b-coco``, ``Salesforce/blip2-flan-t5-xl``) are
drop-in replacements through ``name_or_path``.

Decoding is greedy with the model's own generation settings otherwise
(end-of-sequence ids, repetition penalty), so a caption is a function of the
frame and the model: a resumed run writes the same captions.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from avseg.errors import ConfigError
from avseg.loading import load_pretrained, loading

DEFAULT_CAPTIONER = "Salesforce/blip2-opt-2.7b"


class Captioner:
    """Greedy, batched captions of RGB frames.

    Args:
        model: a transformers image-to-text model (already on its device).
        processor: its processor (images, and text when ``prompt`` is given).
        name: what to record as the captioner's identity in cue caches.
        prompt: text the caption starts from (for example ``"a photo of"``, or
            Florence-2's ``"<CAPTION>"``); None captions from the image alone.
            A prompt the model echoes is removed from the caption.
        max_new_tokens: the longest caption, in tokens.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        name: str | None = None,
        prompt: str | None = None,
        max_new_tokens: int = 30,
    ):
        self.model = model.eval()
        self.processor = processor
        self.name = name or model.config.name_or_path or type(model).__name__
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.generation_config = greedy_config(model.generation_config, max_new_tokens)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_CAPTIONER,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        prompt: str | None = None,
        max_new_tokens: int = 30,
    ) -> Captioner:
        """Load a hub model or a local folder; ``device`` defaults to CUDA when there is one, and
        ``dtype`` to float16 on CUDA, float32 on CPU."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor, model = load_frozen(
            name_or_path, AutoProcessor, AutoModelForImageTextToText, device, dtype, torch.float16, "an image captioner"
        )
        return cls(model, processor, str(name_or_path), prompt, max_new_tokens)

    def identity(self) -> dict[str, Any]:
        """What determines the captions, recorded in cue caches so that runs with another captioner are not mixed."""
        return {"model": self.name, "prompt": self.prompt, "max_new_tokens": self.max_new_tokens}

    @torch.inference_mode()
    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per uint8 ``(H, W, 3)`` RGB image, all in one batch."""
        if not len(images):
            return []
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"images must be uint8 (H,W,3), got {image.dtype} {image.shape}")
        text = None if self.prompt is None else [self.prompt] * len(images)
        inputs = self.processor(images=[Image.fromarray(image) for image in images], text=text, return_tensors="pt")
        inputs = {key: _to_model(value, self.model) for key, value in inputs.items()}
        # Passed explicitly: BLIP-2 and its kind hand it on to their inner language model's generate.
        output = self.model.generate(**inputs, generation_config=self.generation_config)
        return [self._clean(caption) for caption in self.processor.batch_decode(output, skip_special_tokens=True)]

    def _clean(self, caption: str) -> str:
        caption = " ".join(caption.split())
        if self.prompt and caption.lower().startswith(self.prompt.lower().strip()):
            caption = caption[len(self.prompt.strip()) :].strip()
        return caption


def greedy_config(config: Any, max_new_tokens: int) -> Any:
    """A copy of a model's generation config that decodes greedily, keeping its other settings
    (end-of-sequence ids, repetition penalty)."""
    config = copy.deepcopy(config)
    config.do_sample, config.num_beams, config.max_new_tokens, config.max_length = False, 1, max_new_tokens, None
    config.temperature = config.top_p = config.top_k = None
    return config


def _to_model(value: Any, model: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(model.device, model.dtype) if value.is_floating_point() else value.to(model.device)


def load_frozen(name_or_path, preprocessor_class, model_class, device, dtype, cuda_dtype, what: str):
    """``(preprocessor, model on device)`` from a hub name or folder; ``device`` defaults to CUDA when
    there is one, ``dtype`` to ``cuda_dtype`` on CUDA and float32 on CPU."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (cuda_dtype if device.startswith("cuda") else torch.float32)
    with loading(name_or_path, what, ConfigError):
        preprocessor = preprocessor_class.from_pretrained(name_or_path)
        model = load_pretrained(model_class, name_or_path, what, dtype=dtype)
    return preprocessor, model.to(device)
