"""Repeated recordings in a set: clips whose sound is the same recording, which a split must keep on one side.

Data sets repeat recordings: GTZAN, whose file names musemo's fragments follow, holds excerpts twice under two names
(Sturm 2013), and musemo's jazz fragments 00033/00051, 00035/00055, 00036/00058, 00037/00060, 00042/00068 and
00045/00071 are such pairs. A clip's **fingerprint** is its mel spectrogram in dB re its loudest bin
(``extract.audio.MelConfig``: 96 bands to 6 kHz at 16 kHz, floored 80 dB under) over its first ``seconds``, averaged
over blocks of 16 frames (0.256 s) every 8 frames. Two clips' **similarity** is the correlation of their fingerprints
over the length both have, the best over shifts of up to four blocks either way (a cut up to half a second apart,
matched to 64 ms); another gain moves none of it.

On musemo the six jazz pairs read 0.9986 to 0.9996 and every other pair at most 0.955 (metal 00004/00013; the median
pair 0.614); on 4q-dev and mved-sample no pair reaches 0.94. ``REPEAT_THRESHOLD`` = 0.98 lies in musemo's gap, where one
recording cut alike reads and two recordings of one style do not.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from mvemo.extract.audio import MelConfig, mel_spectrogram
from mvemo.extract.decode.audio import AudioWindow, decode_audio, resample_exact
from mvemo.manifests.errors import MediaError
from mvemo.manifests.schema import Clip

REPEAT_THRESHOLD = 0.98
BLOCK_FRAMES, BLOCK_HOP = 16, 8
MAX_SHIFT_BLOCKS = 4
FINGERPRINT_S = 30.0


def fingerprint(path: str | os.PathLike[str], *, seconds: float = FINGERPRINT_S, clip_id: str = "") -> np.ndarray:
    """The fingerprint of the file's first ``seconds`` (module doc): (96, blocks) float32."""
    window = AudioWindow(duration_s=seconds)
    config = MelConfig(audio_window=window)
    decoded = decode_audio(path, window, clip_id=clip_id)
    y = resample_exact(decoded.y, decoded.sr, config.sample_rate_hz, window.n_samples(config.sample_rate_hz))
    decoded_samples = int(np.ceil(min(decoded.valid_s, seconds) * config.sample_rate_hz))
    mel = mel_spectrogram(y[:decoded_samples], config)
    if mel.shape[1] < BLOCK_FRAMES:
        return mel.mean(axis=1, keepdims=True).astype(np.float32)
    running = np.cumsum(np.pad(mel, ((0, 0), (1, 0))), axis=1, dtype=np.float64)
    starts = np.arange(0, mel.shape[1] - BLOCK_FRAMES + 1, BLOCK_HOP)
    return ((running[:, starts + BLOCK_FRAMES] - running[:, starts]) / BLOCK_FRAMES).astype(np.float32)


def similarities(prints: Sequence[np.ndarray]) -> np.ndarray:
    """Every pair's similarity (module doc), (n, n), the diagonal 1; over the blocks the shortest clip has."""
    blocks = min(p.shape[1] for p in prints)
    stacked = np.stack([p[:, :blocks] for p in prints]).astype(np.float64)  # (n, bands, blocks)
    best = np.full((len(prints), len(prints)), -1.0)
    for shift in range(-min(MAX_SHIFT_BLOCKS, blocks - 1), min(MAX_SHIFT_BLOCKS, blocks - 1) + 1):
        early = _centred(stacked[:, :, max(shift, 0) : blocks + min(shift, 0)])
        late = _centred(stacked[:, :, max(-shift, 0) : blocks - max(shift, 0)])
        best = np.maximum(best, early @ late.T)
    np.fill_diagonal(best, 1.0)
    return best


def repeated_pairs(
    prints: Sequence[np.ndarray], *, threshold: float = REPEAT_THRESHOLD
) -> list[tuple[int, int, float]]:
    """The pairs of clips (i < j) whose similarity reaches ``threshold``, with it, most similar first."""
    found = similarities(prints)
    i, j = np.triu_indices(len(prints), 1)
    above = found[i, j] >= threshold
    pairs = [(int(a), int(b), float(s)) for a, b, s in zip(i[above], j[above], found[i, j][above])]
    return sorted(pairs, key=lambda pair: -pair[2])


def _centred(blocks: np.ndarray) -> np.ndarray:
    """Each clip's blocks (n, bands, blocks) flattened, less their mean, of unit norm: (n, bands x blocks)."""
    flat = blocks.reshape(len(blocks), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.where(norms > 0, norms, 1.0)


def repeated_clips(
    clips: Iterable[Clip],
    *,
    threshold: float = REPEAT_THRESHOLD,
    unreadable: Callable[[Clip, MediaError], None] | None = None,
) -> list[tuple[int, int, float]]:
    """The pairs of ``clips`` (their positions) that are one recording, with their similarity. A clip whose sound
    cannot be read goes to ``unreadable`` and is compared with none; without it, its error is raised."""
    prints, read = [], []
    for row, clip in enumerate(clips):
        try:
            prints.append(fingerprint(clip.sound_file, clip_id=clip.clip_id))
            read.append(row)
        except MediaError as error:
            if unreadable is None:
                raise
            unreadable(clip, error)
    return [(read[a], read[b], similarity) for a, b, similarity in repeated_pairs(prints, threshold=threshold)]
