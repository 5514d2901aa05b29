"""The frame-batched LPC analysis against plain per-frame references written here."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from mvemo.extract.handcrafted.lpc import (
    SILENCE_FLOOR,
    WHITE_NOISE,
    autocorrelation,
    fast_length,
    formants,
    lpc,
    residual_phase,
    yin,
)

SR = 16000


def reference_lpc(frame: np.ndarray, order: int, window: np.ndarray) -> np.ndarray:
    """LPC of one frame the plain way: direct autocorrelation sums, regularized, and a Toeplitz solve."""
    weighted = frame * window
    r = np.array([weighted[: len(frame) - k] @ weighted[k:] for k in range(order + 1)])
    r[0] = r[0] * (1 + WHITE_NOISE) + SILENCE_FLOOR
    return np.concatenate([[1.0], -scipy.linalg.solve_toeplitz(r[:order], r[1 : order + 1])])


def reference_residual_phase(frame: np.ndarray, order: int, window: np.ndarray) -> np.ndarray:
    """Paper 003 eq. 1-5 for one frame, the plain way: reference LPC, lfilter, scipy's Hilbert."""
    residual = scipy.signal.lfilter(reference_lpc(frame, order, window), [1.0], frame)
    analytic = scipy.signal.hilbert(residual, N=fast_length(len(frame)))[: len(frame)]
    return residual / np.abs(analytic)


@pytest.fixture
def frames(rng: np.random.Generator) -> np.ndarray:
    """Frames of coloured noise plus a tone: a realistic, well-conditioned LPC input."""
    n_frames, length = 40, 743
    noise = scipy.signal.lfilter([1.0], [1.0, -1.6, 0.8], rng.standard_normal((n_frames, length)), axis=1)
    tone = np.sin(2 * np.pi * 220 * np.arange(length) / SR)
    return noise + tone


def test_residual_phase_matches_the_per_frame_reference(frames: np.ndarray) -> None:
    window = np.hamming(frames.shape[1])
    fast = residual_phase(frames, lpc(frames, 18, window))
    for i, frame in enumerate(frames):
        assert np.max(np.abs(fast[i] - reference_residual_phase(frame, 18, window))) <= 1e-5
    assert np.abs(fast).max() <= 1.0 + 1e-9


def test_lpc_recovers_a_known_all_pole_filter(rng: np.random.Generator) -> None:
    a_true = np.array([1.0, -1.2, 0.9, -0.3])
    x = scipy.signal.lfilter([1.0], a_true, rng.standard_normal((4, 20000)), axis=1)
    a = lpc(x, 3)
    np.testing.assert_allclose(a, np.tile(a_true, (4, 1)), atol=0.03)


@pytest.mark.parametrize("length", [101, 4], ids=["long", "shorter-than-the-lags"])
def test_autocorrelation_equals_the_direct_sums(rng: np.random.Generator, length: int) -> None:
    frames = rng.standard_normal((6, length)).astype(np.float32)[::2]  # every other row: strided
    window = rng.uniform(0.5, 1.5, length)  # no zeros at the ends to hide the edge samples
    wide = frames.astype(np.float64) * window
    direct = np.stack([np.einsum("ij,ij->i", wide[:, : max(length - k, 0)], wide[:, k:]) for k in range(6)], 1)
    ours = autocorrelation(frames, 5, window)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, direct, rtol=1e-12, atol=1e-12 * direct[:, 0].max())
    plain = frames.astype(np.float64)
    np.testing.assert_allclose(autocorrelation(frames, 0)[:, 0], np.einsum("ij,ij->i", plain, plain), rtol=1e-12)


