import dataclasses
import math

import numpy as np
import pytest
import torch

from avseg.audio import second_windows
from avseg.config import EncodersConfig
from avseg.encoders.build import build_audio_encoder
from avseg.encoders.clap import ClapAudio, ClapAudioConfig, ClapAudioEncoder
from avseg.encoders.htsat_front_end import _mel_filterbank, resample_like_torchaudio
from avseg.errors import AvsegError, ConfigError

HTSAT = "audio_encoder.base.htsat."
PROJECTION = "audio_encoder.projection."
TINY = ClapAudioConfig.tiny()


def official_shapes(config: ClapAudioConfig) -> dict[str, tuple[int, ...]]:
    """Every audio key of an msclap CLAP checkpoint, named as msclap's modules name them, with its shape."""
    bins, mel, dim, patch = config.n_fft // 2 + 1, config.mel_bins, config.embed_dim, config.patch_size
    shapes = {
        HTSAT + "spectrogram_extractor.stft.conv_real.weight": (bins, 1, config.n_fft),
        HTSAT + "spectrogram_extractor.stft.conv_imag.weight": (bins, 1, config.n_fft),
        HTSAT + "logmel_extractor.melW": (bins, mel),
        HTSAT + "bn0.weight": (mel,),
        HTSAT + "bn0.bias": (mel,),
        HTSAT + "bn0.running_mean": (mel,),
        HTSAT + "bn0.running_var": (mel,),
        HTSAT + "bn0.num_batches_tracked": (),
        HTSAT + "patch_embed.proj.weight": (dim, 1, patch, patch),
        HTSAT + "patch_embed.proj.bias": (dim,),
        HTSAT + "patch_embed.norm.weight": (dim,),
        HTSAT + "patch_embed.norm.bias": (dim,),
    }
    for layer, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
        width = dim * 2**layer
        resolution = config.spec_size // patch // 2**layer
        window = min(config.window_size, resolution)
        for block in range(depth):
            prefix = f"{HTSAT}layers.{layer}.blocks.{block}."
            shapes |= {
                prefix + "norm1.weight": (width,),
                prefix + "norm1.bias": (width,),
                prefix + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
                prefix + "attn.relative_position_index": (window**2, window**2),
                prefix + "attn.qkv.weight": (3 * width, width),
                prefix + "attn.qkv.bias": (3 * width,),
                prefix + "attn.proj.weight": (width, width),
                prefix + "attn.proj.bias": (width,),
                prefix + "norm2.weight": (width,),
                prefix + "norm2.bias": (width,),
                prefix + "mlp.fc1.weight": (4 * width, width),
                prefix + "mlp.fc1.bias": (4 * width,),
                prefix + "mlp.fc2.weight": (width, 4 * width),
                prefix + "mlp.fc2.bias": (width,),
            }
            if block % 2 and resolution > config.window_size:
                shapes[prefix + "attn_mask"] = ((resolution // window) ** 2, window**2, window**2)
        if layer < len(config.depths) - 1:
            shapes[f"{HTSAT}layers.{layer}.downsample.reduction.weight"] = (2 * width, 4 * width)
            shapes[f"{HTSAT}layers.{layer}.downsample.norm.weight"] = (4 * width,)
            shapes[f"{HTSAT}layers.{layer}.downsample.norm.bias"] = (4 * width,)
    final, classes, out = config.width, config.num_classes, config.projection_dim
    frequency_rows = config.spec_size // patch // 2 ** (len(config.depths) - 1) // config.freq_ratio
    return shapes | {
        HTSAT + "norm.weight": (final,),
        HTSAT + "norm.bias": (final,),
        HTSAT + "tscam_conv.weight": (classes, final, frequency_rows, 3),
        HTSAT + "tscam_conv.bias": (classes,),
        HTSAT + "head.weight": (classes, classes),
        HTSAT + "head.bias": (classes,),
        PROJECTION + "linear1.weight": (out, final),
        PROJECTION + "linear2.weight": (out, out),
        PROJECTION + "layer_norm.weight": (out,),
        PROJECTION + "layer_norm.bias": (out,),
    }


def reference_mel(rate: int, n_fft: int, bands: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's Slaney filterbank from its definition: triangles in Hz at Slaney-mel-spaced edges, unit area x 2."""

    def to_mel(hz):
        return 3 * hz / 200 if hz < 1000 else 15 + 27 * np.log(hz / 1000) / np.log(6.4)

    def to_hz(mel):
        return 200 * mel / 3 if mel < 15 else 1000 * 6.4 ** ((mel - 15) / 27)

    edges = [to_hz(m) for m in np.linspace(to_mel(fmin), to_mel(fmax), bands + 2)]
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    return np.stack(
        [np.interp(freqs, edges[i : i + 3], [0, 1, 0]) * 2 / (edges[i + 2] - edges[i]) for i in range(bands)], axis=1
    )


def reference_derived(config: ClapAudioConfig, shapes: dict) -> dict[str, torch.Tensor]:
    """The checkpoint's fixed tensors, computed the way torchlibrosa, librosa and Swin compute them."""
    n = config.n_fft
    hann = np.hanning(n + 1)[:-1]  # periodic
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n // 2 + 1), np.arange(n)) / n) * hann
    derived = {
        HTSAT + "spectrogram_extractor.stft.conv_real.weight": torch.tensor(dft.real[:, None], dtype=torch.float32),
        HTSAT + "spectrogram_extractor.stft.conv_imag.weight": torch.tensor(dft.imag[:, None], dtype=torch.float32),
        HTSAT + "logmel_extractor.melW": torch.tensor(
            reference_mel(config.filterbank_rate, n, config.mel_bins, config.fmin, config.fmax), dtype=torch.float32
        ),
    }
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            window = math.isqrt(shape[0])
            row, col = np.divmod(np.arange(window**2), window)
            index = (row[:, None] - row[None] + window - 1) * (2 * window - 1) + col[:, None] - col[None] + window - 1
            derived[key] = torch.tensor(index)
        elif key.endswith("attn_mask"):
            window = math.isqrt(shape[1])
            derived[key] = reference_shift_mask(math.isqrt(shape[0]) * window, window)
    return derived


def reference_shift_mask(resolution: int, window: int) -> torch.Tensor:
    """Swin's mask: label the nine regions of the rolled grid, forbid attention across labels."""
    shift = window // 2
    labels = np.zeros((resolution, resolution))
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for label, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        labels[rows, cols] = label
    count = resolution // window
    windows = labels.reshape(count, window, count, window).transpose(0, 2, 1, 3).reshape(count * count, -1)
    return torch.tensor(np.where(windows[:, None, :] != windows[:, :, None], -100.0, 0.0), dtype=torch.float32)


def official_state(config: ClapAudioConfig = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    """An msclap-layout CLAP state dict: random learnable tensors, reference fixed tensors, a stray text key."""
    generator = torch.Generator().manual_seed(seed)
    shapes = official_shapes(config)
    state = {key: torch.randn(shape, generator=generator) * 0.3 for key, shape in shapes.items()}
    state[HTSAT + "bn0.running_var"] = 1 + torch.rand(config.mel_bins, generator=generator)
    state[HTSAT + "bn0.num_batches_tracked"] = torch.tensor(7)
    state |= reference_derived(config, shapes)
    state["caption_encoder.projection.linear1.weight"] = torch.zeros(3, 3)
    state["logit_scale"] = torch.tensor(2.6)
    return state


def golden_input() -> np.ndarray:
    """Two 1-s windows at the tiny rate: a decaying 440 Hz tone and a 100 Hz -> 3.5 kHz chirp over a little noise."""
    t = np.arange(TINY.sample_rate) / TINY.sample_rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-2 * t)
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 1700 * t**2)) + 0.01 * np.sin(12345.0 * t**3)
    return np.stack([tone, chirp]).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors are tiny: a second thread only adds synchronisation, which stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("clap") / "CLAP_weights_2023.pth"
    torch.save({"model": official_state()}, path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_weights) -> ClapAudio:
    return ClapAudio.from_official(tiny_weights, TINY).eval()


def test_default_config_is_clap_2023():
    config = ClapAudioConfig()
    assert (config.sample_rate, config.filterbank_rate, config.n_fft, config.hop, config.mel_bins) == (44100, 32000, 1024, 320, 64)
    assert (config.fmin, config.fmax, config.max_frames, config.token_grid, config.width, config.dim) == (50, 14000, 1024, 8, 768, 1024)


def test_tiny_shapes(tiny):
    waveform = torch.randn(3, TINY.sample_rate) * 0.1
    with torch.no_grad():
        assert tiny(waveform).shape == (3, TINY.dim)
        assert tiny.tokens(waveform).shape == (3, TINY.width, 1, 16)
        tags = tiny.tag(waveform)
    assert tags.shape == (3, TINY.num_classes) and ((tags > 0) & (tags < 1)).all()


def test_matches_msclap_at_the_tiny_size(tiny):
    # msclap's HTSAT_Swin_Transformer and Projection, built at the tiny sizes with
    # this file's official_state() and run on golden_input() (scratch parity script)
    embedding = [[-0.53980327, -0.5390367, 0.22917618, 0.60915196], [-0.53932214, -0.5424584, 0.22815588, 0.61546475]]
    clipwise = [[0.45333534, 0.54649884, 0.9229211, 0.809695], [0.4536654, 0.5477482, 0.9213773, 0.81155044]]
    waveform = torch.from_numpy(golden_input())
    with torch.no_grad():
        torch.testing.assert_close(tiny(waveform)[:, :4], torch.tensor(embedding), atol=2e-6, rtol=0)
        torch.testing.assert_close(tiny.tag(waveform)[:, :4], torch.tensor(clipwise), atol=2e-6, rtol=0)


def test_batch_items_are_independent(tiny):
    waveform = torch.randn(4, TINY.sample_rate) * 0.1
    with torch.no_grad():
        batched = tiny(waveform)
        single = torch.cat([tiny(item[None]) for item in waveform])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_input_longer_than_the_image_is_refused(tiny):
    limit = TINY.max_frames * TINY.hop - 1
    with torch.no_grad():
        tiny(torch.zeros(1, limit))
        with pytest.raises(ValueError, match="at most 256 frames"):
            tiny(torch.zeros(1, limit + 1))


def test_config_rejects_inconsistent_sizes():
    with pytest.raises(ConfigError, match="multiple of mel_bins"):
        ClapAudioConfig(spec_size=250)
    with pytest.raises(ConfigError, match="heads"):
        ClapAudioConfig(num_heads=(5, 8, 16, 32))
    # transformers' HTS-AT sizes each stage's position table by window_size: the last 8x8 grid cannot take 16x16 windows
    with pytest.raises(ConfigError, match="stage 3: resolution 8 is not a positive multiple of window_size 16"):
        ClapAudioConfig(window_size=16)


def test_from_official_round_trip(tiny):
    state = official_state()
    htsat = tiny.htsat.audio_encoder
    assert torch.equal(htsat.batch_norm.running_var, state[HTSAT + "bn0.running_var"])
    assert torch.equal(htsat.patch_embed.proj.weight, state[HTSAT + "patch_embed.proj.weight"])
    assert torch.equal(htsat.patch_embed.norm.bias, state[HTSAT + "patch_embed.norm.bias"])
    block = htsat.layers[1].blocks[1]
    assert torch.equal(block.attention.self.relative_position_bias_table, state[HTSAT + "layers.1.blocks.1.attn.relative_position_bias_table"])
    qkv = state[HTSAT + "layers.1.blocks.1.attn.qkv.weight"]  # msclap's rows: all queries, all keys, all values
    assert torch.equal(block.attention.self.key.weight, qkv[TINY.embed_dim * 2 : TINY.embed_dim * 4])
    assert torch.equal(block.attention.output.dense.bias, state[HTSAT + "layers.1.blocks.1.attn.proj.bias"])
    assert torch.equal(htsat.layers[1].blocks[0].output.dense.weight, state[HTSAT + "layers.1.blocks.0.mlp.fc2.weight"])
    assert torch.equal(htsat.layers[0].downsample.reduction.weight, state[HTSAT + "layers.0.downsample.reduction.weight"])
    assert torch.equal(tiny.token_semantic.weight, state[HTSAT + "tscam_conv.weight"])
    assert torch.equal(tiny.projection.norm.bias, state[PROJECTION + "layer_norm.bias"])
    # Every learnable official value (random, so distinct) lands in exactly one of ours, and nothing else does.
    ignored = ("attn_mask", "relative_position_index", "stft.", "melW", "head.", "caption_encoder", "logit_scale")
    learnable = sorted(x for k, v in state.items() if not any(part in k for part in ignored) for x in v.flatten().tolist())
    ours = sorted(x for k, v in tiny.state_dict().items() if "relative_position_index" not in k for x in v.flatten().tolist())
    assert ours == learnable


def test_from_official_accepts_a_bare_state_dict(tmp_path, tiny):
    path = tmp_path / "bare.pth"
    torch.save(official_state(), path)
    loaded = ClapAudio.from_official(path, TINY)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny.state_dict().values()))


