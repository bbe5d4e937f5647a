import numpy as np
import pytest

from avseg.data.clip import Clip
from avseg.data.perturb import (
    NOISE_RMS,
    NoiseBank,
    PerturbedClips,
    coloured_noise,
    derangement,
    offscreen_donors,
    parse_perturbations,
    white_noise,
)
from avseg.data.synthetic import write_wav
from avseg.engine.evaluate import robust_conditions_not_run
from avseg.engine.robust import robust_markdown
from avseg.errors import ConfigError


def make_clips(count=5, rate=8000, categories=None):
    clips = []
    for k in range(count):
        meta = {"id": f"c{k}"}
        if categories is not None and categories[k] is not None:
            meta.update({"sounding_labels": categories[k]} if isinstance(categories[k], list) else {"category": categories[k]})
        t = np.arange(rate) / rate
        waveform = (0.3 * np.sin(2 * np.pi * 200 * (k + 1) * t)).astype(np.float32)
        frames = np.full((2, 4, 4, 3), k, dtype=np.uint8)
        clips.append(Clip(frames, waveform, rate, np.zeros((2, 4, 4), np.uint8), meta=meta))
    return clips


def test_parse():
    names = [p.name for p in parse_perturbations("mute, wgn10,WGN40,swap,mute")]
    assert names == ["mute", "wgn10", "wgn40", "swap"]
    assert parse_perturbations("wgn-5")[0].snr_db == -5.0
    assert [p.name for p in parse_perturbations("silence,noise,offscreen")] == ["silence", "noise", "offscreen"]
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


def rms(waveform):
    return float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