def test_autocorrelation_refuses_what_its_loop_cannot_index() -> None:
    frames = np.ones((3, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="window"):
        autocorrelation(frames, 5, np.ones(9))
    with pytest.raises(ValueError, match="expected"):
        autocorrelation(frames[0], 5)
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(frames, -1)


def test_an_ill_conditioned_frame_gets_the_float64_solution(rng: np.random.Generator) -> None:
    """Music resampled to 16 kHz has bands 100 dB down: float32 rounding of the autocorrelation made
    such frames' coefficients noise (0.4 off here before it was computed in float64)."""
    sharp_lowpass = scipy.signal.butter(12, 1000, fs=SR, output="sos")
    frames = scipy.signal.sosfilt(sharp_lowpass, rng.standard_normal((20, 4000)), axis=1)[:, -743:].astype(np.float32)
    window = np.hamming(743)
    expected = [reference_lpc(frame, 18, window) for frame in frames.astype(np.float64)]
    np.testing.assert_allclose(lpc(frames, 18, window), expected, atol=1e-4)


def test_silent_and_constant_frames_stay_finite() -> None:
    frames = np.zeros((3, 743))
    frames[1] = 0.5
    frames[2, 100] = 1.0
    a = lpc(frames, 18, np.hamming(743))
    assert np.isfinite(a).all() and np.array_equal(a[0], np.eye(1, 19)[0]), "silence: no prediction"
    rp = residual_phase(frames, a)
    assert np.isfinite(rp).all() and not rp[0].any()
    assert np.isfinite(yin(frames, SR, fmin_hz=65, fmax_hz=1050)).all()
    assert np.isfinite(formants(a, SR)).all()


def test_yin_agrees_with_librosa_on_tones(rng: np.random.Generator) -> None:
    import librosa

    length = 743
    for f0 in (110.0, 261.6, 440.0, 880.0):
        t = np.arange(length * 4) / SR
        y = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(2 * np.pi * 2 * f0 * t) + 0.01 * rng.standard_normal(t.size)
        ours = yin(y[None, :length], SR, fmin_hz=65, fmax_hz=1050)[0]
        theirs = np.median(librosa.yin(y, fmin=65, fmax=1050, sr=SR, frame_length=2048, hop_length=256))
        assert abs(ours - f0) / f0 < 0.01 and abs(ours - theirs) / f0 < 0.01
    assert yin(np.zeros((1, length)), SR, fmin_hz=65, fmax_hz=1050)[0] == 0.0


def reference_yin(frame: np.ndarray, fmin_hz: float, fmax_hz: float, threshold: float = 0.1) -> float:
    """YIN for one frame the plain way: the difference function as direct sums over the integration window."""
    max_lag = min(int(np.ceil(SR / fmin_hz)), len(frame) // 2)
    min_lag = max(int(np.floor(SR / fmax_hz)), 2)
    width = len(frame) - max_lag
    d = np.array([np.sum((frame[:width] - frame[lag : lag + width]) ** 2) for lag in range(max_lag + 1)])
    cmnd = np.ones_like(d)
    cmnd[1:] = d[1:] * np.arange(1, max_lag + 1) / np.cumsum(d[1:])
    dips = [lag for lag in range(min_lag, max_lag) if cmnd[lag] < threshold and cmnd[lag] <= cmnd[lag + 1]]
    lag = dips[0] if dips else min_lag + int(np.argmin(cmnd[min_lag:]))
    lag = min(max(lag, 1), max_lag - 1)
    left, mid, right = cmnd[lag - 1 : lag + 2]
    shift = 0.5 * (left - right) / (left - 2 * mid + right) if left - 2 * mid + right > 0 else 0.0
    return SR / (lag + np.clip(shift, -1, 1))


def test_yin_matches_the_per_frame_reference(frames: np.ndarray, rng: np.random.Generator) -> None:
    """Clean tones (the first dip below the threshold, an octave or more from the global minimum) and
    noisy frames (no dip: the global minimum), in float64 and float32."""
    t = np.arange(frames.shape[1]) / SR
    tones = np.stack([np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t) for f0 in (220.0, 440.0, 880.0)])
    noise = rng.standard_normal((10, frames.shape[1]))
    for batch in (tones, frames, noise, tones.astype(np.float32)):
        ours = yin(batch, SR, fmin_hz=65, fmax_hz=1050)
        expected = [reference_yin(frame.astype(np.float64), 65, 1050) for frame in batch]
        np.testing.assert_allclose(ours, expected, rtol=1e-4)
    np.testing.assert_allclose(yin(tones, SR, fmin_hz=65, fmax_hz=1050), [220.0, 440.0, 880.0], rtol=0.002)


def test_yin_refuses_a_range_with_no_lag_to_search() -> None:
    with pytest.raises(ValueError, match="fmin_hz"):
        yin(np.ones((1, 20)), SR, fmin_hz=65, fmax_hz=1050)  # frames too short for any period in range
    with pytest.raises(ValueError, match="float"):
        yin(np.ones((1, 743), dtype=np.int16), SR, fmin_hz=65, fmax_hz=1050)


def reference_formants(a: np.ndarray, n_fft: int = 512, fmin_hz: float = 90.0) -> list[float]:
    """The first three peaks of one frame's log LPC envelope, parabolically interpolated, the plain way."""
    envelope = -np.log(np.abs(np.fft.rfft(a, n_fft)))
    peaks = []
    for k in range(int(np.ceil(fmin_hz * n_fft / SR)), len(envelope) - 1):
        left, mid, right = envelope[k - 1 : k + 2]
        if mid > left and mid >= right and len(peaks) < 3:
            curvature = left - 2 * mid + right
            peaks.append((k + (0.5 * (left - right) / curvature if curvature < 0 else 0.0)) * SR / n_fft)
    return peaks + [0.0] * (3 - len(peaks))


def test_formants_match_the_per_frame_reference(frames: np.ndarray) -> None:
    a = lpc(frames, 18, np.hamming(frames.shape[1]))
    found = formants(a, SR)
    for i, coefficients in enumerate(a):
        np.testing.assert_allclose(found[i], reference_formants(coefficients), atol=0.05)
    few = formants(np.array([[1.0, -0.9]]), SR)  # one real pole: a falling envelope, no peak
    assert np.array_equal(few, np.zeros((1, 3)))


def test_formants_of_a_synthetic_vowel(rng: np.random.Generator) -> None:
    targets = (500.0, 1500.0, 2500.0)
    denominator = np.array([1.0])
    for f in targets:
        pole = 0.97 * np.exp(2j * np.pi * f / SR)
        denominator = np.convolve(denominator, np.real(np.poly([pole, np.conj(pole)])))
    excitation = np.zeros(SR)
    excitation[:: SR // 120] = 1.0  # a 120 Hz glottal pulse train
    vowel = scipy.signal.lfilter([1.0], denominator, excitation + 0.001 * rng.standard_normal(SR))
    frames = np.stack([vowel[i : i + 743] for i in range(2000, 12000, 2000)])
    found = formants(lpc(frames, 12, np.hamming(743)), SR)
    np.testing.assert_allclose(np.median(found, axis=0), targets, rtol=0.05)