def write(tmp_path, state) -> str:
    path = tmp_path / "weights.pth"
    torch.save({"model": state}, path)
    return str(path)


def test_from_official_names_missing_unexpected_and_misshapen_keys(tmp_path):
    state = official_state()
    del state[HTSAT + "layers.1.blocks.0.attn.qkv.weight"]
    del state[HTSAT + "layers.1.blocks.1.attn_mask"]
    state[HTSAT + "layers.7.blocks.0.norm1.weight"] = torch.zeros(8)
    state[PROJECTION + "linear2.weight"] = torch.zeros(5, 5)
    with pytest.raises(AvsegError) as caught:
        ClapAudio.from_official(write(tmp_path, state), TINY)
    message = str(caught.value)
    assert "\n" not in message and "does not fit the MS-CLAP audio branch" in message
    assert "missing keys: " in message and "layers.1.blocks.0.attn.qkv.weight" in message
    assert "layers.1.blocks.1.attn_mask" in message
    assert "unexpected keys: audio_encoder.base.htsat.layers.7.blocks.0.norm1.weight" in message
    assert "wrong shapes: audio_encoder.projection.linear2.weight (5, 5) (expected (32, 32))" in message


def test_from_official_checks_the_front_end_against_the_file(tmp_path):
    state = official_state()
    state[HTSAT + "logmel_extractor.melW"] = torch.tensor(reference_mel(44100, 256, 16, 50, 3800), dtype=torch.float32)
    with pytest.raises(AvsegError, match=r"melW differs from this port's by .*another front end"):
        ClapAudio.from_official(write(tmp_path, state), TINY)


