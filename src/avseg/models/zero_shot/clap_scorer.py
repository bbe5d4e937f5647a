"""LAION CLAP listening: 1-s windows scored against the vocabulary's sound texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

SOUND_TEMPLATE = "This is a sound of {}."


class ClapScorer(nn.Module):
    """LAION CLAP scoring 1-s windows against the vocabulary's sound texts (embedded once, here)."""

    def __init__(self, model: nn.Module, feature_extractor: Any, tokenizer: Any, sounds: Sequence[str], template: str):
        super().__init__()
        self.model = model.eval()
        self.feature_extractor, self.tokenizer, self.template = feature_extractor, tokenizer, template
        tokens = tokenizer([template.format(sound) for sound in sounds], padding=True, truncation=True, return_tensors="pt")
        device = next(model.parameters()).device
        with torch.no_grad():
            texts = model.get_text_features(input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device))
        self.register_buffer("text_embeddings", texts.pooler_output, persistent=False)

    def with_sounds(self, sounds: Sequence[str]) -> ClapScorer:
        """The same CLAP listening for ``sounds`` instead (only their texts are embedded)."""
        return ClapScorer(self.model, self.feature_extractor, self.tokenizer, sounds, self.template)

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


def tiny_clap_config() -> Any:
    """A ``ClapConfig`` of the real classes at toy width (random weights: tests and offline demos)."""
    from transformers import ClapConfig

    text = {"vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    audio = {"hidden_size": 32, "patch_embeds_hidden_size": 16, "depths": [1, 1], "num_attention_heads": [2, 2], "num_hidden_layers": 2}
    special = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    return ClapConfig(text_config={**text, **special, "max_position_embeddings": 40}, audio_config=audio, projection_dim=32)


def word_tokenizer(texts: Sequence[str] = ()) -> Any:
    """A word-level tokenizer over every word of the built-in vocabularies, the template and ``texts`` (ids 0-3
    special): the tiny models' stand-in for CLAP's and SAM 3's tokenizers (tests, offline benchmarks)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from avseg.models.zero_shot.vocabulary import VOCABULARIES

    texts = [SOUND_TEMPLATE.format(c.sound) + " " + c.visual for v in VOCABULARIES.values() for c in v] + list(texts)
    words = ["<pad>", "<unk>", "<s>", "</s>"] + sorted({w for t in texts for w in t.replace(".", " . ").split()})
    tokenizer = Tokenizer(models.WordLevel({word: k for k, word in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=40
    )
