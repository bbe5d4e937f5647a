import numpy as np
import pytest

from avseg.data.clip import Clip
from avseg.data.perturb import PerturbedClips, derangement, parse_perturbations, white_noise
from avseg.errors import ConfigError


def make_clips(count=5, rate=8000):
    clips = []
    for k in range(count):
        t = np.arange(rate) / rate
        waveform = (0.3 * np.sin(2 * np.pi * 200 * (k + 1) * t)).astype(np.float32)
        frames = np.full((2, 4, 4, 3), k, dtype=np.uint8)
        clips.append(Clip(frames, waveform, rate, np.zeros((2, 4, 4), np.uint8), meta={"id": f"c{k}"}))
    return clips


def test_parse():
    names = [p.name for p in parse_perturbations("mute, wgn10,WGN40,swap,mute")]
    assert names == ["mute", "wgn10", "wgn40", "swap"]
    assert parse_perturbations("wgn-5")[0].snr_db == -5.0
    with pytest.raises(ConfigError, match="unknown audio perturbation 'loud'"):
        parse_perturbations("mute,loud")


def test_mute_keeps_frames_and_masks():
    clips = make_clips()
    muted = PerturbedClips(clips, "mute")[2]
    assert not muted.waveform.any() and len(muted.waveform) == len(clips[2].waveform)
    assert muted.frames is clips[2].frames and muted.meta["perturbation"] == "mute"
    assert clips[2].waveform.any() and "perturbation" not in clips[2].meta


@pytest.mark.parametrize("snr", [10.0, 40.0])
def test_white_noise_snr(snr):
    clips = PerturbedClips(make_clips(), f"wgn{int(snr)}", seed=3)
    noisy, clean = clips[1].waveform, make_clips()[1].waveform
    measured = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert measured == pytest.approx(snr, abs=0.3)
    np.testing.assert_array_equal(noisy, clips[1].waveform)  # deterministic per index and seed


def test_white_noise_leaves_silence_alone():
    silent = np.zeros(100, np.float32)
    np.testing.assert_array_equal(white_noise(silent, 10, np.random.default_rng(0)), silent)


def test_swap_is_a_derangement_with_matching_length():
    clips = make_clips(6)
    swapped = PerturbedClips(clips, "swap", seed=1)
    donors = swapped.permutation
    assert sorted(donors) == list(range(6)) and not np.any(donors == np.arange(6))
    for k in range(6):
        np.testing.assert_array_equal(swapped[k].waveform, clips[donors[k]].waveform)
    longer = Clip(clips[0].frames, np.ones(12000, np.float32), 8000)
    mixed = PerturbedClips([longer, clips[1]], "swap")
    assert len(mixed[0].waveform) == 12000 and not mixed[0].waveform[8000:].any()
    assert len(mixed[1].waveform) == 8000
    assert list(derangement(1, 0)) == [0]