def test_checkpoint_of_another_size_does_not_fit(tmp_path):
    wider = official_state(dataclasses.replace(TINY, embed_dim=16))
    with pytest.raises(AvsegError, match=r"wrong shapes: audio_encoder.base.htsat.patch_embed.proj.weight \(16, 1, 4, 4\)"):
        ClapAudio.from_official(write(tmp_path, wider), TINY)


def test_from_official_unreadable_files(tmp_path):
    with pytest.raises(AvsegError, match="not found"):
        ClapAudio.from_official(tmp_path / "nope.pth", TINY)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AvsegError, match="cannot read CLAP weights"):
        ClapAudio.from_official(tmp_path / "junk.pth", TINY)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(AvsegError, match="expected a CLAP state dict, got list"):
        ClapAudio.from_official(tmp_path / "list.pth", TINY)


@pytest.mark.parametrize("config", [ClapAudioConfig(), TINY], ids=["clap2023", "tiny"])
def test_mel_filterbank_matches_its_definition(config):
    ours = _mel_filterbank(config.filterbank_rate, config.n_fft, config.mel_bins, config.fmin, config.fmax).numpy()
    reference = reference_mel(config.filterbank_rate, config.n_fft, config.mel_bins, config.fmin, config.fmax)
    assert np.abs(ours - reference).max() < 1e-6 * reference.max()


