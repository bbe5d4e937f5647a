"""The frozen LLM that reads a caption and names what could be sounding (TeSO's "collecting" step).

:class:`CueLLM` wraps any transformers causal LM whose tokenizer has a chat
template. It knows nothing about cues: :mod:`avseg.cues.prompt` writes the
conversations and parses the answers.

Default model: ``Qwen/Qwen2.5-1.5B-Instruct``. TeSO does not name its LLM; the
task (read one sentence, reason in a few lines, end with a JSON list) needs
instruction following and reliable JSON, not world knowledge, and Qwen2.5
Instruct is strong at both for its size. At 1.5B parameters (about 3 GB in
bfloat16) it fits beside the captioner on one GPU, and it is Apache-2.0
licensed. ``Qwen/Qwen2.5-7B-Instruct`` or any other chat
model is a drop-in replacement through ``name_or_path``.

Generation is batched with left padding (so every prompt ends where generation
starts) and greedy, with the model's other generation settings kept.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from avseg.cues.captioner import greedy_config, load_frozen
from avseg.errors import ConfigError

DEFAULT_LLM = "Qwen/Qwen2.5-1.5B-Instruct"


class CueLLM:
    """Greedy, batched chat completions.

    Args:
        model: a transformers causal LM (already on its device).
        tokenizer: its tokenizer, with a chat template. Its padding side is
            set to left; a missing pad token becomes the end-of-sequence token.
        name: what to record as the LLM's identity in cue caches.
        max_new_tokens: the longest answer, in tokens; the chain of thought
            must fit in it, or the parser falls back (see :mod:`avseg.cues.prompt`).
    """

    def __init__(self, model: Any, tokenizer: Any, name: str | None = None, max_new_tokens: int = 256):
        self.name = name or model.config.name_or_path or type(model).__name__
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"{self.name}: the tokenizer has no chat template; use an instruction-tuned model")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        # Installed as the model's own config: passed to generate, it would get the model's sampling settings
        # (temperature, top_p) merged back in, and a warning per batch that they are ignored.
        model.generation_config = greedy_config(model.generation_config, max_new_tokens)
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_LLM,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        max_new_tokens: int = 256,
    ) -> CueLLM:
        """Load a hub model or a local folder; ``device`` defaults to CUDA when there is one, and
        ``dtype`` to bfloat16 on CUDA, float32 on CPU."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer, model = load_frozen(
            name_or_path, AutoTokenizer, AutoModelForCausalLM, device, dtype, torch.bfloat16, "a language model"
        )
        return cls(model, tokenizer, str(name_or_path), max_new_tokens)

    def identity(self) -> dict[str, Any]:
        """What determines the answers, recorded in cue caches so that runs with another LLM are not mixed."""
        return {"model": self.name, "max_new_tokens": self.max_new_tokens}

    @torch.inference_mode()
    def generate(self, conversations: Sequence[list[dict[str, str]]]) -> list[str]:
        """The assistant's reply to each conversation (a list of ``{"role", "content"}`` messages), in one batch."""
        if not len(conversations):
            return []
        prompts = [
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            for messages in conversations
        ]
        # The chat template already wrote any special tokens it wants.
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(self.model.device)
        output = self.model.generate(**inputs)
        replies = output[:, inputs["input_ids"].shape[1] :]
        return [reply.strip() for reply in self.tokenizer.batch_decode(replies, skip_special_tokens=True)]
