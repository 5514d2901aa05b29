"""Beats tracked at a known tempo: the dynamic programme of Ellis (2007) as ``librosa.beat.beat_track`` runs it
(librosa 0.11, ``trim=True``), frame for frame, in numba code of mvemo's that numba caches.

librosa declares the first step of its tracker, the local score, uncached (``cache=False``): every process that
tracks a beat compiled it, 1.6 s of a one-song ``predict`` and of each stage-one worker's first clip. The steps below
are librosa's, in the same order and the same float types (float64, as librosa's float64 tempo makes its loops), so
the beats are the same frames (``tests/extract/handcrafted/test_beats.py`` compares them).
"""

from __future__ import annotations

import librosa
import numba
import numpy as np

TIGHTNESS = 100.0  # librosa's default: how closely the beats keep the tempo


def track_beats(onsets: np.ndarray, frame_rate: float, bpm: float) -> np.ndarray:
    """The frames of the beats in the onset envelope ``onsets`` (frames per second ``frame_rate``) at tempo ``bpm``,
    as ``librosa.beat.beat_track(onset_envelope=onsets, sr=sr, hop_length=hop, bpm=bpm)`` gives them."""
    if bpm <= 0:
        raise ValueError(f"a tempo of {bpm} BPM: beats need a positive tempo")
    if not onsets.any():
        return np.array([], dtype=int)
    frames_per_beat = float(np.round(frame_rate * 60.0 / bpm))
    normalized = onsets / (onsets.std(ddof=1) + librosa.util.tiny(onsets))
    localscore = _local_score(normalized.astype(np.float64), frames_per_beat)  # librosa's float64 loop: its tempo's
    backlink, cumscore = _programme(localscore, frames_per_beat, np.float32(TIGHTNESS))
    maxima = librosa.util.localmax(cumscore)
    threshold = cumscore.dtype.type(0.5 * np.ma.getdata(np.ma.median(np.ma.masked_array(cumscore, mask=~maxima))))
    return np.flatnonzero(_beats(localscore, backlink, cumscore, maxima, threshold))


@numba.njit(cache=True, nogil=True)
def _local_score(onsets: np.ndarray, frames_per_beat: float) -> np.ndarray:  # pragma: no cover (numba)
    """The onsets smoothed by a Gaussian a beat wide: librosa's same-mode convolution, its first frame left out."""
    window = np.exp(-0.5 * (np.arange(-frames_per_beat, frames_per_beat + 1) * 32.0 / frames_per_beat) ** 2)
    n, k_len = len(onsets), len(window)
    localscore = np.zeros_like(onsets)
    for i in range(n):
        for k in range(max(0, i + k_len // 2 - n + 1), min(i + k_len // 2, k_len)):
            localscore[i] += window[k] * onsets[i + k_len // 2 - k]
    return localscore


@numba.njit(cache=True, nogil=True)
def _programme(
    localscore: np.ndarray, frames_per_beat: float, tightness: np.float32
) -> tuple:  # pragma: no cover (numba)
    """Each frame's best preceding beat (``backlink``, -1 for none) and the cumulated score of the best path there."""
    backlink = np.empty(len(localscore), dtype=np.int32)
    cumscore = np.empty_like(localscore)
    score_thresh = 0.01 * localscore.max()
    first_beat = True
    backlink[0] = -1
    cumscore[0] = localscore[0]
    for i in range(len(localscore)):
        score_i = localscore[i]
        best_score = -np.inf
        beat_location = -1
        for loc in range(int(i - np.round(frames_per_beat / 2)), int(i - 2 * frames_per_beat - 1), -1):
            if loc < 0:
                break
            score = cumscore[loc] - tightness * (np.log(i - loc) - np.log(frames_per_beat)) ** 2
            if score > best_score:
                best_score = score
                beat_location = loc
        cumscore[i] = score_i + best_score if beat_location >= 0 else score_i
        if first_beat and score_i < score_thresh:
            backlink[i] = -1
        else:
            backlink[i] = beat_location
            first_beat = False
    return backlink, cumscore


@numba.njit(cache=True, nogil=True)
def _beats(
    localscore: np.ndarray, backlink: np.ndarray, cumscore: np.ndarray, maxima: np.ndarray, threshold: float
) -> np.ndarray:  # pragma: no cover (numba)
    """The path back from the last beat (the last local maximum of the cumulated score at or above ``threshold``),
    less the leading and trailing frames whose local score is under half the RMS of the smoothed beats' scores."""
    tail = len(cumscore) - 1
    for n in range(len(cumscore) - 1, -1, -1):
        if maxima[n] and cumscore[n] >= threshold:
            tail = n
            break
    beats = np.zeros(len(localscore), dtype=np.bool_)
    n = tail
    while n >= 0:
        beats[n] = True
        n = backlink[n]
    w = np.hanning(5)
    smooth = np.convolve(localscore[beats], w)[len(w) // 2 : len(localscore) + len(w) // 2]
    floor = 0.5 * ((smooth**2).mean() ** 0.5)
    n = 0
    while n < len(localscore) and localscore[n] <= floor:
        beats[n] = False
        n += 1
    n = len(localscore) - 1
    while n >= 0 and localscore[n] <= floor:
        beats[n] = False
        n -= 1
    return beats