def test_silence_is_digital_zeros():
    silent = PerturbedClips(make_clips(), "silence")[1]
    assert not silent.waveform.any() and len(silent.waveform) == 8000 and silent.meta["perturbation"] == "silence"


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_coloured_noise_has_its_spectral_slope_and_level(exponent):
    noise = coloured_noise(2**16, exponent, np.random.default_rng(0))
    assert noise.dtype == np.float32 and rms(noise) == pytest.approx(NOISE_RMS, rel=1e-5)
    power = np.abs(np.fft.rfft(noise.astype(np.float64))) ** 2
    frequencies = np.arange(len(power))
    band = (frequencies >= 16) & (frequencies <= 16000)
    slope = np.polyfit(np.log(frequencies[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)  # a fit on one random draw: a tenth either way


def test_noise_condition_draws_from_the_bank_deterministically(tmp_path):
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(4000) / 16000)).astype(np.float32)  # a quarter second, shorter than a clip
    write_wav(tmp_path / "hum.wav", tone, 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    bank = NoiseBank(tmp_path)
    assert bank.names == ["pink", "brown", "hum.wav"] and bank.files == [str(tmp_path / "hum.wav")]
    clips = make_clips(12)
    noisy = PerturbedClips(clips, "noise", seed=2, noise=bank)
    sources = [noisy[k].meta["noise"] for k in range(12)]
    assert set(sources) == {"pink", "brown", "hum.wav"}
    for k in range(12):
        waveform = noisy[k].waveform
        assert len(waveform) == 8000 and rms(waveform) == pytest.approx(NOISE_RMS, rel=1e-4)
        np.testing.assert_array_equal(waveform, noisy[k].waveform)  # deterministic per index and seed
    hum = noisy[sources.index("hum.wav")].waveform
    np.testing.assert_array_equal(hum[2000:], hum[:-2000])  # the quarter second (2000 samples at 8 kHz), looped
    assert np.argmax(np.abs(np.fft.rfft(hum))) == 300  # 1 Hz bins over one second: still the 300 Hz tone


def test_noise_dir_without_readable_audio_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    write_wav(tmp_path / "quiet.wav", np.zeros(800, np.float32), 8000)
    with pytest.raises(ConfigError, match=r"^--noise-dir: .* holds no readable audio \(2 files tried"):
        NoiseBank(tmp_path)
    with pytest.raises(ConfigError, match="is not a folder"):
        NoiseBank(tmp_path / "nowhere")


def test_offscreen_audio_comes_from_a_clip_of_another_category():
    categories = ["dog", "dog", "bell", "bell", "horn", "horn"]
    clips = make_clips(6, categories=categories)
    offscreen = PerturbedClips(clips, "offscreen", seed=4)
    for k in range(6):
        donor = int(offscreen.permutation[k])
        assert categories[donor] != categories[k]
        assert offscreen[k].meta["audio_from"] == f"c{donor}"
        np.testing.assert_array_equal(offscreen[k].waveform, clips[donor].waveform)
    donors, unmatched = offscreen_donors(clips, 4)
    np.testing.assert_array_equal(donors, offscreen.permutation)  # seeded
    assert unmatched == [] and offscreen.unmatched == []
    # per-frame sounding labels (meta "sounding_labels"): no category in common over the clip's frames;
    # a clip where nothing sounds (the last) takes any clip that sounds, and is nobody's donor
    clips = make_clips(4, categories=[[["dog"], ["bell"]], [["bell"], []], [[], ["horn"]], [[], []]])
    donors, unmatched = offscreen_donors(clips, 0)
    assert list(donors[:2]) == [2, 2] and donors[2] in (0, 1) and donors[3] in (0, 1, 2) and unmatched == []


def test_offscreen_audio_needs_two_categories():
    with pytest.raises(ConfigError, match="^off-screen audio needs two categories; these clips have only one \\(dog\\)$"):
        PerturbedClips(make_clips(4, categories=["dog"] * 4), "offscreen")
    # a clip that every other sounding clip shares a category with: the official MS3 fallback, a random other clip, listed
    donors, unmatched = offscreen_donors(make_clips(3, categories=[[["dog", "bell"]], [["bell"]], [["dog"]]]), 0)
    assert unmatched == [0] and donors[0] in (1, 2) and list(donors[1:]) == [2, 1]
    assert offscreen_donors(make_clips(3), 0) is None  # the reader gives no categories
    with pytest.raises(ConfigError, match="reader gives none"):
        PerturbedClips(make_clips(3), "offscreen")


def test_robust_leaves_out_offscreen_where_the_reader_names_no_category():
    assert robust_conditions_not_run(make_clips(3, categories=["dog", "bell", "dog"])) == {}
    not_run = robust_conditions_not_run(make_clips(3))  # real MS3: no category in its files
    assert list(not_run) == ["offscreen"] and "names no sounding category" in not_run["offscreen"]
    with pytest.raises(ConfigError, match="--robust scores binary masks"):
        robust_conditions_not_run(make_clips(3), num_classes=71)
    values = {"J": 0.5, "F": 0.6, "FPR": 0.3, "F_batch_independent": 0.6, "FPR_batch_independent": 0.3}
    robust = {
        "conditions": {"positive": values, "silence": values, "noise": values},
        **{"G-mIoU": 0.6, "G-F": 0.65, "G-FPR": 0.3, "G-F_batch_independent": 0.65},
        "not_run": not_run, "noise_sources": ["pink", "brown"], "offscreen_unmatched": [],
    }
    markdown = robust_markdown(robust)
    assert "| noise | 0.5000 | 0.6000 | 0.3000 |" in markdown and "Not run: offscreen" in markdown


def test_offscreen_donor_sounds_like_nothing_visible_in_the_clip():
    # clip 0 shows a silent guitar and a barking dog: a guitar donor would sound like a visible object
    # (a model segmenting the guitar follows that sound), so only the horn clip is off-screen audio for it
    clips = make_clips(4, categories=[[["dog"]], [["guitar"]], [["guitar"]], [["horn"]]])
    clips[0].meta["visible_labels"] = [["dog", "guitar"]]
    for seed in range(8):
        donors, unmatched = offscreen_donors(clips, seed)
        assert donors[0] == 3 and unmatched == []
    clips[0].meta["visible_labels"] = [["dog", "guitar", "horn"]]  # everything that sounds elsewhere is visible: the fallback
    assert offscreen_donors(clips, 0)[1] == [0]
