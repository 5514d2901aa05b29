"""Music-emotion descriptors: one vector per clip over dynamics, rhythm, timbre, tonality and texture.

Computed from the 16 kHz mono copy of the clip's audio window that stage one already makes for its other
sets (no second decode), cut to the audio the file really has, with librosa, scipy and pyloudnorm. One
STFT feeds every spectral measure; a mel spectrogram of it feeds the MFCC, the onset envelope (rhythm) and
the harmonic/percussive split. ``columns`` names every column with its unit, what it measures and the value
it takes where the measure is undefined (a silent clip, a constant series): the cache never holds NaN.
The docs page ``docs/descriptors.md`` is generated from it.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

import librosa
import numpy as np
import pyloudnorm
import scipy.signal

from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.handcrafted.beats import track_beats
from mvemo.extract.handcrafted.lpc import lpc, yin
from mvemo.extract.handcrafted.spectra import running_median
from mvemo.extract.handcrafted.texture import texture
from mvemo.extract.handcrafted.timbre import (
    LSF_ORDER,
    N_PEAKS,
    band_edges,
    band_flatness_crest,
    dissonance,
    fluctuation,
    inharmonicity,
    line_spectral_frequencies,
    spectral_peaks,
)
from mvemo.manifests.errors import require

SILENCE_DBFS = -100.0  # a clip whose loudest sample lies below this is silent: every column takes its undefined value
ACTIVE_FRAME_DBFS = -60.0  # frames below this RMS level are left out of every series but the level's own
LOUDNESS_FLOOR_LUFS = -70.0  # EBU R128's absolute gate: what integrated loudness is for a clip with no block above it
# ITU-R BS.1770-4's K-weighting as pyloudnorm's meter builds it: a +4 dB high shelf at 1,500 Hz, then a high pass at
# 38 Hz (gain in dB, Q, cutoff in Hz, pyloudnorm's filter type)
K_WEIGHTING = ((4.0, 1 / np.sqrt(2), 1500.0, "high_shelf"), (0.0, 0.5, 38.0, "high_pass"))


@dataclass(frozen=True)
class DescriptorConfig:
    """The analysis behind ``descriptors``: STFT ``n_fft``/``hop_length`` at ``sample_rate_hz``, ``n_mels`` bands
    for the MFCC, onsets and harmonic/percussive split; statistics over the frames of the clip's real audio."""

    sample_rate_hz: int = 16000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    n_mfcc: int = 13
    audio_window: AudioWindow = field(default_factory=AudioWindow)

    def __post_init__(self) -> None:
        require(
            8000 <= self.sample_rate_hz <= 48000,
            f"[descriptors] sample_rate_hz={self.sample_rate_hz}: expected 8000..48000",
        )
        require(
            self.n_fft >= 256 and self.n_fft % 2 == 0 and 1 <= self.hop_length <= self.n_fft,
            f"[descriptors] n_fft={self.n_fft}, hop_length={self.hop_length}:"
            " expected an even n_fft >= 256, 1 <= hop <= n_fft",
        )
        require(8 <= self.n_mels <= 256, f"[descriptors] n_mels={self.n_mels}: expected 8..256")
        require(1 <= self.n_mfcc <= self.n_mels, f"[descriptors] n_mfcc={self.n_mfcc}: expected 1..n_mels")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in columns(self))


class Column(NamedTuple):
    name: str
    unit: str
    measures: str
    undefined: float


class Series(NamedTuple):
    """A frame-level measure: ``n`` columns (named ``name`` or ``name_1..n``), each summarized by ``statistics``
    (names of ``STATISTICS``; all of them unless given)."""

    name: str
    unit: str
    measures: str
    n: int = 1
    undefined: float = 0.0
    statistics: tuple[str, ...] = ()

    @property
    def summaries(self) -> tuple[str, ...]:
        return self.statistics or tuple(STATISTICS)


