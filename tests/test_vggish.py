import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avseg.audio import vggish_examples
from avseg.encoders.vggish import VGGish, VGGishConfig, VGGishEncoder
from avseg.errors import AvsegError, ConfigError

# The torchvggish / AVSBench layout of vggish-10086976.pth: Sequential indices
# skip the ReLU and max-pool modules between the convs and the linear layers.
OFFICIAL_SHAPES = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 512 * 6 * 4),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096),
    "embeddings.4.bias": (128,),
}
CONVS = (0, 3, 6, 8, 11, 13)
POOLED_CONVS = (0, 3, 8, 13)
LINEARS = (0, 2, 4)


def seeded_tiny(seed: int = 0) -> VGGish:
    """A tiny VGGish whose every parameter comes from a local generator (scaled to keep activations alive)."""
    generator = torch.Generator().manual_seed(seed)
    model = VGGish(VGGishConfig.tiny())
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.1 if name.endswith("bias") else param[0].numel() ** -0.5
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


def random_examples(count: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 96, 64, generator=torch.Generator().manual_seed(seed))


def reference_forward(state: dict, examples: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """VGGish written out layer by layer from the official key names; the flatten order is explicit."""
    x = examples[:, None]
    for index in CONVS:
        x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
        if index in POOLED_CONVS:
            x = F.max_pool2d(x, 2)
    batch, channels, height, width = x.shape
    first = state["embeddings.0.weight"]
    if channels_last:  # input feature (h * width + w) * channels + c
        x = torch.einsum("bchw,ohwc->bo", x, first.view(-1, height, width, channels))
    else:
        x = torch.einsum("bchw,ochw->bo", x, first.view(-1, channels, height, width))
    x = F.relu(x + state["embeddings.0.bias"])
    for index in LINEARS[1:]:
        x = F.relu(F.linear(x, state[f"embeddings.{index}.weight"], state[f"embeddings.{index}.bias"]))
    return x


def test_default_state_dict_has_the_official_keys_and_shapes():
    with torch.device("meta"):
        model = VGGish()
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == OFFICIAL_SHAPES
    assert model.config.dim == 128


def test_forward_matches_layer_by_layer_reference_with_nhwc_flatten():
    model = seeded_tiny()
    examples = random_examples(10)
    out = model(examples)
    state = model.state_dict()
    expected = reference_forward(state, examples)
    assert out.shape == (10, 16)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # The check is sensitive to the flatten order: channels-first gives other embeddings.
    assert (out - reference_forward(state, examples, channels_last=False)).abs().max() > 0.05
    # ReLU after the last layer too: non-negative, with exact zeros.
    assert out.min() == 0 and (out == 0).float().mean() > 0.1 and out.max() > 0


def test_forward_accepts_a_channel_axis_and_rejects_other_shapes():
    model = seeded_tiny()
    examples = random_examples(3)
    torch.testing.assert_close(model(examples[:, None]), model(examples), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(2, 96, 63\)"):
        model(torch.zeros(2, 96, 63))


def test_config_rejects_a_wrong_number_of_convs():
    with pytest.raises(ConfigError, match="6 positive conv widths"):
        VGGishConfig(channels=(4, 8, 8, 8, 16))


def test_from_official_round_trips_strictly(tmp_path):
    model = seeded_tiny(seed=3)
    path = tmp_path / "vggish.pth"
    torch.save(model.state_dict(), path)
    loaded = VGGish.from_official(path, VGGishConfig.tiny())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    examples = random_examples(4)
    assert torch.equal(loaded(examples), model(examples))


def test_from_official_names_the_bad_keys_on_one_line(tmp_path):
    state = seeded_tiny().state_dict()
    del state["features.0.bias"]
    state["embeddings.4.weight"] = torch.zeros(16, 31)
    state["pca_means"] = torch.zeros(16, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(AvsegError) as caught:
        VGGish.from_official(path, VGGishConfig.tiny())
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "missing keys: features.0.bias;" in message
    assert "unexpected keys: pca_means;" in message
    assert "wrong shapes: embeddings.4.weight (16, 31) (expected (16, 32))" in message


def test_from_official_truncates_long_key_lists(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({f"layer{i}.weight": torch.zeros(1) for i in range(30)}, path)
    with pytest.raises(AvsegError) as caught:
        VGGish.from_official(path, VGGishConfig.tiny())
    message = str(caught.value)
    assert "missing keys: features.0.weight, features.0.bias, features.3.weight, features.3.bias (+14 more)" in message
    assert "unexpected keys: layer0.weight, layer1.weight, layer2.weight, layer3.weight (+26 more)" in message
    assert len(message) < 400


def test_from_official_reports_missing_corrupt_and_non_dict_files(tmp_path):
    missing = tmp_path / "absent.pth"
    with pytest.raises(AvsegError, match=f"^{missing}: VGGish weights file not found$"):
        VGGish.from_official(missing)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint\n" * 10)
    with pytest.raises(AvsegError, match=f"^{corrupt}: cannot read VGGish weights: ") as caught:
        VGGish.from_official(corrupt)
    assert "\n" not in str(caught.value)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(AvsegError, match=f"^{tensor}: expected a VGGish state dict, got Tensor$"):
        VGGish.from_official(tensor)


def test_embed_gives_one_row_per_second_repeat_padded():
    rate = 44100
    t = np.arange(int(3.3 * rate)) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    waveform = (0.3 * np.sin(2 * np.pi * 440 * t) * (t < 1) + 0.1 * noise * (t > 1.5)).astype(np.float32)
    encoder = VGGishEncoder(seeded_tiny())
    batches = []
    encoder.network.register_forward_hook(lambda module, inputs, output: batches.append(len(inputs[0])))
    out = encoder.embed(waveform, rate, num_seconds=5)
    assert encoder.dim == 16 and out.shape == (5, 16) and out.dtype == torch.float32
    assert not out.requires_grad and not any(p.requires_grad for p in encoder.parameters())
    # 3.3 s give three 0.96-s examples; seconds 3 and 4 repeat the last one. Each distinct example is
    # embedded once and its embedding repeated, so the copies are exact on any CPU.
    assert batches == [3]
    assert torch.equal(out[3], out[2]) and torch.equal(out[4], out[2])
    assert (out[0] - out[1]).abs().max() > 1e-3 and (out[1] - out[2]).abs().max() > 1e-3
    direct = encoder.network(torch.from_numpy(vggish_examples(waveform, rate)))
    assert direct.shape == (3, 16)
    torch.testing.assert_close(out[:3], direct, rtol=0, atol=0)  # the same (3, 96, 64) batch, the same ops
    torch.testing.assert_close(encoder.embed(waveform, rate, num_seconds=2), direct[:2], rtol=1e-5, atol=1e-6)  # batch of 2
    with pytest.raises(ValueError, match="num_seconds"):
        encoder.embed(waveform, rate, num_seconds=0)


def test_embed_of_audio_shorter_than_one_example_repeats_silence():
    encoder = VGGishEncoder(seeded_tiny())
    out = encoder.embed(np.zeros(8000, dtype=np.float32), 16000, num_seconds=3)
    silence = encoder.network(torch.from_numpy(vggish_examples(np.zeros(0, dtype=np.float32), 16000, num_examples=1)))
    assert out.shape == (3, 16) and torch.equal(out[0], silence[0]) and torch.equal(out[2], silence[0])
