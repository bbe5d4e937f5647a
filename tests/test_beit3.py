import dataclasses

import pytest
import torch

from avseg.errors import AvsegError
from avseg.models.av2t_sam.beit3 import OFFICIAL_PREFIX, BEiT3, BEiT3Config

TINY = BEiT3Config.tiny()
VISION = TINY.num_vision_tokens


def official_shapes(config: BEiT3Config) -> dict[str, tuple[int, ...]]:
    """torchscale 0.2.0 ``BEiT3`` state-dict names and shapes (multiway, sub-LN, no embedding LN), written out independently."""
    d, f = config.dim, config.ffn_dim
    grid = config.img_size // config.patch_size
    shapes = {
        "text_embed.weight": (config.vocab_size, d),
        "vision_embed.mask_token": (1, 1, d),
        "vision_embed.cls_token": (1, 1, d),
        "vision_embed.proj.weight": (
            d,
            config.in_chans,
            config.patch_size,
            config.patch_size,
        ),
        "vision_embed.proj.bias": (d,),
        "encoder.embed_positions.A.weight": (grid * grid + 1 + 2, d),
        "encoder.embed_positions.B.weight": (config.max_text_positions, d),
    }
    for expert in "AB":
        shapes |= {f"encoder.layer_norm.{expert}.{p}": (d,) for p in ("weight", "bias")}
        for i in range(config.depth):
            layer = f"encoder.layers.{i}"
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                shapes[f"{layer}.self_attn.{proj}.{expert}.weight"] = (d, d)
                shapes[f"{layer}.self_attn.{proj}.{expert}.bias"] = (d,)
            for norm in (
                "self_attn.inner_attn_ln",
                "self_attn_layer_norm",
                "final_layer_norm",
            ):
                shapes |= {
                    f"{layer}.{norm}.{expert}.{p}": (d,) for p in ("weight", "bias")
                }
            ffn = f"{layer}.ffn.{expert}"
            shapes |= {
                f"{ffn}.fc1.weight": (f, d),
                f"{ffn}.fc1.bias": (f,),
                f"{ffn}.ffn_layernorm.weight": (f,),
                f"{ffn}.ffn_layernorm.bias": (f,),
                f"{ffn}.fc2.weight": (d, f),
                f"{ffn}.fc2.bias": (d,),
            }
    return shapes


def random_checkpoint(config: BEiT3Config, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        OFFICIAL_PREFIX + name: 0.1 * torch.randn(shape, generator=generator)
        for name, shape in official_shapes(config).items()
    } | {"mm_extractor.other.weight": torch.zeros(1), "visual_model.x": torch.zeros(1)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    beit3 = BEiT3(TINY).eval()
    beit3.load_official_state_dict(random_checkpoint(TINY))
    return beit3


@pytest.fixture
def images():
    return torch.randn(
        2, 3, TINY.img_size, TINY.img_size, generator=torch.Generator().manual_seed(1)
    )


@pytest.mark.parametrize(
    "config",
    [TINY, BEiT3Config.base(), BEiT3Config.large()],
    ids=["tiny", "base", "large"],
)
def test_state_dict_matches_torchscale_names_and_shapes(config):
    with torch.device("meta"):
        beit3 = BEiT3(config)
    assert {
        name: tuple(t.shape) for name, t in beit3.state_dict().items()
    } == official_shapes(config)


def test_large_config_is_evf_sam2s():
    config = BEiT3Config.large()
    assert (config.dim, config.depth, config.num_heads, config.ffn_dim) == (
        1024,
        24,
        16,
        4096,
    )
    assert (config.img_size, config.patch_size, config.num_vision_tokens) == (
        224,
        16,
        197,
    )
    assert (config.vocab_size, config.max_text_positions, config.layernorm_eps) == (
        64010,
        1024,
        1e-5,
    )
    assert (
        config.dropout
        == config.attention_dropout
        == config.activation_dropout
        == config.drop_path_rate
        == 0.0
    )


def test_load_official_state_dict_is_strict(model):
    checkpoint = random_checkpoint(TINY)
    for name, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[OFFICIAL_PREFIX + name])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c.pop(OFFICIAL_PREFIX + "encoder.layers.1.ffn.B.fc2.bias"),
            "1 missing (encoder.layers.1.ffn.B.fc2.bias)",
        ),
        (
            lambda c: c.update({OFFICIAL_PREFIX + "encoder.extra": torch.zeros(1)}),
            "1 unexpected (encoder.extra)",
        ),
        (
            lambda c: c.update(
                {OFFICIAL_PREFIX + "text_embed.weight": torch.zeros(64010, 32)}
            ),
            "1 wrong shape (text_embed.weight (64010, 32) != (100, 32))",
        ),
    ],
)
def test_load_official_state_dict_reports_mismatches_on_one_line(edit, expected):
    checkpoint = random_checkpoint(TINY)
    edit(checkpoint)
    with pytest.raises(AvsegError, match=r"\(") as error:
        BEiT3(TINY).load_official_state_dict(checkpoint)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_output_shapes(model, images):
    ids = torch.randint(0, TINY.vocab_size, (2, 3))
    assert model(images, input_ids=ids).shape == (2, VISION + 3, TINY.dim)
    assert model(images, text_embeds=torch.randn(2, 5, TINY.dim)).shape == (
        2,
        VISION + 5,
        TINY.dim,
    )
    assert model(images).shape == (2, VISION, TINY.dim)


