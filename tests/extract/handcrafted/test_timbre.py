"""Tone colour and sensory measures on synthetic signals of known answer: each column of the ``descriptors`` set
that ``extract.handcrafted.timbre`` computes reads what the signal was built to have."""

from __future__ import annotations

import numpy as np
import pytest

from mvemo.extract.handcrafted import timbre
from mvemo.extract.handcrafted.descriptors import DescriptorConfig, descriptors, spectra
from mvemo.extract.handcrafted.lpc import lpc
from mvemo.extract.handcrafted.timbre import (
    LSF_ORDER,
    band_edges,
    line_spectral_frequencies,
    lsf_angles_by_eigenvalues,
    spectral_peaks,
)

SR = 16000
CONFIG = DescriptorConfig()
NAMES = CONFIG.columns
SECONDS = 6.0
T = np.arange(int(SECONDS * SR)) / SR


def measured(y: np.ndarray) -> dict[str, float]:
    vector = descriptors(np.asarray(y, dtype=np.float32), CONFIG)
    return dict(zip(NAMES, map(float, vector)))


def partials(freqs: list[float], amplitudes: list[float] | None = None, level: float = 0.3) -> np.ndarray:
    amplitudes = amplitudes or [1.0] * len(freqs)
    y = sum(a * np.sin(2 * np.pi * f * T) for f, a in zip(freqs, amplitudes))
    return level * np.asarray(y) / max(amplitudes) / len(freqs)