def test_mel_filterbank_matches_librosa_values():
    # librosa 0.11 filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T, as in msclap's melW
    weights = _mel_filterbank(32000, 1024, 64, 50.0, 14000.0).numpy()
    for (row, band), value in {(3, 0): 0.01501181349, (12, 5): 0.01814951561, (118, 40): 0.00470342301, (447, 63): 5.588383647e-05}.items():
        assert weights[row, band] == pytest.approx(value, rel=1e-5)
    assert weights.sum() == pytest.approx(2.0481262, rel=1e-6)
    assert np.flatnonzero(weights[:, 0]).tolist() == [2, 3, 4, 5]


def test_resample_like_torchaudio_values():
    # torchaudio.transforms.Resample(48000 or 16000, 44100)(sin(0.7 n)), first outputs
    signal = np.sin(np.arange(40) * 0.7).astype(np.float32)
    down = resample_like_torchaudio(signal, 48000, 44100)
    up = resample_like_torchaudio(signal, 16000, 44100)
    assert (len(down), len(up)) == (37, 111)
    np.testing.assert_allclose(down[:6], [0.0167288, 0.6845181, 1.0018133, 0.7534803, 0.0949004, -0.6195167], atol=1e-6)
    np.testing.assert_allclose(up[:6], [0.0018439, 0.1860832, 0.4464173, 0.6988084, 0.8770947, 0.9679835], atol=1e-6)


