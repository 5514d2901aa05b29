"""Tone colour and sensory measures of the ``descriptors`` set, frame by frame, all frames at once.

The kinds of measure the 4Q state of the art rests on (Panda et al. 2018; Louro et al. 2024), which the
broadband spectral shape does not carry:

- spectral flatness and crest factor per band (MPEG-7 AudioSpectrumFlatness / AudioSpectrumCrest, ISO/IEC
  15938-4): how noise-like or peaked the spectrum is in each band, not over the whole spectrum;
- line spectral frequencies (Itakura 1975) of an LPC envelope: where its resonances lie, robustly ordered;
- sensory dissonance of the strongest partials (Sethares 1993, after Plomp & Levelt 1965) and their
  inharmonicity (the energy-weighted distance from the nearest multiple of f0, as Essentia's ``Inharmonicity``);
- fluctuation (Pampalk 2001; Lartillot's MIRtoolbox ``mirfluctuation``): the modulation spectrum of the mel
  bands' loudness, 0-10 Hz, weighted by the ear's fluctuation strength, peaking at 4 Hz.

Spectra are (bins, frames) as librosa gives them; every function returns NaN where its measure is undefined
(the descriptors replace it by the column's undefined value).
"""

from __future__ import annotations

import itertools

import numpy as np

BAND_FMIN_HZ = 250.0  # MPEG-7's loEdge for flatness
BAND_OCTAVES = 0.5  # MPEG-7 allows 1/4 octave and coarser: half octaves keep 10 bands at 16 kHz
BAND_TOP = 0.45
LSF_ORDER = 10
N_PEAKS = 16  # the strongest spectral peaks of a frame that dissonance and inharmonicity read
PEAK_FMIN_HZ = 20.0
# Sethares (1993) fit of Plomp & Levelt's curves: d(x) = exp(-B1 s x) - exp(-B2 s x), s = S_A / (S_B f_min + S_C)
SETHARES_B1, SETHARES_B2 = 3.5, 5.75
SETHARES_S = (0.24, 0.0207, 18.96)
FLUCTUATION_MAX_HZ = 10.0
FLUCTUATION_MIN_HZ = 0.5  # below it the pattern is the level's slow drift, not a fluctuation
FLUCTUATION_SEGMENT_S = 4.0


def band_edges(sr: int) -> np.ndarray:
    """Edges of the flatness bands in Hz: ``BAND_OCTAVES`` apart from ``BAND_FMIN_HZ``, the last band ending at
    ``BAND_TOP`` of the sample rate (the resampler's roll-off toward the Nyquist frequency is no tone colour)."""
    top = BAND_TOP * sr
    n_bands = int(np.ceil(np.log2(top / BAND_FMIN_HZ) / BAND_OCTAVES - 1e-9))
    return np.minimum(BAND_FMIN_HZ * 2.0 ** (BAND_OCTAVES * np.arange(n_bands + 1)), top)