STATISTICS = {
    "mean": "mean over the frames",
    "std": "standard deviation over the frames",
    "p10": "10th percentile over the frames",
    "p50": "median over the frames",
    "p90": "90th percentile over the frames",
    "skew": "skewness over the frames, 0 for a constant series",
    "delta": "mean absolute change between successive frames, per frame",
}
CHROMA = ("c", "cs", "d", "ds", "e", "f", "fs", "g", "gs", "a", "as", "b")
TONNETZ = ("fifth_x", "fifth_y", "minor_third_x", "minor_third_y", "major_third_x", "major_third_y")


def series(config: DescriptorConfig) -> tuple[Series, ...]:
    edges = band_edges(config.sample_rate_hz)
    bands = ", ".join(f"{low:.0f}-{high:.0f}" for low, high in itertools.pairwise(edges))
    return (
        Series(
            "rms",
            "dBFS",
            "frame RMS level, every frame (a full-scale sine reads -3; floored at -100)",
            undefined=SILENCE_DBFS,
        ),
        Series("centroid", "Hz", "spectral centroid: brightness"),
        Series("bandwidth", "Hz", "spectral bandwidth around the centroid"),
        Series("rolloff", "Hz", "frequency below which 85 % of the spectral energy lies"),
        Series("flatness", "ratio", "spectral flatness: 0 tonal, 1 noise-like", undefined=1.0),
        Series("flux", "dB", "spectral flux: mean rise of the log-mel bands (the onset envelope)"),
        Series("zcr", "ratio", "zero-crossing rate: fraction of sign changes per sample"),
        Series(
            "contrast",
            "dB",
            "spectral contrast, peak minus valley, in 7 bands: below 100 Hz, 5 octaves to 3.2 kHz, then to 8 kHz",
            n=7,
        ),
        Series("mfcc", "", f"MFCC 1-{config.n_mfcc} of the log-mel spectrum: timbre", n=config.n_mfcc),
        Series(
            "mfcc_delta",
            "per frame",
            f"local slope of MFCC 1-{config.n_mfcc} over 9 frames (librosa.feature.delta)",
            n=config.n_mfcc,
        ),
        Series("chroma", "ratio", "energy of each pitch class C..B, normalized to the frame's maximum", n=12),
        Series("tonnetz", "", "tonal centroid: the chroma on the circles of fifths, minor and major thirds", n=6),
        Series(
            "band_flatness",
            "ratio",
            f"MPEG-7 spectral flatness per half-octave band ({bands} Hz): geometric over arithmetic mean of the"
            " band's power, 0 tonal, 1 noise-like",
            n=len(edges) - 1,
            undefined=1.0,
            statistics=BAND_STATISTICS,
        ),
        Series(
            "band_crest",
            "ratio",
            f"MPEG-7 spectral crest factor per half-octave band ({bands} Hz): the band's peak power over its mean",
            n=len(edges) - 1,
            undefined=1.0,
            statistics=BAND_STATISTICS,
        ),
        Series(
            "lsf",
            "Hz",
            f"line spectral frequencies of an order-{LSF_ORDER} LPC of the Hann-windowed frame (Itakura 1975):"
            " where the spectral envelope's resonances lie, in ascending order",
            n=LSF_ORDER,
            statistics=BAND_STATISTICS,
        ),
        Series(
            "dissonance",
            "",
            f"sensory dissonance of the frame's {N_PEAKS} strongest spectral peaks (Sethares 1993, Plomp-Levelt"
            " curves summed over pairs of partials; amplitudes scaled to unit energy): 0 a lone partial, 0.09 two"
            " equal partials a quarter of a critical band apart",
        ),
        Series(
            "inharmonicity",
            "ratio",
            f"distance of the {N_PEAKS} strongest peaks from the nearest multiple of the frame's YIN f0, weighted by"
            " their energy, over f0 (as Essentia's Inharmonicity): 0 harmonic, 0.25 partials at random",
        ),
    )


BAND_STATISTICS = ("mean", "std")  # 10 bands or frequencies: their mean and spread, not 7 summaries each


