"""The frozen semantic encoder: text cues to unit vectors (TeSO's step 2).

TeSO encodes up to K=4 cues per frame with ImageBind's text encoder, which is
the frozen OpenCLIP ViT-H/14 text tower. In transformers that is
``CLIPTextModelWithProjection`` loaded from
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (the default): its ``text_embeds``
are 1024-d. ImageBind L2-normalises them and then multiplies by a learned
scalar; we stop at the normalisation, so directions (and every cosine
similarity) are ImageBind's, and the scale is left to the model that consumes
them.

Any other transformers text encoder works too (for example a
sentence-transformers checkpoint such as all-MiniLM-L6-v2, loaded with
``AutoModel``): its ``last_hidden_state`` is mean-pooled over the real tokens
(attention mask), which is how sentence-transformers pools those models, and
then L2-normalised as well. Every row of :meth:`TextEncoder.encode` therefore
has norm 1, except the rows of empty strings, which are all zero: an empty
string names no object, and a zero vector cannot be mistaken for a cue
(TeSO's dynamic mask should still mask those slots, see :meth:`encode_cues`).

Embeddings do not depend on the batch: CLIP pools the end-of-text token under
a causal mask, and mean pooling ignores padding.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from avseg.errors import ConfigError
from avseg.loading import load_pretrained, loading

DEFAULT_TEXT_ENCODER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
_CLIP_TYPES = ("clip", "clip_text_model")


class TextEncoder:
    """Encodes strings to L2-normalised ``(N, D)`` float32 vectors.

    Args:
        model: a ``CLIPTextModelWithProjection`` (``text_embeds``) or any
            model returning ``last_hidden_state`` (mean-pooled).
        tokenizer: its tokenizer; inputs are truncated to the model's length.
        name: recorded for feature caches.
        batch_size: strings per forward pass.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str | None = None, batch_size: int = 256):
        from transformers import CLIPTextModelWithProjection

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or model.config.name_or_path or type(model).__name__
        self.batch_size = batch_size
        self.projects = isinstance(model, CLIPTextModelWithProjection)
        self.dim = model.config.projection_dim if self.projects else model.config.hidden_size
        limits = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
        self.max_length = min(limit for limit in limits if isinstance(limit, int))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_TEXT_ENCODER,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 256,
    ) -> TextEncoder:
        """Load a CLIP checkpoint's text tower with its projection, or any other text model.

        ``device`` defaults to CUDA when there is one. A full CLIP checkpoint
        holds both towers; only the text tower is loaded, with the projection
        width taken from the checkpoint's top-level config (some LAION
        configs leave it out of ``text_config``, which would load a 512-d
        projection and fail).
        """
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoTokenizer,
            CLIPTextModelWithProjection,
        )

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with loading(name_or_path, "a text encoder", ConfigError):
            config = AutoConfig.from_pretrained(name_or_path)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            if config.model_type in _CLIP_TYPES:
                if config.model_type == "clip":
                    config.text_config.projection_dim = config.projection_dim
                    config = config.text_config
                model = load_pretrained(CLIPTextModelWithProjection, name_or_path, "a text encoder", config=config, dtype=dtype)
            else:
                model = load_pretrained(AutoModel, name_or_path, "a text encoder", dtype=dtype)
        return cls(model.to(device), tokenizer, str(name_or_path), batch_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), dim)`` float32 on the model's device; unit rows, zero rows for empty strings."""
        device = self.model.device
        embeddings = torch.zeros(len(texts), self.dim, device=device)
        filled = [k for k, text in enumerate(texts) if text.strip()]
        for start in range(0, len(filled), self.batch_size):
            rows = filled[start : start + self.batch_size]
            inputs = self.tokenizer(
                [texts[k] for k in rows], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(device)
            embeddings[rows] = F.normalize(self._pool(inputs).float(), dim=-1)
        return embeddings

    def _pool(self, inputs: Any) -> torch.Tensor:
        if self.projects:
            return self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).text_embeds
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def encode_cues(self, cues: Sequence[Sequence[str]], k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """Per frame, its first ``k`` cues: ``(N, k, dim)`` embeddings and a bool ``(N, k)`` mask of real cues.

        Missing and empty cue slots hold zero vectors and are False in the mask.
        Each distinct name is encoded once (a dataset repeats "man" thousands of times).
        """
        slots = [[str(name) for name in list(names)[:k]] + [""] * (k - min(len(names), k)) for names in cues]
        flat = [name for names in slots for name in names]
        distinct = {name: row for row, name in enumerate(sorted(set(flat)))}
        table = self.encode(list(distinct))
        rows = torch.tensor([distinct[name] for name in flat], dtype=torch.long, device=table.device)
        embeddings = table[rows].reshape(len(cues), k, self.dim)
        valid = torch.tensor([bool(name.strip()) for name in flat], dtype=torch.bool, device=table.device)
        return embeddings, valid.reshape(len(cues), k)