def band_flatness_crest(power: np.ndarray, sr: int, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Spectral flatness (geometric over arithmetic mean of the power) and crest (peak over mean power) in each band
    of ``band_edges``, each (bands, frames); a band of no power is flat (1) and crestless (1)."""
    freqs = np.arange(power.shape[0]) * sr / n_fft
    edges = band_edges(sr)
    flatness, crest = [], []
    for low, high in itertools.pairwise(edges):
        band = power[(freqs >= low) & (freqs <= high)].astype(np.float64)
        mean = band.mean(axis=0)
        silent = mean <= 0
        safe = np.where(silent, 1.0, mean)
        geometric = np.exp(np.log(np.maximum(band, 1e-30)).mean(axis=0))
        flatness.append(np.where(silent, 1.0, geometric / safe))
        crest.append(np.where(silent, 1.0, band.max(axis=0) / safe))
    return np.array(flatness), np.array(crest)


def line_spectral_frequencies(a: np.ndarray, sr: int) -> np.ndarray:
    """The line spectral frequencies in Hz of each row of LPC coefficients ``a`` (frames, p + 1), a[:, 0] = 1: the
    angles of the roots of P(z) = A(z) + z^-(p+1) A(1/z) and Q(z) = A(z) - z^-(p+1) A(1/z), returned (p, frames).

    The roots of P and Q lie on the unit circle, interlaced, with one at z = 1 and one at z = -1 (for even p); as
    angles in [0, pi], sorted, they read 0, w1, w1, ..., wp, wp, pi (each conjugate pair twice), so every second
    one from the first is w1..wp, whatever rounding does to the trivial roots."""
    frames, p = a.shape[0], a.shape[1] - 1
    padded = np.concatenate([a, np.zeros((frames, 1))], axis=1).astype(np.float64)
    mirrored = padded[:, ::-1]
    roots = np.concatenate([_roots(padded + mirrored), _roots(padded - mirrored)], axis=1)
    angles = np.sort(np.abs(np.angle(roots)), axis=1)
    return (angles[:, 1 : 2 * p : 2] * sr / (2 * np.pi)).T


def _roots(coefficients: np.ndarray) -> np.ndarray:
    """Roots of each row's monic polynomial c0 z^n + c1 z^(n-1) + ... + cn (c0 = 1), by its companion matrix."""
    frames, n = coefficients.shape[0], coefficients.shape[1] - 1
    companion = np.zeros((frames, n, n))
    companion[:, 0, :] = -coefficients[:, 1:] / coefficients[:, :1]
    companion[:, np.arange(1, n), np.arange(n - 1)] = 1.0
    return np.linalg.eigvals(companion)


def spectral_peaks(magnitude: np.ndarray, sr: int, n_fft: int, n_peaks: int = N_PEAKS) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_peaks`` largest local maxima of each frame's magnitude spectrum above ``PEAK_FMIN_HZ``: frequencies
    in Hz (parabolic interpolation on the log magnitude) and magnitudes, each (n_peaks, frames); a frame with fewer
    peaks has magnitude 0 in the rest."""
    mag = magnitude.astype(np.float64)
    inner = mag[1:-1]
    is_peak = (inner > mag[:-2]) & (inner >= mag[2:])
    is_peak[: int(np.ceil(PEAK_FMIN_HZ * n_fft / sr))] = False
    score = np.where(is_peak, inner, 0.0)
    k = min(n_peaks, score.shape[0])
    top = np.argpartition(-score, k - 1, axis=0)[:k]
    amplitude = np.take_along_axis(score, top, axis=0)
    log = np.log(mag + 1e-12)
    left, centre, right = (np.take_along_axis(log, top + shift, axis=0) for shift in (0, 1, 2))
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    offset = np.clip(offset, -0.5, 0.5)  # a maximum's vertex lies within half a bin; a near-flat top would fling it
    return (top + 1 + offset) * sr / n_fft, amplitude


def dissonance(freqs: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    """Sensory dissonance of each frame's partials (Sethares 1993): the Plomp-Levelt curve summed over every pair,
    a_i a_j (exp(-B1 s df) - exp(-B2 s df)) with s set by the lower partial's frequency, the amplitudes scaled to
    unit energy so that the level does not count. 0 for a single partial; a frame of no partial: NaN."""
    energy = (amplitude**2).sum(axis=0)
    a = amplitude / np.sqrt(np.where(energy > 0, energy, 1.0))
    low = np.minimum(freqs[:, None], freqs[None, :])
    distance = np.abs(freqs[:, None] - freqs[None, :])
    s_a, s_b, s_c = SETHARES_S
    s = s_a / (s_b * low + s_c)
    curve = np.exp(-SETHARES_B1 * s * distance) - np.exp(-SETHARES_B2 * s * distance)
    pairs = a[:, None] * a[None, :] * curve
    return np.where(energy > 0, pairs.sum(axis=(0, 1)) / 2, np.nan)


def inharmonicity(freqs: np.ndarray, amplitude: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """The energy-weighted distance of each frame's partials from the nearest multiple of its ``f0`` (Hz), over
    ``f0``: 0 for a harmonic tone, at most 0.5. Partials below f0 / 2 are left out; a frame without f0 or with
    no partial left: NaN."""
    pitched = f0 > 0
    f0_safe = np.where(pitched, f0, 1.0)
    ratio = freqs / f0_safe
    weight = np.where(ratio >= 0.5, amplitude**2, 0.0)
    total = weight.sum(axis=0)
    distance = np.abs(ratio - np.round(ratio))
    return np.where(pitched & (total > 0), (weight * distance).sum(axis=0) / np.where(total > 0, total, 1.0), np.nan)


def fluctuation(mel_db: np.ndarray, frames_per_s: float) -> dict[str, float]:
    """The fluctuation pattern's peak frequency (Hz), its peak over its mean, and its centroid (Hz).

    The pattern is the magnitude of the modulation spectrum of each mel band's level (dB) over segments of
    ``FLUCTUATION_SEGMENT_S`` (Hann-windowed, half overlapping), weighted by fluctuation strength
    1 / (f / 4 + 4 / f), summed over bands and averaged over segments, between ``FLUCTUATION_MIN_HZ`` and
    ``FLUCTUATION_MAX_HZ``. A clip shorter than a segment is read as one segment, zero-padded."""
    length = round(FLUCTUATION_SEGMENT_S * frames_per_s)
    levels = mel_db - mel_db.mean(axis=1, keepdims=True)
    if levels.shape[1] < length:
        levels = np.pad(levels, ((0, 0), (0, length - levels.shape[1])))
    starts = range(0, levels.shape[1] - length + 1, max(1, length // 2))
    window = np.hanning(length)
    segments = np.stack([levels[:, s : s + length] * window for s in starts])
    spectrum = np.abs(np.fft.rfft(segments, axis=2)).sum(axis=1).mean(axis=0)
    freqs = np.fft.rfftfreq(length, 1 / frames_per_s)
    kept = (freqs >= FLUCTUATION_MIN_HZ) & (freqs <= FLUCTUATION_MAX_HZ)
    pattern = spectrum[kept] / (freqs[kept] / 4 + 4 / freqs[kept])
    total = pattern.sum()
    if total <= 0:
        return dict.fromkeys(("fluctuation_peak_hz", "fluctuation_peak", "fluctuation_centroid_hz"), np.nan)
    return {
        "fluctuation_peak_hz": float(freqs[kept][np.argmax(pattern)]),
        "fluctuation_peak": float(pattern.max() / pattern.mean()),
        "fluctuation_centroid_hz": float((freqs[kept] * pattern).sum() / total),
    }