def test_resample_like_torchaudio_keeps_a_tone():
    seconds = np.arange(48000) / 48000
    out = resample_like_torchaudio(np.sin(2 * np.pi * 1000 * seconds), 48000, 8000)
    expected = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)
    assert len(out) == 8000 and np.abs(out - expected)[100:-100].max() < 1e-3


def test_embed_one_row_per_second_with_zero_padding(tiny):
    encoder = ClapAudioEncoder(tiny)
    rate = TINY.sample_rate
    waveform = np.random.default_rng(0).standard_normal(int(2.5 * rate)).astype(np.float32) * 0.1
    embeddings = encoder.embed(waveform, rate, num_seconds=4)
    assert embeddings.shape == (4, encoder.dim) == (4, 32)
    windows = np.zeros((4, rate), dtype=np.float32)
    windows.flat[: len(waveform)] = waveform
    with torch.no_grad():
        expected = tiny(torch.from_numpy(windows))
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embeddings[3], encoder.embed(np.zeros(rate), rate, 1)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.embed(waveform, rate, 2), expected[:2], atol=1e-5, rtol=1e-5)


def test_embed_resamples_from_48k(tiny):
    encoder = ClapAudioEncoder(tiny)
    waveform = np.random.default_rng(1).standard_normal(int(1.5 * 48000)).astype(np.float32) * 0.1
    windows = second_windows(resample_like_torchaudio(waveform, 48000, TINY.sample_rate), TINY.sample_rate, 2)
    with torch.no_grad():
        expected = tiny(torch.from_numpy(windows))
    torch.testing.assert_close(encoder.embed(waveform, 48000, 2), expected, atol=1e-5, rtol=1e-5)


def test_embed_in_chunks_matches_one_batch(tiny, monkeypatch):
    encoder = ClapAudioEncoder(tiny)
    waveform = np.random.default_rng(2).standard_normal(5 * TINY.sample_rate).astype(np.float32) * 0.1
    whole = encoder.embed(waveform, TINY.sample_rate, 5)
    monkeypatch.setattr(ClapAudioEncoder, "batch_windows", 2)
    torch.testing.assert_close(encoder.embed(waveform, TINY.sample_rate, 5), whole, atol=1e-5, rtol=1e-5)


def test_embed_silence_is_finite(tiny):
    embeddings = ClapAudioEncoder(tiny).embed(np.zeros(3 * TINY.sample_rate), TINY.sample_rate, 3)
    assert torch.isfinite(embeddings).all()
    torch.testing.assert_close(embeddings[0], embeddings[2])


@pytest.mark.parametrize(
    "waveform, problem",
    [(np.array([0.1, np.nan, 0.2]), "NaN"), (np.zeros(0), "non-empty mono"), (np.zeros((2, 800)), "non-empty mono")],
    ids=["nan", "empty", "stereo"],
)
def test_embed_rejects_bad_input(tiny, waveform, problem):
    with pytest.raises(AvsegError, match=problem) as caught:
        ClapAudioEncoder(tiny).embed(waveform, TINY.sample_rate, 1)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="num_seconds"):
        ClapAudioEncoder(tiny).embed(np.zeros(8), TINY.sample_rate, 0)


def test_encoder_is_frozen_and_stays_in_eval(tiny):
    encoder = ClapAudioEncoder(tiny)
    waveform = np.random.default_rng(3).standard_normal(TINY.sample_rate).astype(np.float32) * 0.1
    before = encoder.embed(waveform, TINY.sample_rate, 1)
    torch.nn.Sequential(encoder).train()
    assert not encoder.network.training and not any(p.requires_grad for p in encoder.parameters())
    torch.testing.assert_close(encoder.embed(waveform, TINY.sample_rate, 1), before)


def test_registry_builds_msclap(tmp_path):
    with pytest.raises(AvsegError, match="CLAP weights file not found"):
        build_audio_encoder(EncodersConfig(audio="msclap", audio_weights=str(tmp_path / "missing.pth")))
    with pytest.raises(ConfigError, match="encoders.audio_weights: .*CLAP_weights_2023.pth"):
        build_audio_encoder(EncodersConfig(audio="msclap", audio_weights=None))
    with pytest.raises(ConfigError, match="msclap"):
        build_audio_encoder(EncodersConfig(audio="clap"))