SCALARS = (
    Column(
        "loudness_lufs",
        "LUFS",
        "EBU R128 integrated loudness (-70, the absolute gate, when nothing passes it)",
        LOUDNESS_FLOOR_LUFS,
    ),
    Column("rms_range", "dB", "dynamic range: 95th minus 5th percentile of the frame RMS level", 0.0),
    Column("rms_slope", "dB/s", "least-squares slope of the frame RMS level: crescendo (> 0) or fade (< 0)", 0.0),
    Column(
        "tempo", "BPM", "global tempo of the onset envelope (librosa.feature.tempo); 0 with fewer than 2 onsets", 0.0
    ),
    Column(
        "tempo_confidence",
        "ratio",
        "autocorrelation of the onset envelope at the tempo's lag, over its value at 0",
        0.0,
    ),
    Column(
        "pulse_clarity",
        "ratio",
        "largest autocorrelation of the onset envelope at a lag of 30-300 BPM, over lag 0",
        0.0,
    ),
    Column("beat_strength", "ratio", "mean onset strength on the tracked beats over its mean on all frames", 0.0),
    Column("onset_rate", "1/s", "onsets per second: peaks of the onset envelope 1 dB above its local mean", 0.0),
    Column(
        "key_strength",
        "correlation",
        "largest correlation of the mean chroma with the 24 Krumhansl-Kessler key profiles",
        0.0,
    ),
    Column(
        "mode_clarity", "correlation", "best major-key correlation minus best minor-key correlation: > 0 major", 0.0
    ),
    Column(
        "harmonic_change",
        "1/s",
        "harmonic change rate: mean distance between successive tonnetz frames, per second",
        0.0,
    ),
    Column(
        "harmonic_percussive", "dB", "energy of the harmonic part over the percussive part (median-filter HPSS)", 0.0
    ),
    Column(
        "fluctuation_peak_hz",
        "Hz",
        "where the fluctuation pattern peaks (Pampalk 2001: the modulation spectrum of the mel bands' level, 0.5-10"
        " Hz, weighted by fluctuation strength, which peaks at 4 Hz)",
        0.0,
    ),
    Column(
        "fluctuation_peak", "ratio", "the fluctuation pattern's peak over its mean: how regular the fluctuation is", 0.0
    ),
    Column("fluctuation_centroid_hz", "Hz", "centroid of the fluctuation pattern: how fast the level fluctuates", 0.0),
    Column(
        "layers_mean",
        "layers",
        "musical texture (Panda et al. 2018's musical layers): mean number of pitched layers per frame, by iterative"
        " multi-pitch estimation and cancellation over a harmonic-summation salience (Klapuri 2006; f0 110-830 Hz)",
        0.0,
    ),
    Column("layers_std", "layers", "spread of the number of pitched layers over the frames", 0.0),
    Column("layers_one", "ratio", "share of the frames with one pitched layer", 0.0),
    Column("layers_two", "ratio", "share of the frames with two pitched layers", 0.0),
    Column("layers_three_or_more", "ratio", "share of the frames with three or more pitched layers", 0.0),
    Column(
        "layer_transitions",
        "1/s",
        "changes of the number of layers per second (its running median over 5 frames, so a frame's flicker is none)",
        0.0,
    ),
)
TEMPOGRAM_RATIOS = 13


def columns(config: DescriptorConfig) -> list[Column]:
    """Every column of the ``descriptors`` vector, in order."""
    out = list(SCALARS)
    out += [
        Column(
            f"tempogram_ratio_{i + 1}",
            "ratio",
            f"tempogram ratio {i + 1} of 13 (librosa.feature.tempogram_ratio) of the mean tempogram, at the tempo",
            0.0,
        )
        for i in range(TEMPOGRAM_RATIOS)
    ]
    for s in series(config):
        for name in _series_names(s):
            out += [
                Column(
                    f"{name}_{stat}",
                    s.unit,
                    f"{s.measures}: {what}",
                    s.undefined if stat in ("mean", "p10", "p50", "p90") else 0.0,
                )
                for stat, what in STATISTICS.items()
                if stat in s.summaries
            ]
    return out


def _series_names(s: Series) -> list[str]:
    if s.name == "chroma":
        return [f"chroma_{c}" for c in CHROMA]
    if s.name == "tonnetz":
        return [f"tonnetz_{t}" for t in TONNETZ]
    return [s.name] if s.n == 1 else [f"{s.name}_{i + 1}" for i in range(s.n)]


