import numpy as np
import pytest

from avseg.audio import (
    resample,
    second_windows,
    vggish_examples,
    vggish_log_mel,
    vggish_mel_matrix,
)
from avseg.silence import robust_level_db, silent_seconds


def hertz_to_mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)


def test_mel_matrix_triangles():
    weights = vggish_mel_matrix()
    assert weights.shape == (257, 64)
    assert not weights[0].any()  # DC carries nothing
    bins_hz = np.linspace(0, 8000, 257)
    outside = (bins_hz < 125) | (bins_hz > 7500)
    assert not weights[outside].any()
    edges = np.linspace(hertz_to_mel(125), hertz_to_mel(7500), 66)
    peak_mel = hertz_to_mel(bins_hz[weights.argmax(0)])
    spacing = edges[1] - edges[0]
    assert np.all(np.abs(peak_mel - edges[1:-1]) < spacing)  # each band peaks at its own centre
    assert weights.max() <= 1.0


def test_log_mel_shape_and_framing():
    waveform = np.zeros(80000, dtype=np.float32)
    log_mel = vggish_log_mel(waveform, 16000)
    assert log_mel.shape == (1 + (80000 - 400) // 160, 64) == (498, 64)
    np.testing.assert_allclose(log_mel, np.log(0.01))


def test_log_mel_sine_lands_in_its_band():
    t = np.arange(16000) / 16000
    log_mel = vggish_log_mel(np.sin(2 * np.pi * 1000 * t), 16000)
    band = int(log_mel.mean(0).argmax())
    centres = np.linspace(hertz_to_mel(125), hertz_to_mel(7500), 66)[1:-1]
    assert band == int(np.abs(centres - hertz_to_mel(1000)).argmin())


def test_log_mel_magnitude_scale():
    # a full-scale 1 kHz sine: |rfft| of the Hann-windowed frame peaks at A * sum(hann) / 2 = 100
    t = np.arange(400) / 16000
    frame_peak = np.abs(np.fft.rfft(np.sin(2 * np.pi * 1000 * t) * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)), 512)).max()
    assert frame_peak == pytest.approx(100, rel=0.02)


def test_examples_count_and_padding():
    rng = np.random.default_rng(0)
    five = rng.normal(0, 0.1, 5 * 16000).astype(np.float32)
    assert vggish_examples(five, 16000).shape == (5, 96, 64)
    short = five[: int(2.5 * 16000)]
    repeated = vggish_examples(short, 16000, num_examples=5)
    assert repeated.shape == (5, 96, 64)
    np.testing.assert_array_equal(repeated[2], repeated[4])
    np.testing.assert_array_equal(repeated[:2], vggish_examples(short, 16000))
    zeros = vggish_examples(short, 16000, num_examples=5, pad="zeros")
    assert not zeros[2:].any() and zeros[:2].any()
    assert vggish_examples(five, 16000, num_examples=3).shape == (3, 96, 64)
    silence = vggish_examples(np.zeros(100, np.float32), 16000, num_examples=2)
    np.testing.assert_allclose(silence, np.log(0.01), rtol=1e-6)


def test_examples_resample_from_other_rates():
    t = np.arange(44100 * 2) / 44100
    at_44k = vggish_examples(np.sin(2 * np.pi * 500 * t), 44100)
    t16 = np.arange(16000 * 2) / 16000
    at_16k = vggish_examples(np.sin(2 * np.pi * 500 * t16), 16000)
    assert at_44k.shape == at_16k.shape == (2, 96, 64)
    assert np.abs(at_44k - at_16k).mean() < 0.05


def test_resample_lengths_and_pitch():
    t = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(tone, 48000, 16000)
    assert len(out) == 16000 and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.fft.rfftfreq(16000, 1 / 16000)[spectrum.argmax()] - 1000) < 1
    assert len(resample(tone[:44100], 44100, 16000)) == 16000
    np.testing.assert_array_equal(resample(tone, 16000, 16000), tone)
    with pytest.raises(ValueError):
        resample(tone, 0, 16000)


def test_second_windows_zero_pad():
    waveform = np.arange(25, dtype=np.float32)
    windows = second_windows(waveform, 10, 3)
    assert windows.shape == (3, 10)
    np.testing.assert_array_equal(windows[2], [20, 21, 22, 23, 24, 0, 0, 0, 0, 0])
    assert second_windows(waveform, 10, 2).shape == (2, 10)


