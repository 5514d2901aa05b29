"""The descriptors: each measure answers to the musical property it names, and bad input stays finite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import librosa
import numpy as np
import pyloudnorm
import pytest
import scipy.stats
import soundfile as sf

from mvemo.extract.audio import compute_audio_features
from mvemo.extract.decode.audio import AudioWindow, decode_audio
from mvemo.extract.features import FeatureConfigs
from mvemo.extract.handcrafted import descriptors as descriptors_module
from mvemo.extract.handcrafted import smile
from mvemo.extract.handcrafted.descriptors import DescriptorConfig, columns, descriptors, zero_crossing_rate
from mvemo.manifests import ConfigError

SR = 16000
CONFIG = DescriptorConfig()
NAMES = CONFIG.columns


def value(vector: np.ndarray, name: str) -> float:
    return float(vector[NAMES.index(name)])


def notes(midi: list[int], duration_s: float = 8.0, amplitude: float = 0.2) -> np.ndarray:
    """A sustained chord of harmonic tones (3 partials each)."""
    t = np.arange(int(duration_s * SR)) / SR
    y = sum(amplitude / k * np.sin(2 * np.pi * k * 440 * 2 ** ((m - 69) / 12) * t) for m in midi for k in (1, 2, 3))
    return np.asarray(y, dtype=np.float32)


def clicks(bpm: float, duration_s: float = 20.0) -> np.ndarray:
    y = np.zeros(int(duration_s * SR), dtype=np.float32)
    burst = np.random.default_rng(0).standard_normal(160).astype(np.float32) * np.hanning(160).astype(np.float32)
    for start in np.arange(0, duration_s - 0.1, 60 / bpm):
        y[int(start * SR) : int(start * SR) + 160] += burst
    return y


def music(duration_s: float = 10.0) -> np.ndarray:
    return notes([60, 64, 67], duration_s) + 0.3 * clicks(100, duration_s)


@pytest.mark.heavy
def test_one_named_value_per_column() -> None:
    vector = descriptors(music(), CONFIG)
    assert vector.dtype == np.float32 and vector.shape == (len(NAMES),) == (len(set(NAMES)),)
    assert len(NAMES) == len(columns(CONFIG)) > 400


@pytest.mark.parametrize(
    "name, y",
    [
        ("silence", np.zeros(30 * SR, dtype=np.float32)),
        ("half_second", music(0.5)),
        ("a tenth of a second", music(0.1)),
        ("clipped", np.clip(20 * music(), -1, 1)),
        ("constant", np.full(5 * SR, 0.5, dtype=np.float32)),
        ("noise burst then silence", np.concatenate([clicks(60, 1.0), np.zeros(9 * SR, dtype=np.float32)])),
    ],
)
def test_bad_input_gives_finite_values(name: str, y: np.ndarray) -> None:
    vector = descriptors(y, CONFIG)
    assert np.isfinite(vector).all(), [n for n, v in zip(NAMES, vector) if not np.isfinite(v)]
    if name == "silence":
        assert vector.tolist() == [np.float32(c.undefined) for c in columns(CONFIG)]
        assert value(vector, "tempo_confidence") == 0 and value(vector, "loudness_lufs") == -70
    if name == "a tenth of a second":  # shorter than EBU R128's 0.4-s block, and too short for a pulse
        assert value(vector, "loudness_lufs") == -70 and value(vector, "tempo") == 0
    if name == "half_second":
        assert -40 < value(vector, "loudness_lufs") < 0 and value(vector, "centroid_mean") > 200


def edge_cases() -> list[np.ndarray]:
    """Music, noise and the samples that test a sign: zeros, negative zeros, values within 1e-10 of 0, a short clip."""
    rng = np.random.default_rng(5)
    tiny = 1e-11 * rng.standard_normal(2000)
    signed_zeros = np.r_[np.zeros(300), -np.zeros(300), tiny, rng.standard_normal(3000), -np.zeros(100)]
    return [music(3.0), 0.1 * rng.standard_normal(2 * SR), signed_zeros.astype(np.float32), music(0.05)]


@pytest.mark.parametrize("frame_length, hop_length", [(1024, 512), (2048, 300), (256, 256)])
def test_the_zero_crossing_rate_is_librosas(frame_length: int, hop_length: int) -> None:
    for y in edge_cases():
        expected = librosa.feature.zero_crossing_rate(y, frame_length=frame_length, hop_length=hop_length)
        np.testing.assert_array_equal(zero_crossing_rate(y, frame_length, hop_length), expected)


def test_the_integrated_loudness_is_pyloudnorms() -> None:
    """The K-weighting run as one cascade, pyloudnorm's gating: the same value to rounding, on music, noise, and a
    clip whose quiet end the relative gate leaves out."""
    quiet_end = np.concatenate([music(2.0), np.zeros(SR, dtype=np.float32), 0.01 * music(2.0)])
    for y in [*edge_cases()[:2], quiet_end]:
        expected = max(pyloudnorm.Meter(SR).integrated_loudness(y.astype(np.float64)), -70.0)
        assert descriptors_module._loudness(y, SR) == pytest.approx(expected, abs=1e-9)


def test_the_statistics_of_a_series() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.gamma(2.0, size=(3, 500)), np.full((1, 500), 4.0)]).astype(np.float32)
    stats = descriptors_module._statistics(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats[:, 0], x64.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats[:, 1], x64.std(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats[:, 2:5], np.percentile(x64, [10, 50, 90], axis=1).T, rtol=1e-12)
    np.testing.assert_allclose(stats[:3, 5], scipy.stats.skew(x64[:3], axis=1), rtol=1e-9)
    assert stats[3, 5] == 0.0  # a constant series has no skew
    np.testing.assert_allclose(stats[:, 6], np.abs(np.diff(x64, axis=1)).mean(axis=1), rtol=1e-12)


def test_clipping_raises_the_loudness_and_flattens_the_spectrum() -> None:
    clean, clipped = descriptors(music(), CONFIG), descriptors(np.clip(20 * music(), -1, 1), CONFIG)
    assert value(clipped, "loudness_lufs") > value(clean, "loudness_lufs") + 10
    assert value(clipped, "flatness_mean") > value(clean, "flatness_mean")


def test_a_silent_intro_is_not_measured_as_sound_and_a_steady_tone_has_no_pulse() -> None:
    tone = notes([69], 5.0)
    alone = descriptors(tone, CONFIG)
    intro = descriptors(np.concatenate([np.zeros(5 * SR, dtype=np.float32), tone]), CONFIG)
    for name in ("centroid_mean", "flatness_mean", "chroma_a_mean", "mfcc_2_mean"):
        assert value(intro, name) == pytest.approx(value(alone, name), rel=0.05, abs=1e-3), name
    assert value(intro, "rms_p10") == -100  # the level itself counts every frame
    assert value(alone, "tempo") == 0 and value(alone, "tempo_confidence") == 0


def test_loudness_and_level_follow_the_gain() -> None:
    y = music()
    loud, soft = descriptors(y, CONFIG), descriptors(0.1 * y, CONFIG)
    assert value(loud, "loudness_lufs") - value(soft, "loudness_lufs") == pytest.approx(20, abs=0.05)
    assert value(loud, "rms_mean") - value(soft, "rms_mean") == pytest.approx(20, abs=0.05)
    ramp = np.linspace(0.05, 1, y.size, dtype=np.float32)
    assert (
        value(descriptors(y * ramp, CONFIG), "rms_slope")
        > 1
        > -1
        > value(descriptors(y * ramp[::-1], CONFIG), "rms_slope")
    )


def test_tempo_and_pulse_of_a_click_track() -> None:
    steady = descriptors(clicks(120), CONFIG)
    assert value(steady, "tempo") == pytest.approx(120, rel=0.03)
    assert value(steady, "onset_rate") == pytest.approx(2.0, abs=0.25)
    assert value(steady, "pulse_clarity") >= value(steady, "tempo_confidence") > 0.3
    rng = np.random.default_rng(1)
    scattered = np.zeros_like(clicks(120))
    for start in rng.uniform(0, 19.9, 40):
        scattered[int(start * SR) : int(start * SR) + 160] += rng.standard_normal(160).astype(np.float32)
    assert value(descriptors(scattered, CONFIG), "pulse_clarity") < value(steady, "pulse_clarity")


def test_major_and_minor_chords_and_harmonic_content() -> None:
    major, minor = descriptors(notes([60, 64, 67]), CONFIG), descriptors(notes([60, 63, 67]), CONFIG)
    assert value(major, "mode_clarity") > value(minor, "mode_clarity")
    assert value(major, "chroma_c_mean") > value(major, "chroma_cs_mean")
    assert value(major, "harmonic_percussive") > value(descriptors(clicks(120, 8.0), CONFIG), "harmonic_percussive")


def test_brightness_follows_the_spectrum() -> None:
    low, high = descriptors(notes([48]), CONFIG), descriptors(notes([84]), CONFIG)
    assert value(high, "centroid_mean") > 2 * value(low, "centroid_mean")
    assert value(high, "rolloff_p50") > value(low, "rolloff_p50")


def test_stereo_equals_mono_and_the_window_padding_is_not_measured(tmp_path: Path) -> None:
    y = music(3.0)
    sf.write(tmp_path / "mono.wav", y, SR)
    sf.write(tmp_path / "stereo.wav", np.stack([y, y], axis=1), SR)

    def measured(name: str, duration_s: float) -> np.ndarray:
        config = DescriptorConfig(audio_window=AudioWindow(duration_s=duration_s))
        decoded = decode_audio(tmp_path / name, config.audio_window)
        return compute_audio_features(decoded, ("descriptors",), {"descriptors": config})["descriptors"]

    mono = measured("mono.wav", 3.0)
    np.testing.assert_allclose(measured("stereo.wav", 3.0), mono, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(measured("mono.wav", 30.0), mono)


opensmile_installed = pytest.mark.skipif(importlib.util.find_spec("opensmile") is None, reason="needs mvemo[opensmile]")


@pytest.mark.heavy
@opensmile_installed
def test_egemaps_through_opensmile(tmp_path: Path) -> None:
    (spec,) = FeatureConfigs().specs(("egemaps",))
    assert spec.row_shape == (88,) and spec.columns[0].startswith("F0semitone")
    for y in (music(), np.zeros(SR // 2, dtype=np.float32)):
        vector = smile.smile_features(y, FeatureConfigs().handcrafted["egemaps"])
        assert vector.shape == (88,) and np.isfinite(vector).all()


def test_without_opensmile_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opensmile", None)
    smile._smile.cache_clear()
    with pytest.raises(ConfigError, match=r"pip install 'mvemo\[opensmile\]'"):
        FeatureConfigs().specs(("compare",))
    smile._smile.cache_clear()