# Krumhansl & Kessler's probe-tone profiles of C major and C minor
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
CONTRAST_FMIN_HZ = 100.0  # librosa's 6 bands above it must lie below the Nyquist frequency: the last one reaches it
ONSET_PEAK_SPANS_S = {"pre_max": 0.03, "post_max": 0.03, "pre_avg": 0.1, "post_avg": 0.1, "wait": 0.06}
# an onset rises this far above the envelope's local mean: absolute, so a steady tone's ripple (0.3 dB) is none
ONSET_DELTA_DB = 1.0
YIN_FMIN_HZ, YIN_FMAX_HZ = 60.0, 1000.0  # the f0 that inharmonicity measures partials against
HPSS_KERNEL = 17  # median filters over 17 frames (0.54 s) and 17 of the 64 mel bands


def descriptors(y: np.ndarray, config: DescriptorConfig) -> np.ndarray:
    """The descriptor vector of mono audio ``y`` at ``config.sample_rate_hz``, the clip's real audio only.

    Returns float32 of shape (len(columns(config)),), every value finite: a measure that is undefined
    for this clip takes its column's ``undefined`` value.
    """
    table = columns(config)
    undefined = np.array([c.undefined for c in table])
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0 or float(np.max(np.abs(y))) < 10 ** (SILENCE_DBFS / 20):
        return undefined.astype(np.float32)
    with warnings.catch_warnings():  # a clip shorter than n_fft: librosa warns on every call, the frames still hold it
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large")
        return _descriptors(y, config, undefined)


@dataclass(frozen=True)
class Spectra:
    """What every family of descriptors reads: the clip's audio, one STFT's magnitude and power, its mel spectrogram
    (power and dB), the onset envelope of the mel dB, each frame's RMS level in dB and which frames are active."""

    y: np.ndarray
    config: DescriptorConfig
    magnitude: np.ndarray
    power: np.ndarray
    mel: np.ndarray
    mel_db: np.ndarray
    onsets: np.ndarray
    rms_db: np.ndarray
    active: np.ndarray

    @property
    def frames_per_s(self) -> float:
        return self.config.sample_rate_hz / self.config.hop_length


def spectra(y: np.ndarray, config: DescriptorConfig) -> Spectra:
    sr, hop = config.sample_rate_hz, config.hop_length
    magnitude = np.abs(librosa.stft(y, n_fft=config.n_fft, hop_length=hop))
    power = magnitude**2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=config.n_mels)
    mel_db = librosa.power_to_db(mel, top_db=None)
    onsets = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=hop, n_fft=config.n_fft)
    # In float64: float32's floor reads -100.0000076 dB, not the undefined value of a silent frame.
    rms = librosa.feature.rms(y=y, frame_length=config.n_fft, hop_length=hop)[0].astype(np.float64)
    rms_db = 20 * np.log10(np.maximum(rms, 10 ** (SILENCE_DBFS / 20)))
    active = rms_db > ACTIVE_FRAME_DBFS  # silent stretches (an intro, a break) would read as 0 Hz, flat, chromaless
    return Spectra(y, config, magnitude, power, mel, mel_db, onsets, rms_db, active)


Frames: TypeAlias = dict[str, np.ndarray]
Scalars: TypeAlias = dict[str, Any]


def _active(x: np.ndarray, s: Spectra) -> np.ndarray:
    """A series' active frames only."""
    return x[:, s.active[: x.shape[1]]]


def _spectral_shape(s: Spectra) -> tuple[Frames, Scalars]:
    sr, magnitude = s.config.sample_rate_hz, s.magnitude
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr)
    return {
        "centroid": centroid,
        "bandwidth": librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, centroid=centroid),
        "rolloff": librosa.feature.spectral_rolloff(S=magnitude, sr=sr, roll_percent=0.85),
        "flatness": librosa.feature.spectral_flatness(S=magnitude),
        "flux": s.onsets[None],
        "zcr": zero_crossing_rate(s.y, s.config.n_fft, s.config.hop_length),
        "contrast": librosa.feature.spectral_contrast(S=magnitude, sr=sr, fmin=CONTRAST_FMIN_HZ),
    }, {}


