import multiprocessing

import numpy as np
import torch

from avseg.encoders.cache import CachedAudioEncoder, CachedTextEncoder, FeatureCache
from avseg.encoders.logmel import LogMelEncoder
from avseg.encoders.vggish import VGGish, VGGishConfig, VGGishEncoder


class CountingText:
    dim = 3

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([[len(t), t.count("a"), 1.0] for t in texts])


def test_audio_cache_hits_and_invalidates(tmp_path):
    cache = FeatureCache(tmp_path)
    torch.manual_seed(0)
    encoder = VGGishEncoder(VGGish(VGGishConfig.tiny()))
    cached = CachedAudioEncoder(encoder, cache)
    waveform = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)
    first = cached.embed(waveform, 16000, 2)
    second = cached.embed(waveform, 16000, 2)
    assert (cache.misses, cache.hits) == (1, 1)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first, encoder.embed(waveform, 16000, 2), rtol=0, atol=0)
    cached.embed(waveform * 0.5, 16000, 2)  # other input
    cached.embed(waveform, 8000, 2)  # other rate
    assert cache.misses == 3
    with torch.no_grad():
        encoder.network.features[0].bias.add_(1.0)  # other weights: a new identity, never a stale hit
    CachedAudioEncoder(encoder, cache).embed(waveform, 16000, 2)
    CachedAudioEncoder(LogMelEncoder(), cache).embed(waveform, 16000, 2)
    assert cache.misses == 5


def test_text_cache_batches_misses_and_survives_corruption(tmp_path):
    cache = FeatureCache(tmp_path)
    inner = CountingText()
    text = CachedTextEncoder(inner, cache)
    out = text.encode(["bell", "drum", "bell"])
    assert inner.calls == [["bell", "drum", "bell"]]
    assert out[:, 0].tolist() == [4.0, 4.0, 4.0]
    assert text.encode(["drum", "bell"]).shape == (2, 3) and len(inner.calls) == 1
    for entry in tmp_path.rglob("*.safetensors"):
        entry.write_bytes(b"truncated")
    assert text.encode(["banana"])[0, 1] == 3.0 and text.encode(["bell"])[0, 0] == 4.0  # recomputed, rewritten
    assert len(inner.calls) == 3 and text.encode(["bell"])[0, 0] == 4.0 and len(inner.calls) == 3


def _fill(folder):
    cache = FeatureCache(folder)
    encoder = CachedAudioEncoder(LogMelEncoder(), cache)
    for k in range(5):
        encoder.embed(np.full(16000, 0.01 * (k + 1), np.float32), 16000, 1)


def test_concurrent_writers_share_a_cache(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fill, args=(tmp_path,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    entries = list(tmp_path.rglob("*.safetensors"))
    assert len(entries) == 5 and not list(tmp_path.rglob(".*"))
    cache = FeatureCache(tmp_path)
    encoder = CachedAudioEncoder(LogMelEncoder(), cache)
    for k in range(5):
        encoder.embed(np.full(16000, 0.01 * (k + 1), np.float32), 16000, 1)
    assert (cache.hits, cache.misses) == (5, 0)
