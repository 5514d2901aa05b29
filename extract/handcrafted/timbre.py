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

import numba
import numpy as np

BAND_FMIN_HZ = 250.0  # MPEG-7's loEdge for flatness
BAND_OCTAVES = 0.5  # MPEG-7 allows 1/4 octave and coarser: half octaves keep 10 bands at 16 kHz
BAND_TOP = 0.45
LSF_ORDER = 10
LSF_GRID = 128  # cells of pi / 128 (62 Hz at 16 kHz): none held two roots of P, or of Q, in 25,078 frames of music
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

    For a minimum-phase A (an LPC's) the roots of P and Q lie on the unit circle, interlaced, with one at z = -1 and
    one at z = 1 (for even p). Divided by those, P and Q read on the circle as real polynomials of degree p / 2 in
    cos(w) (Kabal & Ramachandran 1986), whose roots are found where they change sign on a grid of ``LSF_GRID`` + 1
    angles, then refined by Newton's method (``_lsf_angles``): 3 ms for a 30 s clip's 938 frames, where the
    eigenvalues of the two companion matrices took 26 ms. A frame where the grid misses a root (two within a cell),
    or an odd p, takes the eigenvalues (``lsf_angles_by_eigenvalues``); both agree to 1e-9 Hz."""
    a = np.asarray(a, dtype=np.float64)
    p = a.shape[1] - 1
    if p % 2 == 0:
        angles = _lsf_angles(a, _chebyshev_to_power(p // 2), np.cos(np.linspace(0.0, np.pi, LSF_GRID + 1)))
    else:
        angles = np.full((a.shape[0], p), np.nan)
    missed = np.isnan(angles).any(axis=1)
    if missed.any():
        angles[missed] = lsf_angles_by_eigenvalues(a[missed])
    return (angles * sr / (2 * np.pi)).T


def lsf_angles_by_eigenvalues(a: np.ndarray) -> np.ndarray:
    """The line spectral frequencies of each row of ``a`` as angles in (0, pi), (frames, p), from the eigenvalues of
    P's and Q's companion matrices: sorted, they read 0, w1, w1, ..., wp, wp, pi (each conjugate pair twice), so
    every second one from the first is w1..wp, whatever rounding does to the trivial roots."""
    frames, p = a.shape[0], a.shape[1] - 1
    padded = np.concatenate([a, np.zeros((frames, 1))], axis=1).astype(np.float64)
    mirrored = padded[:, ::-1]
    roots = np.concatenate([_roots(padded + mirrored), _roots(padded - mirrored)], axis=1)
    angles = np.sort(np.abs(np.angle(roots)), axis=1)
    return angles[:, 1 : 2 * p : 2]


def _roots(coefficients: np.ndarray) -> np.ndarray:
    """Roots of each row's monic polynomial c0 z^n + c1 z^(n-1) + ... + cn (c0 = 1), by its companion matrix."""
    frames, n = coefficients.shape[0], coefficients.shape[1] - 1
    companion = np.zeros((frames, n, n))
    companion[:, 0, :] = -coefficients[:, 1:] / coefficients[:, :1]
    companion[:, np.arange(1, n), np.arange(n - 1)] = 1.0
    return np.linalg.eigvals(companion)


def _chebyshev_to_power(degree: int) -> np.ndarray:
    """The matrix that turns Chebyshev coefficients c_0..c_degree into power-series ones: column m holds T_m's."""
    columns = [np.polynomial.chebyshev.cheb2poly(np.eye(degree + 1)[m]) for m in range(degree + 1)]
    return np.stack([np.pad(c, (0, degree + 1 - c.size)) for c in columns], axis=1)


@numba.njit(cache=True, nogil=True)
def _lsf_angles(a: np.ndarray, to_power: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The line spectral frequencies of each row of ``a`` (even order p) as angles in (0, pi), ascending; a row of NaN
    where ``grid`` (the cosines of angles from 0 to pi) does not find p / 2 sign changes of P's and of Q's form."""
    n_frames, p = a.shape[0], a.shape[1] - 1
    out = np.full((n_frames, p), np.nan)
    for f in range(n_frames):
        of_p = _sign_changes(_on_the_circle(a[f], 1.0, to_power), grid)
        of_q = _sign_changes(_on_the_circle(a[f], -1.0, to_power), grid)
        if of_p.size == of_q.size == p // 2:
            out[f] = np.sort(np.concatenate((of_p, of_q)))
    return out


@numba.njit(cache=True, nogil=True)
def _on_the_circle(a: np.ndarray, sign: float, to_power: np.ndarray) -> np.ndarray:
    """P's (``sign`` 1) or Q's (-1) real form on the unit circle, as a power series in x = cos w.

    P_k = a_k + a_(p+1-k), divided by (1 + z^-1), and Q_k = a_k - a_(p+1-k), divided by (1 - z^-1), are symmetric,
    c_0..c_p with c_k = c_(p-k): on the circle each is e^(-jwp/2) (c_(p/2) + 2 sum_m c_(p/2-m) T_m(x))."""
    p = a.size - 1
    half = p // 2
    deflated = np.empty(p + 1)
    previous = 0.0
    for k in range(p + 1):
        mirrored = a[p + 1 - k] if k > 0 else 0.0
        previous = a[k] + sign * mirrored - sign * previous
        deflated[k] = previous
    chebyshev = np.empty(half + 1)
    chebyshev[0] = deflated[half]
    for m in range(1, half + 1):
        chebyshev[m] = 2.0 * deflated[half - m]
    power = np.zeros(half + 1)
    for i in range(half + 1):
        for m in range(half + 1):
            power[i] += to_power[i, m] * chebyshev[m]
    return power


@numba.njit(cache=True, nogil=True)
def _sign_changes(c: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The angles in (0, pi), ascending, where the power series ``c`` of cos w changes sign between two points of
    ``grid`` (cosines, falling), each refined to the root (``_root_in``)."""
    angles = np.empty(grid.size - 1)
    found = 0
    upper = _horner(c, grid[0])
    for j in range(grid.size - 1):
        lower = _horner(c, grid[j + 1])
        if (upper > 0.0) != (lower > 0.0):
            angles[found] = np.arccos(_root_in(c, grid[j + 1], grid[j], lower > 0.0))
            found += 1
        upper = lower
    return angles[:found]


@numba.njit(cache=True, nogil=True)
def _horner(c: np.ndarray, x: float) -> float:
    acc = 0.0
    for i in range(c.size - 1, -1, -1):
        acc = acc * x + c[i]
    return acc


@numba.njit(cache=True, nogil=True)
def _root_in(c: np.ndarray, low: float, high: float, positive_at_low: bool) -> float:
    """The root of the power series ``c`` in [low, high], where it changes sign, by Newton's method kept within the
    bracket (a bisection step wherever Newton's would leave it)."""
    x = 0.5 * (low + high)
    for _ in range(100):
        value, slope = 0.0, 0.0
        for i in range(c.size - 1, -1, -1):
            slope = slope * x + value
            value = value * x + c[i]
        if value == 0.0:
            return x
        if (value > 0.0) == positive_at_low:
            low = x
        else:
            high = x
        step = value / slope if slope != 0.0 else np.inf
        following = x - step
        if not low < following < high:
            following = 0.5 * (low + high)
        if abs(following - x) <= 1e-15 or following == x:
            return following
        x = following
    return x


def spectral_peaks(magnitude: np.ndarray, sr: int, n_fft: int, n_peaks: int = N_PEAKS) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_peaks`` largest local maxima of each frame's magnitude spectrum above ``PEAK_FMIN_HZ``: frequencies
    in Hz (parabolic interpolation on the log magnitude) and magnitudes, each (n_peaks, frames), strongest first; a
    frame with fewer peaks has frequency and magnitude 0 in the rest."""
    if n_peaks < 1:
        raise ValueError(f"n_peaks={n_peaks}: expected at least 1")
    first_bin = int(np.ceil(PEAK_FMIN_HZ * n_fft / sr)) + 1
    bins, amplitude = _strongest_peaks(np.ascontiguousarray(magnitude.T), first_bin, n_peaks)
    return bins.T * (sr / n_fft), amplitude.T


@numba.njit(cache=True, nogil=True)
def _strongest_peaks(frames: np.ndarray, first_bin: int, n_peaks: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n_peaks`` strongest local maxima from ``first_bin`` on, kept in order by insertion: their
    fractional bins and magnitudes, (rows, n_peaks), 0 past a row's last peak."""
    n_frames, n_bins = frames.shape
    bins = np.zeros((n_frames, n_peaks))
    amplitude = np.zeros((n_frames, n_peaks))
    for f in range(n_frames):
        row = frames[f]
        found = 0
        for k in range(first_bin, n_bins - 1):
            value = np.float64(row[k])
            if not (row[k] > row[k - 1] and row[k] >= row[k + 1]):
                continue
            if found == n_peaks and value <= amplitude[f, n_peaks - 1]:
                continue
            slot = min(found, n_peaks - 1)
            while slot > 0 and amplitude[f, slot - 1] < value:
                amplitude[f, slot] = amplitude[f, slot - 1]
                bins[f, slot] = bins[f, slot - 1]
                slot -= 1
            amplitude[f, slot] = value
            bins[f, slot] = k + _vertex(row[k - 1], row[k], row[k + 1])
            found = min(found + 1, n_peaks)
    return bins, amplitude


@numba.njit(cache=True, nogil=True)
def _vertex(left: float, centre: float, right: float) -> float:
    """Where a parabola through the log magnitudes of a maximum and its neighbours peaks, in bins from the maximum,
    within half a bin (a near-flat top would fling it)."""
    left, centre, right = np.log(left + 1e-12), np.log(centre + 1e-12), np.log(right + 1e-12)
    curvature = left - 2.0 * centre + right
    if curvature >= 0.0:
        return 0.0
    return min(max(0.5 * (left - right) / curvature, -0.5), 0.5)


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