def white_noise(seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal(T.size)


def test_white_noise_is_flat_in_every_band_and_a_tone_is_peaked_in_its_own() -> None:
    """The flatness of white noise's power is e^-gamma = 0.56 in every band (a periodogram's values are exponential);
    a sine in the middle of one band makes that band tonal and peaked, not its neighbours."""
    noise = measured(white_noise())
    n_bands = len(band_edges(SR)) - 1
    assert all(0.45 < noise[f"band_flatness_{b}_mean"] < 0.7 for b in range(1, n_bands + 1))
    edges = band_edges(SR)
    band = 5  # 1000-1414 Hz
    centre = float(np.sqrt(edges[band - 1] * edges[band]))
    tone = measured(partials([centre]) + 0.001 * white_noise())
    assert tone[f"band_flatness_{band}_mean"] < 0.05 < tone[f"band_flatness_{band - 2}_mean"]
    assert tone[f"band_crest_{band}_mean"] > 3 * noise[f"band_crest_{band}_mean"]
    assert tone[f"band_crest_{band + 2}_mean"] < 2 * noise[f"band_crest_{band + 2}_mean"]


def test_line_spectral_frequencies_of_a_flat_envelope_are_evenly_spaced() -> None:
    """A(z) = 1: P and Q are 1 +- z^-(p+1), whose roots split the half circle into p + 1 equal arcs."""
    a = np.zeros((3, LSF_ORDER + 1))
    a[:, 0] = 1.0
    expected = np.arange(1, LSF_ORDER + 1) * SR / (2 * (LSF_ORDER + 1))
    np.testing.assert_allclose(line_spectral_frequencies(a, SR), np.repeat(expected[:, None], 3, axis=1), atol=1e-6)
    noise = measured(white_noise())
    got = np.array([noise[f"lsf_{k}_mean"] for k in range(1, LSF_ORDER + 1)])
    np.testing.assert_allclose(got, expected, rtol=0.05)


def test_a_resonance_is_bracketed_by_a_close_pair_of_line_spectral_frequencies() -> None:
    """A two-pole resonance at 1,200 Hz: two line spectral frequencies close around it, ascending."""
    radius, angle = 0.97, 2 * np.pi * 1200 / SR
    a = np.zeros((1, LSF_ORDER + 1))
    a[0, :3] = [1.0, -2 * radius * np.cos(angle), radius**2]
    lsf = line_spectral_frequencies(a, SR)[:, 0]
    assert np.all(np.diff(lsf) > 0) and lsf[0] > 0 and lsf[-1] < SR / 2
    below = int(np.searchsorted(lsf, 1200)) - 1
    assert lsf[below] < 1200 < lsf[below + 1] and lsf[below + 1] - lsf[below] < 150


def hann_frames(y: np.ndarray, n_fft: int = 1024) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(np.pad(y, n_fft // 2), n_fft)[:: n_fft // 2].astype(np.float64)


def lpc_of_sounds(order: int) -> np.ndarray:
    """LPC coefficients of the frames of noise, a chord with a click track and a sharp two-tone sound."""
    rng = np.random.default_rng(3)
    sounds = [white_noise(), partials([440, 554, 659, 1200], level=0.5) + 0.01 * white_noise(1)]
    sounds.append(partials([1000, 1040]) + 1e-4 * rng.standard_normal(T.size))
    return np.concatenate([lpc(hann_frames(y), order, np.hanning(1024)) for y in sounds])


@pytest.mark.parametrize("order", [LSF_ORDER, 4, 7])
def test_line_spectral_frequencies_found_on_the_circle_are_the_companion_matrices_roots(order: int) -> None:
    """The roots sought where P and Q change sign on the unit circle are those the eigenvalues give, frame by frame,
    to 1e-8 Hz. At an even order the grid finds every frame's roots in the noise and the chord, and most in the two
    close tones, whose crowded roots send a few frames to the eigenvalues (as an odd order sends all)."""
    a = lpc_of_sounds(order)
    if order % 2 == 0:
        grid = np.cos(np.linspace(0.0, np.pi, timbre.LSF_GRID + 1))
        missed = np.isnan(timbre._lsf_angles(a, timbre._chebyshev_to_power(order // 2), grid)).any(axis=1)
        assert not missed[: 2 * missed.size // 3].any() and missed.mean() < 0.1
    expected = lsf_angles_by_eigenvalues(a).T * SR / (2 * np.pi)
    np.testing.assert_allclose(line_spectral_frequencies(a, SR), expected, rtol=0, atol=1e-8)


def test_a_frame_whose_roots_share_a_cell_of_the_grid_takes_the_eigenvalues(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a grid of 8 cells some frames hold two roots of P or of Q in one: those frames are found by the
    eigenvalues, the others on the grid, and all agree with the eigenvalues."""
    a = lpc_of_sounds(LSF_ORDER)
    grid = np.cos(np.linspace(0.0, np.pi, 9))
    missed = np.isnan(timbre._lsf_angles(a, timbre._chebyshev_to_power(LSF_ORDER // 2), grid)).any(axis=1)
    assert missed.any() and not missed.all()
    monkeypatch.setattr(timbre, "LSF_GRID", 8)
    expected = lsf_angles_by_eigenvalues(a).T * SR / (2 * np.pi)
    np.testing.assert_allclose(line_spectral_frequencies(a, SR), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_strongest_peaks_of_each_frame_strongest_first(dtype: type) -> None:
    """The peaks are each frame's local maxima above 20 Hz, the 16 strongest in falling order, at the vertex of the
    log magnitude's parabola; a frame with fewer peaks has zeros in the rest. The STFT's magnitude is float32."""
    s = spectra(partials([440, 660, 990]) + 0.05 * white_noise(), CONFIG)
    magnitude = s.magnitude[:, 10:40].astype(dtype)
    magnitude[:, 0] = np.linspace(1.0, 0.0, magnitude.shape[0])  # a frame of no peak
    magnitude[:, 1] = 0.0
    magnitude[100, 1], magnitude[200, 1] = 1.0, 2.0  # two
    freqs, amplitude = spectral_peaks(magnitude, SR, CONFIG.n_fft)
    first = int(np.ceil(20.0 * CONFIG.n_fft / SR)) + 1
    for f in range(magnitude.shape[1]):
        m = magnitude[:, f].astype(np.float64)
        peaks = [k for k in range(first, m.size - 1) if m[k] > m[k - 1] and m[k] >= m[k + 1]]
        strongest = sorted(peaks, key=lambda k: -m[k])[: timbre.N_PEAKS]
        expected = np.zeros(timbre.N_PEAKS)
        expected[: len(strongest)] = m[strongest]
        np.testing.assert_array_equal(amplitude[:, f], expected)
        log = np.log(m + 1e-12)
        for i, k in enumerate(strongest):
            vertex = 0.5 * (log[k - 1] - log[k + 1]) / (log[k - 1] - 2 * log[k] + log[k + 1])
            assert freqs[i, f] == pytest.approx((k + np.clip(vertex, -0.5, 0.5)) * SR / CONFIG.n_fft, abs=1e-9)
        assert np.all(freqs[len(strongest) :, f] == 0.0)
    assert np.count_nonzero(amplitude[:, 0]) == 0 and np.count_nonzero(amplitude[:, 1]) == 2
    assert freqs[0, 1] == pytest.approx(200 * SR / CONFIG.n_fft)


def test_dissonance_follows_plomp_and_levelt() -> None:
    """A lone partial is consonant (0); two equal partials a semitone apart at 440 Hz sit near the curve's top
    (Sethares' formula gives 0.0905); an octave and a fifth of pure tones lie far outside the critical band; the
    level does not count."""
    lone = measured(partials([440]))["dissonance_p50"]
    semitone = measured(partials([440, 440 * 2 ** (1 / 12)]))["dissonance_p50"]
    fifth = measured(partials([440, 660]))["dissonance_p50"]
    octave = measured(partials([440, 880]))["dissonance_p50"]
    quiet = measured(partials([440, 440 * 2 ** (1 / 12)], level=0.01))["dissonance_p50"]
    assert lone < 1e-6 and octave < 1e-3 and fifth < 0.01
    assert 0.07 < semitone < 0.1
    assert quiet == pytest.approx(semitone, rel=1e-3)


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_inharmonicity_grows_with_the_stiffness_of_a_string(f0: float) -> None:
    """Partials n f0 sqrt(1 + B n^2) (a stiff string): B = 0 is harmonic (0), and the measure grows with B."""

    def string(b: float) -> float:
        n = np.arange(1, 11)
        return measured(partials(list(n * f0 * np.sqrt(1 + b * n**2)), list(1 / n)))["inharmonicity_p50"]

    harmonic, slight, stiff = string(0.0), string(3e-4), string(1e-3)
    assert harmonic < 0.005
    assert 2 * harmonic < slight < stiff and stiff > 0.01


@pytest.mark.parametrize("rate_hz", [2.0, 4.0, 7.0])
def test_the_fluctuation_pattern_peaks_at_the_rate_of_an_amplitude_modulation(rate_hz: float) -> None:
    """Noise whose level swings at ``rate_hz``: the pattern's peak sits at that rate and stands out; steady noise has
    no peak to speak of."""
    y = np.tile(white_noise(), 3)
    seconds = np.arange(y.size) / SR
    modulated = measured(y * (1 + np.sin(2 * np.pi * rate_hz * seconds)))
    steady = measured(y)
    assert modulated["fluctuation_peak_hz"] == pytest.approx(rate_hz, abs=0.25)
    assert modulated["fluctuation_peak"] > 3 * steady["fluctuation_peak"]
