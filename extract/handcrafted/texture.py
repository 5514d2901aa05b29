"""Musical texture of the ``descriptors`` set: how many pitched layers sound at once, and how often that changes.

The 4Q state of the art reads texture as the number of concurrent melodic layers a multi-pitch estimate finds per
frame, its mean and spread, the share of frames with each count and the transitions between counts per second
(Panda et al. 2018, "musical layers"). Here the estimate is Klapuri's (2006) iterative estimation and cancellation
over a harmonic-summation salience: in each frame the candidate f0 whose harmonics sum the most magnitude is taken
as a layer, its harmonics are removed from the spectrum, and the next is sought, while the next one's salience
stays above ``LAYER_SHARE`` of the first's. A frame whose strongest salience does not stand ``PITCHED_OVER_FLAT``
times above what a flat spectrum of its mean magnitude would sum (noise, a drum hit) holds no layer.
"""

from __future__ import annotations

import librosa
import numpy as np

BIN_HZ = 15.625  # the widest STFT bin the partials' neighbourhoods below are sized for (16 kHz / 1,024)
F0_MIN_HZ = 110.0  # A2: below it the harmonics of neighbouring candidates fall within a bin or two of each other
F0_SEMITONES = 36  # three octaves of candidates, A2 to G#5
HARMONICS = 6
LAYER_SHARE = 0.3
PITCHED_OVER_FLAT = 4.0
MAX_LAYERS = 5
SMOOTH_FRAMES = 5  # the count's running median before transitions are counted: one frame's flicker is no transition
COLUMNS = ("layers_mean", "layers_std", "layers_one", "layers_two", "layers_three_or_more", "layer_transitions")


def candidate_bins(sr: int, n_fft: int) -> np.ndarray:
    """The STFT bin of each harmonic of each candidate f0, (candidates, harmonics); -1 beyond the spectrum."""
    f0 = F0_MIN_HZ * 2.0 ** (np.arange(F0_SEMITONES) / 12)
    bins = np.rint(f0[:, None] * np.arange(1, HARMONICS + 1)[None, :] * n_fft / sr).astype(np.int64)
    return np.where(bins < n_fft // 2, bins, -1)


def layer_counts(magnitude: np.ndarray, sr: int, n_fft: int) -> np.ndarray:
    """The number of pitched layers in each frame of ``magnitude`` (bins, frames), 0 to ``MAX_LAYERS``."""
    bins = candidate_bins(sr, n_fft)
    weights = np.where(bins >= 0, 1.0 / np.arange(1, HARMONICS + 1)[None, :], 0.0)
    # a partial is read at its bin or a neighbour (a frequency between bins, a slightly mistuned voice)
    neighbours = np.clip(bins[..., None] + np.array([-1, 0, 1]), 0, magnitude.shape[0] - 1)
    # and cancelled with the whole main lobe of the Hann window's partial (4 bins wide)
    lobes = np.clip(bins[..., None] + np.arange(-2, 3), 0, magnitude.shape[0] - 1)
    spectrum = np.asarray(magnitude, dtype=np.float64).T.copy()  # (frames, bins), cancelled layer by layer
    frames = np.arange(len(spectrum))
    counts = np.zeros(len(spectrum), dtype=np.int64)
    first: np.ndarray | None = None
    open_frames = np.ones(len(spectrum), dtype=bool)  # frames still taking layers
    for _ in range(MAX_LAYERS):
        partials = spectrum[:, neighbours].max(axis=3)  # (frames, candidates, harmonics)
        salience = (partials * weights).sum(axis=2)
        best = salience.argmax(axis=1)
        peak = salience[frames, best]
        if first is None:
            first = peak
            level = magnitude[: bins.max() + 2].mean(axis=0) * weights[0].sum()  # a flat spectrum's salience
            open_frames &= peak > PITCHED_OVER_FLAT * level
        open_frames &= (peak > 0) & (peak >= LAYER_SHARE * first)
        counts += open_frames
        for h in range(HARMONICS):  # the layer's harmonics cancelled where it was taken
            taken = open_frames & (bins[best, h] >= 0)
            spectrum[frames[taken, None], lobes[best[taken], h]] = 0.0
    return counts


def analysis_size(sr: int) -> int:
    """The STFT size of bins no wider than ``BIN_HZ`` at ``sr``: a power of two."""
    return int(2 ** np.ceil(np.log2(sr / BIN_HZ)))


def texture(
    y: np.ndarray, active: np.ndarray, sr: int, hop: int, magnitude: np.ndarray, n_fft: int
) -> dict[str, float]:
    """The texture columns of mono ``y`` at ``sr`` over its ``active`` (not silent) frames of hop ``hop``, NaN where
    it has none: from its STFT ``magnitude`` of ``n_fft`` points where that is ``analysis_size``, else from an STFT
    of its own of that size, the same frames. Frames whose window reaches past the clip's ends are left out: half a
    window smears a partial past what its cancellation removes."""
    size = analysis_size(sr)
    if n_fft != size:
        magnitude = np.abs(librosa.stft(np.asarray(y, dtype=np.float32), n_fft=size, hop_length=hop))
    starts = np.arange(magnitude.shape[1]) * hop - size // 2
    whole = (starts >= 0) & (starts + size <= len(y))
    counts = layer_counts(magnitude[:, whole & active[: magnitude.shape[1]]], sr, size)
    if counts.size == 0:
        return dict.fromkeys(COLUMNS, np.nan)
    half = SMOOTH_FRAMES // 2
    padded = np.pad(counts, half, mode="symmetric")
    smooth = np.median(np.lib.stride_tricks.sliding_window_view(padded, SMOOTH_FRAMES), axis=1)
    return {
        "layers_mean": float(counts.mean()),
        "layers_std": float(counts.std()),
        "layers_one": float(np.mean(counts == 1)),
        "layers_two": float(np.mean(counts == 2)),
        "layers_three_or_more": float(np.mean(counts >= 3)),
        "layer_transitions": float(np.count_nonzero(np.diff(smooth)) / (counts.size * hop / sr)),
    }
