"""Musical texture: the number of pitched layers a frame holds, on chords of known voices."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from mvemo.extract.handcrafted.texture import layer_counts, texture

SR, N_FFT, HOP = 16000, 1024, 512
VOICES = (220.0, 311.1, 493.9)  # A3, D#4, B4: no two of their first six harmonics share a bin


def tone(f0: float, seconds: float = 3.0, vibrato_hz: float = 0.0, sr: int = SR) -> np.ndarray:
    """Six harmonics of amplitude 1/h, with a vibrato of 0.5 semitone at ``vibrato_hz`` where given."""
    t = np.arange(int(seconds * sr)) / sr
    phase = (
        f0 * t + (0.03 * f0 / (2 * np.pi * vibrato_hz)) * np.sin(2 * np.pi * vibrato_hz * t) if vibrato_hz else f0 * t
    )
    return sum(np.sin(2 * np.pi * h * phase) / h for h in range(1, 7))


def magnitude(y: np.ndarray) -> np.ndarray:
    return np.abs(librosa.stft(np.asarray(y, dtype=np.float32), n_fft=N_FFT, hop_length=HOP))


@pytest.mark.parametrize("voices", [1, 2, 3])
def test_a_chord_of_known_voices_has_that_many_layers(voices: int) -> None:
    counts = layer_counts(magnitude(sum(tone(f) for f in VOICES[:voices])), SR, N_FFT)
    assert np.mean(counts == voices) > 0.95


def test_a_tone_with_vibrato_is_one_layer_and_noise_none() -> None:
    assert np.mean(layer_counts(magnitude(tone(300.0, vibrato_hz=5.5)), SR, N_FFT) == 1) > 0.95
    noise = np.random.default_rng(0).standard_normal(3 * SR)
    assert np.mean(layer_counts(magnitude(noise), SR, N_FFT) == 0) > 0.95


@pytest.mark.parametrize(("sr", "n_fft"), [(16000, 1024), (16000, 256), (48000, 1024), (22050, 512), (8000, 256)])
def test_the_texture_columns_count_layers_shares_and_transitions(sr: int, n_fft: int) -> None:
    """Two seconds of one voice, then two of three: the shares, the mean and one transition in four seconds, at any
    sample rate and STFT the descriptors may use."""
    y = np.concatenate([tone(VOICES[0], 2.0, sr=sr), sum(tone(f, 2.0, sr=sr) for f in VOICES)])
    M = np.abs(librosa.stft(y.astype(np.float32), n_fft=n_fft, hop_length=n_fft // 2))
    columns = texture(y, np.ones(M.shape[1], dtype=bool), sr, n_fft // 2, M, n_fft)
    assert columns["layers_one"] == pytest.approx(0.5, abs=0.05)
    assert columns["layers_three_or_more"] == pytest.approx(0.5, abs=0.05) and columns["layers_two"] < 0.05
    assert columns["layers_mean"] == pytest.approx(2.0, abs=0.1) and columns["layers_std"] == pytest.approx(
        1.0, abs=0.1
    )
    assert columns["layer_transitions"] == pytest.approx(1 / 4.0, abs=0.01)
    silent = texture(y, np.zeros(M.shape[1], dtype=bool), sr, n_fft // 2, M, n_fft)
    assert all(np.isnan(value) for value in silent.values())


@pytest.mark.filterwarnings("ignore:n_fft=1024 is too large")
def test_a_clip_shorter_than_a_window_has_no_texture_not_a_smeared_one() -> None:
    y = np.sin(2 * np.pi * 220 * np.arange(300) / SR)
    M = magnitude(y)
    assert all(np.isnan(v) for v in texture(y, np.ones(M.shape[1], dtype=bool), SR, HOP, M, N_FFT).values())