def zero_crossing_rate(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate(y, frame_length=, hop_length=)``, value for value (centred frames of the
    edge-padded signal; samples within 1e-10 of 0 count as positive), shape (1, frames), from one running count of
    the signal's crossings: 0.5 ms for 30 s at 16 kHz, where librosa's test of every frame's every sample took 3."""
    padded = np.pad(y, frame_length // 2, mode="edge")
    negative = np.signbit(padded) & (np.abs(padded) > padded.dtype.type(1e-10))
    # [t]: crossings up to sample t, counted in int32 (numpy's int64 count of bools is 15x slower)
    crossings = np.concatenate([[0], np.cumsum(negative[1:] != negative[:-1], dtype=np.int32)])
    starts = np.arange(1 + (padded.size - frame_length) // hop_length) * hop_length
    return ((crossings[starts + frame_length - 1] - crossings[starts]) / frame_length)[None]


def _cepstrum(s: Spectra) -> tuple[Frames, Scalars]:
    mfcc = librosa.feature.mfcc(S=s.mel_db, n_mfcc=s.config.n_mfcc)
    return {"mfcc": mfcc, "mfcc_delta": librosa.feature.delta(mfcc, mode="nearest")}, {}


def _tonal(s: Spectra) -> tuple[Frames, Scalars]:
    sr = s.config.sample_rate_hz
    chroma = librosa.feature.chroma_stft(S=s.power, sr=sr, n_fft=s.config.n_fft, tuning=0.0)
    tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=sr)
    tonality = _tonality(_active(chroma, s).mean(axis=1), _active(tonnetz, s), s.frames_per_s)
    return {"chroma": chroma, "tonnetz": tonnetz}, tonality


def _timbre(s: Spectra) -> tuple[Frames, Scalars]:
    """The per-band flatness and crest, the line spectral frequencies, the dissonance and the inharmonicity of
    each frame (``extract.handcrafted.timbre``), each (n, frames)."""
    sr, n_fft = s.config.sample_rate_hz, s.config.n_fft
    frames = librosa.util.frame(np.pad(s.y, n_fft // 2), frame_length=n_fft, hop_length=s.config.hop_length).T
    frames = frames[: s.magnitude.shape[1]].astype(np.float64)
    flatness, crest = band_flatness_crest(s.power, sr, n_fft)
    freqs, amplitude = spectral_peaks(s.magnitude, sr, n_fft)
    f0 = yin(frames, sr, fmin_hz=YIN_FMIN_HZ, fmax_hz=YIN_FMAX_HZ)
    return {
        "band_flatness": flatness,
        "band_crest": crest,
        "lsf": line_spectral_frequencies(lpc(frames, LSF_ORDER, np.hanning(n_fft)), sr),
        "dissonance": dissonance(freqs, amplitude)[None],
        "inharmonicity": inharmonicity(freqs, amplitude, f0)[None],
    }, {}


def _dynamics(s: Spectra) -> tuple[Frames, Scalars]:
    return {}, {
        "loudness_lufs": _loudness(s.y, s.config.sample_rate_hz),
        "rms_range": float(np.percentile(s.rms_db, 95) - np.percentile(s.rms_db, 5)),
        "rms_slope": _slope(s.rms_db, s.config.hop_length / s.config.sample_rate_hz),
    }


def _rhythm_family(s: Spectra) -> tuple[Frames, Scalars]:
    rhythm, tempogram_ratios = _rhythm(s.onsets, s.config.sample_rate_hz, s.config.hop_length)
    return {}, rhythm | {"tempogram_ratios": tempogram_ratios}


def _harmony_percussion(s: Spectra) -> tuple[Frames, Scalars]:
    return {}, {"harmonic_percussive": _harmonic_percussive(s.mel)}


def _fluctuation(s: Spectra) -> tuple[Frames, Scalars]:
    return {}, fluctuation(s.mel_db, s.frames_per_s)


def _texture(s: Spectra) -> tuple[Frames, Scalars]:
    sr, hop = s.config.sample_rate_hz, s.config.hop_length
    return {}, texture(s.y, s.active, sr, hop, s.magnitude, s.config.n_fft)


# Each family of descriptors from the clip's spectra: its frame-level series (each kept to the active frames) and
# its scalars. ``mvemo bench audio`` times them one by one.
FAMILIES: dict[str, Callable[[Spectra], tuple[Frames, Scalars]]] = {
    "spectral_shape": _spectral_shape,
    "mfcc": _cepstrum,
    "chroma_tonality": _tonal,
    "timbre": _timbre,
    "dynamics": _dynamics,
    "rhythm": _rhythm_family,
    "harmonic_percussive": _harmony_percussion,
    "fluctuation": _fluctuation,
    "texture": _texture,
}


def _descriptors(y: np.ndarray, config: DescriptorConfig, undefined: np.ndarray) -> np.ndarray:
    s = spectra(y, config)
    frames: Frames = {"rms": s.rms_db[None]}
    scalars: Scalars = {}
    for family in FAMILIES.values():
        family_frames, family_scalars = family(s)
        frames |= {name: _active(x, s) for name, x in family_frames.items()}
        scalars |= family_scalars
    values = [scalars[c.name] for c in SCALARS] + list(scalars["tempogram_ratios"])
    for each in series(config):
        kept = [i for i, stat in enumerate(STATISTICS) if stat in each.summaries]
        values += list(_statistics(frames[each.name])[:, kept].ravel())
    out = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(out), out, undefined).astype(np.float32)


def _statistics(x: np.ndarray) -> np.ndarray:
    """(n, T) -> (n, len(STATISTICS)), NaN where a statistic is undefined (fewer than 2 frames, a constant row)."""
    n, t = x.shape
    if t == 0:
        return np.full((n, len(STATISTICS)), np.nan)
    x = x.astype(np.float64)
    std = x.std(axis=1)
    centred = x - x.mean(axis=1, keepdims=True)
    constant = std <= 1e-9 * (1 + np.abs(x).max(axis=1))
    # cubed by products: numpy's power takes pow() per element for an exponent of 3, 60x slower
    third_moment = (centred * centred * centred).mean(axis=1)
    skew = np.where(constant, 0.0, third_moment / np.where(constant, 1.0, std) ** 3)
    delta = np.abs(np.diff(x, axis=1)).mean(axis=1) if t > 1 else np.full(n, np.nan)
    p10, p50, p90 = np.percentile(x, [10, 50, 90], axis=1)
    return np.stack([x.mean(axis=1), std, p10, p50, p90, skew, delta], axis=1)


def _loudness(y: np.ndarray, sr: int) -> float:
    """EBU R128 integrated loudness as pyloudnorm measures it, its two K-weighting filters run as one cascade of
    second-order sections (``scipy.signal.sosfilt``: 3 ms for 30 s at 16 kHz, where pyloudnorm's two ``lfilter``
    passes took 9), then pyloudnorm's gating."""
    meter = pyloudnorm.Meter(sr, filter_class="custom")  # no filters of its own: it gates what it is given
    if y.size < meter.block_size * sr:
        return np.nan
    stages = [pyloudnorm.IIRfilter(gain_db, q, cutoff_hz, sr, kind) for gain_db, q, cutoff_hz, kind in K_WEIGHTING]
    sections = np.array([np.concatenate([stage.b, stage.a]) for stage in stages])
    gain = np.prod([stage.passband_gain for stage in stages])
    weighted = gain * scipy.signal.sosfilt(sections, y.astype(np.float64))
    return max(float(meter.integrated_loudness(weighted)), LOUDNESS_FLOOR_LUFS)


def _slope(values: np.ndarray, step_s: float) -> float:
    if values.size < 2:
        return np.nan
    return float(np.polyfit(np.arange(values.size) * step_s, values, 1)[0])


def _rhythm(onsets: np.ndarray, sr: int, hop: int) -> tuple[dict[str, float], np.ndarray]:
    """Tempo, its confidence, pulse clarity, beat strength and onset rate; the tempogram ratios. Without two
    detected onsets there is no pulse: every rhythm column takes its undefined value but the onset rate."""
    frames_per_s = sr / hop
    # librosa's peak-picking spans in seconds, at least a frame each: its defaults round to 0 frames at a 32-ms hop
    peaks: dict[str, Any] = {k: max(1, round(s * frames_per_s)) for k, s in ONSET_PEAK_SPANS_S.items()}
    detected = librosa.onset.onset_detect(
        onset_envelope=onsets, sr=sr, hop_length=hop, normalize=False, delta=ONSET_DELTA_DB, **peaks
    ).size
    onset_rate = detected / (onsets.size / frames_per_s)
    if detected < 2:
        names = ("tempo", "tempo_confidence", "pulse_clarity", "beat_strength")
        return dict.fromkeys(names, np.nan) | {"onset_rate": onset_rate}, np.full(TEMPOGRAM_RATIOS, np.nan)
    tempogram = librosa.feature.tempogram(onset_envelope=onsets, sr=sr, hop_length=hop)
    tempo = float(librosa.feature.tempo(onset_envelope=onsets, sr=sr, hop_length=hop, tg=tempogram)[0])
    centred = onsets - onsets.mean()
    acf = librosa.autocorrelate(centred)
    acf = acf / acf[0] if acf[0] > 0 else np.zeros_like(acf)
    lags = np.arange(acf.size)
    in_range = (lags >= 60 * frames_per_s / 300) & (lags <= 60 * frames_per_s / 30)
    tempo_lag = round(60 * frames_per_s / tempo) if tempo > 0 else acf.size
    beats = track_beats(onsets, frames_per_s, tempo)
    mean_tempogram = tempogram.mean(axis=1, keepdims=True)  # one interpolation instead of one per frame (linear)
    ratios = librosa.feature.tempogram_ratio(tg=mean_tempogram, sr=sr, hop_length=hop, bpm=np.array([tempo]))
    return {
        "tempo": tempo,
        "tempo_confidence": max(0.0, float(acf[tempo_lag])) if tempo_lag < acf.size else 0.0,
        "pulse_clarity": max(0.0, float(acf[in_range].max())) if in_range.any() else 0.0,
        "beat_strength": float(onsets[beats].mean() / onsets.mean()) if beats.size else 0.0,
        "onset_rate": onset_rate,
    }, ratios[:, 0]


def _tonality(chroma_mean: np.ndarray, tonnetz: np.ndarray, frames_per_s: float) -> dict[str, float]:
    """Key strength and mode clarity of the mean chroma (Krumhansl-Kessler), and the harmonic change rate."""
    keys = np.arange(12)
    with np.errstate(invalid="ignore", divide="ignore"):
        major = [np.corrcoef(chroma_mean, np.roll(MAJOR_PROFILE, k))[0, 1] for k in keys]
        minor = [np.corrcoef(chroma_mean, np.roll(MINOR_PROFILE, k))[0, 1] for k in keys]
    change = np.linalg.norm(np.diff(tonnetz, axis=1), axis=0)
    return {
        "key_strength": float(np.max(major + minor)),
        "mode_clarity": float(np.max(major) - np.max(minor)),
        "harmonic_change": float(change.mean() * frames_per_s) if change.size else np.nan,
    }


def _harmonic_percussive(mel_power: np.ndarray) -> float:
    """librosa's ``decompose.hpss`` (margin 1, soft masks of power 2) with its median filters as running medians."""
    along_time, along_frequency = (running_median(mel_power, HPSS_KERNEL, axis) for axis in (1, 0))
    harmonic = mel_power * librosa.util.softmask(along_time, along_frequency, power=2, split_zeros=True)
    percussive = mel_power * librosa.util.softmask(along_frequency, along_time, power=2, split_zeros=True)
    h, p = float(harmonic.sum()), float(percussive.sum())
    return 10 * np.log10(h / p) if h > 0 and p > 0 else np.nan
