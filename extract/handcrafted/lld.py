"""Low-level descriptors of paper 003 (MFCC + residual phase, F0, formants, spectral contrast, chroma) on one time grid.

``LldConfig`` is the set's config (its fields go into the cache's fingerprints);
``low_level_descriptors`` computes the matrix from the clip's window at two rates.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import librosa
import numpy as np
import scipy.fft
import scipy.signal

from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.handcrafted.lpc import fast_length, formants, lpc, residual_phase, yin
from mvemo.extract.handcrafted.spectra import (
    DB_AMIN,
    chroma_filterbank,
    mel_filterbank,
    n_frames,
    periodic_window,
    power_blocks,
    row_blocks,
)
from mvemo.manifests.errors import ConfigError, require


@dataclass(frozen=True)
class LldConfig:
    """Low-level descriptors of paper 003 section 2.2, all on one time grid.

    Frames of ``frame_length`` samples at ``sample_rate_hz`` (2048 at 44.1 kHz =
    46.4 ms), hop ``hop_length`` (50% overlap), ``window`` a scipy window name.
    MFCC as ``librosa.feature.mfcc`` with these parameters. Residual phase on a
    ``lpc_sample_rate_hz`` copy with frames of the same duration and hop: an LPC
    of order ~18 at 44.1 kHz would spread its poles over 0-22 kHz and model the
    formant region poorly. Its frame-level descriptor is the same mel cepstrum
    applied to the RP signal. The combined descriptor is ``[w * MFCC, (1 - w) *
    RP]`` with ``w = rp_weight``; the weight matters where columns are not
    standardized (the CRNN's Bi-LSTM input), not for a standardized classifier.
    F1-F3 come from the same LPC, F0 from YIN on the same frames, octave spectral
    contrast and chroma from the 44.1 kHz frames.
    """

    sample_rate_hz: int = 44100
    frame_length: int = 2048
    hop_length: int = 1024
    window: str = "blackmanharris"
    n_mfcc: int = 20
    n_mels: int = 128
    lpc_order: int = 18
    lpc_sample_rate_hz: int = 16000
    rp_weight: float = 0.5
    rp_n_mels: int = 40
    f0_fmin_hz: float = 65.0
    f0_fmax_hz: float = 1050.0
    contrast_fmin_hz: float = 200.0
    contrast_n_bands: int = 6
    n_chroma: int = 12
    audio_window: AudioWindow = field(default_factory=AudioWindow)

    def __post_init__(self) -> None:
        require(
            self.hop_length >= 1 and self.frame_length >= 16 and self.frame_length % 2 == 0,
            f"frame_length={self.frame_length}, hop_length={self.hop_length}:"
            " expected an even frame_length >= 16, hop >= 1",
        )
        require(1 <= self.n_mfcc <= self.n_mels, f"n_mfcc={self.n_mfcc}: expected 1..n_mels ({self.n_mels})")
        require(
            1 <= self.lpc_order < self.lpc_frame_length // 2,
            f"lpc_order={self.lpc_order}: expected 1..{self.lpc_frame_length // 2 - 1}",
        )
        require(0.0 <= self.rp_weight <= 1.0, f"rp_weight={self.rp_weight}: expected 0..1")
        require(
            0 < self.f0_fmin_hz < self.f0_fmax_hz < self.lpc_sample_rate_hz / 2,
            f"f0_fmin_hz={self.f0_fmin_hz}, f0_fmax_hz={self.f0_fmax_hz}:"
            " expected 0 < fmin < fmax < lpc_sample_rate_hz / 2",
        )
        require(
            self.lpc_sample_rate_hz / self.f0_fmin_hz < self.lpc_frame_length / 2,
            f"f0_fmin_hz={self.f0_fmin_hz}: its period must fit twice in a {self.lpc_frame_length}-sample frame",
        )
        require(
            self.contrast_n_bands >= 1
            and 0 < self.contrast_fmin_hz * 2 ** (self.contrast_n_bands - 1) < self.sample_rate_hz / 2,
            f"contrast_fmin_hz={self.contrast_fmin_hz}, contrast_n_bands={self.contrast_n_bands}: expected n_bands >= 1"
            " and every octave band to start below sample_rate_hz / 2",
        )
        _contrast_bands(self.sample_rate_hz, self.frame_length, self.contrast_fmin_hz, self.contrast_n_bands)
        try:
            scipy.signal.get_window(self.window, 8)
        except ValueError:
            raise ConfigError(
                f"window={self.window!r}: not a scipy window name (e.g. 'blackmanharris', 'hann')"
            ) from None

    @property
    def lpc_frame_length(self) -> int:
        """Frame length on the LPC copy: the same duration as the main frames."""
        return round(self.frame_length * self.lpc_sample_rate_hz / self.sample_rate_hz)

    @property
    def n_frames(self) -> int:
        return 1 + self.audio_window.n_samples(self.sample_rate_hz) // self.hop_length

    @property
    def columns(self) -> tuple[str, ...]:
        return (
            *(f"mfcc_{i}" for i in range(self.n_mfcc)),
            *(f"rp_{i}" for i in range(self.n_mfcc)),
            "f0",
            "formant_1",
            "formant_2",
            "formant_3",
            *(f"contrast_{i}" for i in range(self.contrast_n_bands + 1)),
            *(f"chroma_{i}" for i in range(self.n_chroma)),
        )


def low_level_descriptors(
    y_main: np.ndarray, y_lpc: np.ndarray, config: LldConfig, frames: int | None = None
) -> np.ndarray:
    """The LLD matrix, shape (frames, len(config.columns)), float32, columns in ``config.columns`` order.

    ``y_main`` is the window at ``sample_rate_hz``, ``y_lpc`` the same window at ``lpc_sample_rate_hz``, each as
    long as the window or cut where its sound ends (every frame is computed from its own samples: those past the end
    are the window's zero padding); ``frames``: the first frames of the window's grid (default all of it,
    ``config.n_frames``).
    """
    frames = config.n_frames if frames is None else frames
    mfcc, contrast, chroma = (part[:frames] for part in spectral_llds(y_main, config))
    rp, f0, formant = lpc_llds(y_lpc, config, frames)
    w = config.rp_weight
    columns = [w * mfcc, (1 - w) * rp, f0[:, None], formant, contrast, chroma]
    return np.nan_to_num(np.concatenate(columns, axis=1), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def spectral_llds(y: np.ndarray, config: LldConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MFCC, octave spectral contrast and chroma of ``y`` (at ``sample_rate_hz``) from one STFT pass.

    Each equals its librosa function with the config's frames and window
    (``mfcc``; ``spectral_contrast`` on the magnitude; ``chroma_stft`` with tuning
    0, no per-clip tuning estimate). The STFT runs in blocks of frames
    (``extract.handcrafted.spectra.power_blocks``).

    Returns
    -------
    mfcc : ndarray, shape (n_frames, n_mfcc)
    contrast : ndarray, shape (n_frames, contrast_n_bands + 1), dB
    chroma : ndarray, shape (n_frames, n_chroma), each frame's maximum 1
    """
    mel_bank = mel_filterbank(config.sample_rate_hz, config.frame_length, config.n_mels, 0.0, None)
    chroma_bank = chroma_filterbank(config.sample_rate_hz, config.frame_length, config.n_chroma)
    bands = _contrast_bands(
        config.sample_rate_hz, config.frame_length, config.contrast_fmin_hz, config.contrast_n_bands
    )
    count = n_frames(y, config.hop_length)
    mel = np.empty((count, config.n_mels), dtype=np.float32)
    chroma = np.empty((count, config.n_chroma), dtype=np.float32)
    valley = np.empty((count, len(bands)))
    peak = np.empty((count, len(bands)))
    for rows, power in power_blocks(y, config.frame_length, config.hop_length, config.window):
        mel[rows] = mel_bank.apply(power)
        chroma[rows] = chroma_bank.apply(power)
        for band, (low, high, k) in enumerate(bands):
            valley[rows, band], peak[rows, band] = _band_extremes(power[:, low:high], k)
    contrast = _power_db(peak) - _power_db(valley)
    chroma = librosa.util.normalize(chroma, norm=np.inf, axis=1)
    return _cepstrum(mel, config.n_mfcc), contrast, chroma


def _band_extremes(power: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean magnitude of the ``k`` weakest and of the ``k`` strongest bins of each row of ``power``.

    Magnitude order is power order, so the square roots are taken of the 2k bins kept;
    one bin a side is a min and a max, more a sort (numpy's SIMD sort: 7x faster
    than ``np.partition`` here).
    """
    if k == 1:
        return np.sqrt(power.min(axis=1)), np.sqrt(power.max(axis=1))
    ordered = np.sort(power, axis=1)
    return np.sqrt(ordered[:, :k]).mean(axis=1), np.sqrt(ordered[:, -k:]).mean(axis=1)


def lpc_llds(y: np.ndarray, config: LldConfig, frames: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual-phase cepstrum, F0 and formants of ``y`` (at ``lpc_sample_rate_hz``) on the first ``frames`` frames of
    the main frame grid (default all of it).

    One LPC per frame (Hamming-weighted autocorrelation) gives the residual phase
    and the formants; YIN runs on the same frames. The residual phase's frame-level
    descriptor is the mel cepstrum of the MFCC applied to the RP signal. Frames go
    in blocks (``extract.handcrafted.spectra.row_blocks``); the cepstrum's dB floor is the clip's.

    Returns
    -------
    rp : ndarray, shape (frames, n_mfcc)
    f0 : ndarray, shape (frames,), Hz (0 where silent)
    formants : ndarray, shape (frames, 3), Hz
    """
    frames = config.n_frames if frames is None else frames
    length, sr = config.lpc_frame_length, config.lpc_sample_rate_hz
    hamming = scipy.signal.get_window("hamming", length, fftbins=False)
    n = fast_length(length)
    rp_window = periodic_window(config.window, length)
    rp_bank = mel_filterbank(sr, n, config.rp_n_mels, 0.0, None)
    rp_mel = np.empty((frames, config.rp_n_mels), dtype=np.float32)
    f0 = np.empty(frames)
    formant = np.empty((frames, 3))
    for rows, block in _lpc_frame_blocks(y, config, frames):
        a = lpc(block, config.lpc_order, hamming)
        spectrum = scipy.fft.rfft(residual_phase(block, a) * rp_window, n=n, axis=1)
        rp_mel[rows] = rp_bank.apply(spectrum.real**2 + spectrum.imag**2)
        f0[rows] = yin(block, sr, fmin_hz=config.f0_fmin_hz, fmax_hz=config.f0_fmax_hz)
        formant[rows] = formants(a, sr)
    return _cepstrum(rp_mel, config.n_mfcc), f0, formant


def _lpc_frame_blocks(y_lpc: np.ndarray, config: LldConfig, frames: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Blocks of frames of ``lpc_frame_length`` centred on the first ``frames`` of the main grid's frame times (rounded
    to the nearest sample), with their rows; past ``y_lpc``'s end, zeros. Rows picked from a strided view copy whole
    rows (3x faster than a 2-D gather).
    """
    length = config.lpc_frame_length
    ratio = config.lpc_sample_rate_hz / config.sample_rate_hz
    centres = np.rint(np.arange(frames) * config.hop_length * ratio).astype(np.int64)
    end = max(0, int(centres[-1]) - len(y_lpc)) if frames else 0  # zeros as far as the last frame reaches
    padded = np.pad(y_lpc.astype(np.float32), (length // 2, length + end))
    windows = np.lib.stride_tricks.sliding_window_view(padded, length)
    for rows in row_blocks(centres.size, length):
        yield rows, windows[centres[rows]]


def _cepstrum(mel_power: np.ndarray, n_mfcc: int) -> np.ndarray:
    """``librosa.feature.mfcc`` from a mel power spectrogram (n_frames, n_mels): dB (top 80), DCT-II ortho."""
    return scipy.fft.dct(_power_db(mel_power), type=2, norm="ortho", axis=1)[:, :n_mfcc]


def _power_db(power: np.ndarray) -> np.ndarray:
    """``librosa.power_to_db`` with its defaults: dB re 1, floored at the array's maximum minus 80."""
    db = 10.0 * np.log10(np.maximum(power, DB_AMIN))
    return np.maximum(db, db.max() - 80.0)


@functools.lru_cache(maxsize=16)
def _contrast_bands(sr: int, n_fft: int, fmin_hz: float, n_bands: int) -> tuple[tuple[int, int, int], ...]:
    """Each octave band of ``librosa.feature.spectral_contrast`` as (first bin, end bin, bins averaged per side)."""
    freq = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    edges = np.concatenate([[0.0], fmin_hz * 2.0 ** np.arange(n_bands + 1)])
    bands = []
    for k, (f_low, f_high) in enumerate(itertools.pairwise(edges)):
        inside = np.flatnonzero((freq >= f_low) & (freq <= f_high))
        require(
            inside.size > 0,
            f"contrast_fmin_hz={fmin_hz}: the octave band {f_low:g}-{f_high:g} Hz holds no FFT bin of a {n_fft}-sample"
            " frame; raise contrast_fmin_hz or frame_length",
        )
        low = inside[0] - 1 if k > 0 else inside[0]
        high = freq.size if k == n_bands else inside[-1] + 1
        per_side = max(1, int(np.rint(0.02 * (high - low))))
        bands.append((int(low), int(high) - (k < n_bands), per_side))
    return tuple(bands)