def test_log_mel_matches_values_from_the_official_front_end():
    """Reference values computed with AVSBench's torchvggish mel_features on the same signal."""
    t = np.arange(16000) / 16000
    signal = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 3000 * t) + 0.05 * np.sin(2 * np.pi * 7000 * t * t)
    log_mel = vggish_log_mel(signal, 16000)
    assert log_mel.shape == (98, 64)
    official = [
        [-3.740490699216, 1.793242226808, -0.015462683772, -4.569007167086, -0.910333316367, -4.523166802196, -4.599513536069],
        [-3.735866470958, 1.792106665682, -4.211200368032, -4.594698644187, -0.91039692443, -4.522957024366, 2.736600636879],
        [-3.735853448405, 1.792106774525, -4.211155582262, -4.593786484823, -0.895877519203, -4.526634755969, -4.599416843087],
    ]
    np.testing.assert_allclose(log_mel[[5, 50, 90]][:, [0, 10, 20, 30, 40, 50, 63]], official, atol=1e-9)


def whole_second_rms_db(waveform: np.ndarray, rate: int, seconds: int) -> np.ndarray:
    """The level rule the models used before the silence gate: RMS over each whole second."""
    windows = second_windows(waveform, rate, seconds).astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(windows**2, axis=1)) + 1e-10)


def test_robust_level_ignores_short_blips_at_the_edges_of_a_silent_second():
    rate = 16000
    blip = 10 ** (-45 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 1000 * np.arange(400) / rate)  # 25 ms sine at -45 dBFS RMS
    edges = np.zeros(rate)
    edges[:400], edges[-400:] = blip, blip
    speech = np.zeros(rate)
    speech[5000:9800] = np.random.default_rng(0).normal(0, 10 ** (-30 / 20), 4800)  # 300 ms at -30 dBFS
    waveform = np.concatenate([edges, speech, np.zeros(rate)]).astype(np.float32)
    whole = whole_second_rms_db(waveform, rate, 3)
    assert whole[0] > -60  # 5% of the second at -45 dBFS is -58 dBFS over the whole second
    robust = robust_level_db(waveform, rate, 3)
    assert robust[0] < -60 and robust[2] == -200.0
    assert -31.0 < robust[1] < -29.0  # a sound over 10% of the second keeps its own level (frame RMS varies: 0.5 dB)
    assert silent_seconds(robust, -60.0).tolist() == [True, False, True]
    assert silent_seconds(robust, None).tolist() == [False, False, False]


def test_robust_level_of_a_silent_second_in_an_aac_track(tmp_path):
    from avseg.media import read_audio, write_video

    rate = 44100
    noise = np.random.default_rng(0).normal(0, 0.9, (2, rate)).clip(-1, 1)  # loud, so the codec leaks
    waveform = np.concatenate([noise[0], np.zeros(rate), noise[1]]).astype(np.float32)
    video = write_video(tmp_path / "aac.mp4", np.zeros((3, 32, 32, 3), np.uint8), 1, waveform, rate)
    decoded, decoded_rate = read_audio(video, 16000)
    assert whole_second_rms_db(decoded, decoded_rate, 3)[1] > -60  # leakage at its edges: -46 dBFS measured here
    robust = robust_level_db(decoded, decoded_rate, 3)
    assert robust[1] < -60 and robust[0] > -20 and robust[2] > -20
    assert silent_seconds(robust, -60.0).tolist() == [False, True, False]


def test_dense_windows_each_give_their_frame_its_own_example():
    """``avseg segment`` at a dense rate lays one 1-s window per frame end to end; each frame must hear its own window,
    not the 0.96-s framing of the joined waveform (which drifts 0.04 s a frame into the previous window)."""
    from avseg.audio import frame_examples, vggish_examples
    from avseg.data.clip import Clip
    from avseg.models.auralsam2.inputs import stereo_examples
    from avseg.models.vct.inputs import model_inputs

    rate, frames = 16000, 30
    t = np.arange(rate) / rate
    windows = np.stack([0.5 * np.sin(2 * np.pi * (200 + 50 * k) * t) for k in range(frames)]).astype(np.float32)
    joined = windows.reshape(-1)
    own = frame_examples(joined, rate, frames, windowed=True)
    assert np.array_equal(own, np.stack([vggish_examples(window, rate)[0] for window in windows]))
    assert np.array_equal(frame_examples(joined, rate, frames, windowed=False), vggish_examples(joined, rate, num_examples=frames))
    assert not np.allclose(own[-1], vggish_examples(joined, rate, num_examples=frames)[-1], atol=1e-3)  # the drift this avoids

    images = np.zeros((frames, 8, 8, 3), np.uint8)
    dense = Clip(images, joined, rate, meta={"id": "v", "audio_span": None}, channels=np.stack([joined, joined[::-1].copy()]))
    assert np.array_equal(model_inputs(dense, images, images)["spectrograms"].numpy(), own)
    assert np.array_equal(stereo_examples(dense)[:, 0].numpy(), own)
    with pytest.raises(ValueError, match="equal windows"):
        frame_examples(joined[:-1], rate, frames, windowed=True)