def test_text_embeds_replace_only_the_word_embedding_lookup(model, images):
    ids = torch.randint(0, TINY.vocab_size, (2, 4))
    padding = torch.tensor([[False, False, False, True], [False, False, False, False]])
    with torch.no_grad():
        from_ids = model(images, input_ids=ids, text_padding_mask=padding)
        from_embeds = model(
            images, text_embeds=model.text_embed(ids), text_padding_mask=padding
        )
    assert torch.equal(from_ids, from_embeds)


def test_padding_is_invisible_to_the_other_tokens(model, images):
    ids = torch.randint(0, TINY.vocab_size, (2, 3))
    padded = torch.cat([ids, torch.randint(0, TINY.vocab_size, (2, 4))], dim=1)
    padding = torch.arange(7).expand(2, 7) >= 3
    with torch.no_grad():
        short = model(images, input_ids=ids)
        long = model(images, input_ids=padded, text_padding_mask=padding)
    torch.testing.assert_close(long[:, : VISION + 3], short, rtol=0, atol=1e-5)


def test_vision_only_equals_fully_padded_text(model, images):
    embeds = torch.randn(2, 3, TINY.dim)
    with torch.no_grad():
        alone = model(images)
        padded = model(
            images,
            text_embeds=embeds,
            text_padding_mask=torch.ones(2, 3, dtype=torch.bool),
        )
    torch.testing.assert_close(padded[:, :VISION], alone, rtol=0, atol=1e-5)


def test_text_changes_the_vision_cls(model, images):
    with torch.no_grad():
        first = model(images, text_embeds=torch.randn(2, 3, TINY.dim))[:, 0]
        second = model(images, text_embeds=torch.randn(2, 3, TINY.dim))[:, 0]
    assert (first - second).abs().max() > 1e-3


def test_regularisation_is_off_in_eval_and_on_in_training(model, images):
    regularised = BEiT3(
        dataclasses.replace(
            TINY,
            dropout=0.2,
            attention_dropout=0.2,
            activation_dropout=0.2,
            drop_path_rate=0.5,
        )
    )
    regularised.load_state_dict(model.state_dict())
    embeds = torch.randn(2, 3, TINY.dim)
    with torch.no_grad():
        expected = model(images, text_embeds=embeds)
        assert torch.equal(regularised.eval()(images, text_embeds=embeds), expected)
        assert not torch.equal(
            regularised.train()(images, text_embeds=embeds), expected
        )


def test_gradient_checkpointing_gives_the_same_gradients(model, images):
    embeds = torch.randn(2, 3, TINY.dim)
    grads = []
    for enabled in (False, True):
        model.gradient_checkpointing = enabled
        leaf = embeds.clone().requires_grad_()
        model(images, text_embeds=leaf)[:, 0].square().sum().backward()
        grads.append(leaf.grad)
    model.gradient_checkpointing = False
    torch.testing.assert_close(grads[1], grads[0])
    model.zero_grad()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {
                "input_ids": torch.zeros(2, 3, dtype=torch.long),
                "text_embeds": torch.zeros(2, 3, 32),
            },
            "not both",
        ),
        ({"text_embeds": torch.zeros(2, 15, 32)}, "at most 14 tokens"),
        ({"text_padding_mask": torch.zeros(2, 3, dtype=torch.bool)}, "without a text"),
    ],
)
def test_invalid_inputs(model, images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model(images, **kwargs)


def test_wrong_image_size(model):
    with pytest.raises(ValueError, match="32x32"):
        model(torch.zeros(1, 3, 48, 48))
