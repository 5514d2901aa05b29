"""Melodic and expressive descriptors: one vector per clip of what a musician hears in the melody and its playing.

Panda et al. (2018, IEEE TAFFC) found that melodic and expressive features carry much of what separates the
emotion quadrants; ``descriptors`` has none. From the clip's real audio at 16 kHz (the copy stage one shares
with the other audio sets): the foreground (REPET-SIM: what does not repeat, mostly the voice, as the anchor measured
its techniques on the voice) -> its harmonic part (median-filter HPSS of the STFT) -> a predominant-melody contour
(pYIN, refined by YIN's continuous estimate) -> notes -> statistics of the melody (register, range,
intervals, contour), of its expression (vibrato, glissando, tremolo, articulation, dynamics within notes)
and of the foreground around it. ``columns`` names every column with its unit, what it measures and the value
it takes where the measure is undefined (no melody, a single note): the cache never holds NaN. The docs page
``docs/descriptors.md`` is generated from it.

Notes: the contour's running median over ``NOTE_MEDIAN_S`` keeps a step's edge and flattens a vibrato's swing;
each frame of it takes the nearest semitone, kept until the contour lies ``HYSTERESIS_ST`` from it; runs of one
semitone lasting ``MIN_NOTE_S`` or more, the contour moving less than ``NOTE_MAX_SLOPE_ST_PER_S`` over them, are
notes. The frames between two notes of one voiced run are a
transition: a step has none (the median jumps), a glide passes through the semitones between, each too
briefly for a note, and is a glissando when it lasts ``GLIDE_MIN_S`` or more.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import librosa
import numpy as np

from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.handcrafted.descriptors import ACTIVE_FRAME_DBFS, SILENCE_DBFS, Column
from mvemo.extract.handcrafted.spectra import running_median
from mvemo.manifests.errors import is_number, require

HPSS_TIME_S = 0.2  # the harmonic part's median filter along time: a note half as long still counts as harmonic
HPSS_BINS = 31  # and along frequency (480 Hz at the defaults): librosa's default kernel
PYIN_RESOLUTION = 0.2  # semitones per pYIN state: its Viterbi costs the square of the states (0.1: 3.5x the time)
NOTE_MEDIAN_S = 0.22  # the contour's running median: longer than one vibrato cycle at 4.5 Hz and up
HYSTERESIS_ST = 0.7  # a note's semitone is kept until the median contour lies this far from it
MIN_NOTE_S = 0.1
NOTE_MAX_SLOPE_ST_PER_S = 3.0  # a run of one semitone whose median contour moves faster is part of a glide
GLIDE_MIN_S = 0.12  # a step's frames straddling two notes make pitch values between them for about 60 ms
MODULATION_HZ = (3.0, 9.0)  # where vibrato and tremolo lie
MODULATED_SHARE = 0.5  # a note is modulated when this share of its detrended variance lies in MODULATION_HZ ...
VIBRATO_MIN_ST = 0.1  # ... and its swing is at least this (semitones, half peak to peak) ...
TREMOLO_MIN_DB = 1.0  # ... or this (dB) for its level
MODULATED_MIN_S = 0.3  # notes this long are analysed for vibrato, tremolo and dynamics
HIGH_REGISTER_MIDI = 60  # C4: the expressive techniques' coverage of the notes from here up (Panda et al. 2018)
DYNAMIC_DB_PER_S = 6.0  # a note's level rising (falling) faster than this is a crescendo (decrescendo)
STACCATO_RATIO = 0.7  # a note held for less than this share of the time to the next onset is detached
MAX_IOI_S = 2.0  # successive notes further apart than this start a new phrase: no articulation between them
VOICE_REPEAT_S = 2.0  # REPET-SIM: a frame's background is the median of its most similar frames this far from it
VOICE_BLOCK_S = 60.0  # a longer clip is separated in equal blocks of at most this
HARMONICS = 8  # the melody's harmonics counted in its salience
HARMONIC_TOLERANCE = 0.03  # a bin within 3 % (half a semitone) of a harmonic belongs to the melody
INTERVALS = {  # |interval| in semitones, [low, high)
    "repeat": (0.0, 0.5),
    "step": (0.5, 2.5),
    "third": (2.5, 4.5),
    "fourth_fifth": (4.5, 7.5),
    "leap": (7.5, np.inf),
}


@dataclass(frozen=True)
class ExpressiveConfig:
    """The melody analysis behind ``expressive``: STFT ``n_fft``/``hop_length`` at ``sample_rate_hz`` (the frames
    of the separation, HPSS, pYIN and YIN), the melody searched between ``fmin_hz`` and ``fmax_hz`` (C2 to C6 by
    default), in the foreground that ``voice_margin`` separates (``foreground_mask``; 0: the whole mix)."""

    sample_rate_hz: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    fmin_hz: float = 65.4
    fmax_hz: float = 1046.5
    audio_window: AudioWindow = field(default_factory=AudioWindow)
    voice_margin: float = 10.0

    def __post_init__(self) -> None:
        require(
            is_number(self.voice_margin) and 0 <= self.voice_margin < np.inf,
            f"[expressive] voice_margin={self.voice_margin!r}: expected 0 (no separation) or a finite margin above it",
        )
        object.__setattr__(self, "voice_margin", float(self.voice_margin))  # 10 and 10.0 fingerprint alike
        require(
            8000 <= self.sample_rate_hz <= 48000,
            f"[expressive] sample_rate_hz={self.sample_rate_hz}: expected 8000..48000",
        )
        require(
            self.n_fft >= 512 and self.n_fft % 2 == 0 and 1 <= self.hop_length <= self.n_fft // 2,
            f"[expressive] n_fft={self.n_fft}, hop_length={self.hop_length}:"
            " expected an even n_fft >= 512, hop <= n_fft/2",
        )
        require(
            30.0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate_hz / 4,
            f"[expressive] fmin_hz={self.fmin_hz}, fmax_hz={self.fmax_hz}:"
            " expected 30 <= fmin < fmax <= sample rate / 4",
        )
        require(
            self.n_fft // 2 >= 2 * self.sample_rate_hz / self.fmin_hz,
            f"[expressive] n_fft={self.n_fft}: pYIN and YIN need half a frame to hold two periods of fmin_hz="
            f"{self.fmin_hz} ({2 * self.sample_rate_hz / self.fmin_hz:.0f} samples at {self.sample_rate_hz} Hz);"
            " raise n_fft or fmin_hz",
        )
        require(
            self.sample_rate_hz / self.hop_length >= 2.5 * MODULATION_HZ[1],
            f"[expressive] hop_length={self.hop_length}: frames must come at {2.5 * MODULATION_HZ[1]:g}/s or more",
        )

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in COLUMNS)

    @property
    def frame_s(self) -> float:
        return self.hop_length / self.sample_rate_hz


def _interval_columns() -> list[Column]:
    return [
        Column(f"interval_{name}_share", "ratio", f"share of intervals of {lo:g} to {hi:g} semitones", 0.0)
        if np.isfinite(hi)
        else Column(f"interval_{name}_share", "ratio", f"share of intervals of {lo:g} semitones or more", 0.0)
        for name, (lo, hi) in INTERVALS.items()
    ]


COLUMNS = (
    Column("melody_voiced_share", "ratio", "share of the active frames where a melody sounds (pYIN voiced)", 0.0),
    Column("melody_notes_per_s", "1/s", "notes per second of audio", 0.0),
    Column("note_pitch_median", "MIDI", "register: median pitch of the notes (60 = middle C)", 60.0),
    Column("note_pitch_range", "semitones", "pitch range: 95th minus 5th percentile of the notes' pitches", 0.0),
    Column("note_pitch_std", "semitones", "spread of the notes' pitches", 0.0),
    Column("interval_mean", "semitones", "mean size of the intervals between successive notes", 0.0),
    *_interval_columns(),
    Column("contour_up_share", "ratio", "share of rising intervals among those of half a semitone or more", 0.5),
    Column(
        "contour_turns", "ratio", "share of successive moving intervals that turn (up then down, or down then up)", 0.0
    ),
    Column("note_duration_mean", "s", "mean note duration", 0.0),
    Column("note_duration_std", "s", "spread of the note durations", 0.0),
    Column(
        "articulation",
        "ratio",
        f"mean duration over time to the next onset (1 legato, low staccato), notes under {MAX_IOI_S:g} s apart",
        1.0,
    ),
    Column("legato_share", "ratio", "share of successive notes joined: no break in the melody between them", 0.0),
    Column(
        "staccato_share", "ratio", f"share of notes held for less than {STACCATO_RATIO:g} of the time to the next", 0.0
    ),
    Column("vibrato_share", "ratio", f"share of the notes of {MODULATED_MIN_S:g} s or more with vibrato", 0.0),
    Column("vibrato_rate", "Hz", "mean vibrato rate, over the notes with vibrato", 0.0),
    Column("vibrato_extent", "semitones", "mean vibrato extent (half peak to peak), over the notes with vibrato", 0.0),
    Column("vibrato_rate_std", "Hz", "spread of the vibrato rates of the notes with vibrato", 0.0),
    Column("vibrato_extent_std", "semitones", "spread of the vibrato extents of the notes with vibrato", 0.0),
    Column("vibrato_extent_max", "semitones", "the widest vibrato of a note", 0.0),
    Column("vibrato_note_s", "s", "mean duration of the notes with vibrato", 0.0),
    Column("vibrato_pitch_median", "MIDI", "register of the notes with vibrato: their median pitch", 60.0),
    Column(
        "vibrato_high_share",
        "ratio",
        f"share of the notes of {MODULATED_MIN_S:g} s or more from C4 up with vibrato:"
        " its coverage of the high register",
        0.0,
    ),
    Column("glissando_share", "ratio", "share of the transitions between notes of one voiced phrase that glide", 0.0),
    Column("glissando_length", "s", "mean duration of the glides", 0.0),
    Column("glissando_up_share", "ratio", "share of the glides that rise", 0.5),
    Column("glissando_length_std", "s", "spread of the glides' durations", 0.0),
    Column("glissando_extent", "semitones", "mean size of the glides: the interval between the notes they join", 0.0),
    Column("glissando_extent_std", "semitones", "spread of the glides' sizes", 0.0),
    Column("glissando_slope_std", "semitones/s", "spread of the glides' steepness (size over duration)", 0.0),
    Column("tremolo_share", "ratio", f"share of the notes of {MODULATED_MIN_S:g} s or more with tremolo", 0.0),
    Column("tremolo_rate", "Hz", "mean tremolo rate, over the notes with tremolo", 0.0),
    Column(
        "tremolo_extent", "dB", "mean tremolo extent (half peak to peak of the level), over the notes with tremolo", 0.0
    ),
    Column("tremolo_extent_max", "dB", "the widest tremolo of a note", 0.0),
    Column(
        "tremolo_high_share",
        "ratio",
        f"share of the notes of {MODULATED_MIN_S:g} s or more from C4 up with tremolo:"
        " its coverage of the high register",
        0.0,
    ),
    Column(
        "crescendo_share",
        "ratio",
        f"share of the notes of {MODULATED_MIN_S:g} s or more whose level rises over {DYNAMIC_DB_PER_S:g} dB/s",
        0.0,
    ),
    Column(
        "decrescendo_share",
        "ratio",
        f"share of the notes of {MODULATED_MIN_S:g} s or more whose level falls over {DYNAMIC_DB_PER_S:g} dB/s",
        0.0,
    ),
    Column(
        "pitch_classes_mean",
        "count",
        "pitch classes sounding at once in the foreground (harmonic-part chroma over half the frame's strongest;"
        " one rich note adds its fifth and third)",
        0.0,
    ),
    Column("pitch_classes_std", "count", "spread of the pitch classes sounding at once in the foreground", 0.0),
    Column(
        "melody_salience",
        "ratio",
        f"share of the foreground's harmonic power on the melody's first {HARMONICS} harmonics, over the voiced frames",
        0.0,
    ),
)


class Note(NamedTuple):
    start: int  # first frame
    end: int  # one past the last frame
    pitch: float  # median MIDI pitch
    phrase: int  # the voiced run it lies in


class Glide(NamedTuple):
    frames: int
    interval: float  # semitones from the note before to the note after


def expressive(y: np.ndarray, config: ExpressiveConfig) -> np.ndarray:
    """The ``expressive`` vector of mono audio ``y`` at ``config.sample_rate_hz``, the clip's real audio only.

    Returns float32 of shape (len(COLUMNS),), every value finite.
    """
    undefined = np.array([c.undefined for c in COLUMNS])
    y = np.asarray(y, dtype=np.float32)
    if y.size < config.n_fft or float(np.max(np.abs(y))) < 10 ** (SILENCE_DBFS / 20):
        return undefined.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of empty selections: NaN, replaced below
        values = _expressive(y, config)
    out = np.array([values[c.name] for c in COLUMNS], dtype=np.float64)
    return np.where(np.isfinite(out), out, undefined).astype(np.float32)


def _expressive(y: np.ndarray, config: ExpressiveConfig) -> dict[str, float]:
    sr, hop, n_fft = config.sample_rate_hz, config.hop_length, config.n_fft
    spectrum = librosa.stft(y, n_fft=n_fft, hop_length=hop)
    if config.voice_margin:
        spectrum = spectrum * foreground_mask(np.abs(spectrum), config)
    power = np.abs(spectrum) ** 2
    along_time = running_median(power, _odd(HPSS_TIME_S / config.frame_s), 1)
    along_frequency = running_median(power, HPSS_BINS, 0)
    harmonic = spectrum * librosa.util.softmask(along_time, along_frequency, power=2, split_zeros=True)
    y_harmonic = librosa.istft(harmonic, hop_length=hop, n_fft=n_fft, length=y.size)
    pitch = melody(y_harmonic, config)[: power.shape[1]]
    level = librosa.amplitude_to_db(librosa.feature.rms(y=y_harmonic, frame_length=n_fft, hop_length=hop)[0], ref=1.0)
    rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)[0]
    active = 20 * np.log10(np.maximum(rms, 1e-10)) > ACTIVE_FRAME_DBFS
    pitch = np.where(active[: pitch.size], pitch, np.nan)
    notes, glides, transitions = segment(pitch, config.frame_s)
    harmonic_power = np.abs(harmonic) ** 2
    chroma = librosa.feature.chroma_stft(S=harmonic_power, sr=sr, n_fft=n_fft, tuning=0.0)
    sounding = (chroma >= 0.5).sum(axis=0)[active[: chroma.shape[1]]]
    return (
        {
            "melody_voiced_share": float(np.isfinite(pitch).sum() / max(1, active.sum())),
            "melody_notes_per_s": len(notes) / (y.size / sr),
            "pitch_classes_mean": float(sounding.mean()),
            "pitch_classes_std": float(sounding.std()),
            "melody_salience": _salience(harmonic_power, pitch, sr, n_fft),
        }
        | _melodic(notes)
        | _articulation(notes, config.frame_s)
        | _glissando(glides, transitions, config.frame_s)
        | _modulation(notes, pitch, level[: pitch.size], config.frame_s)
    )


def foreground_mask(magnitude: np.ndarray, config: ExpressiveConfig) -> np.ndarray:
    """REPET-SIM (Rafii & Pardo 2012): each frame's repeating background is the median of its most similar frames
    (cosine distance, ranked) at least ``VOICE_REPEAT_S`` away, and the foreground's soft mask keeps what exceeds it
    by ``voice_margin`` (mostly the voice; an accompaniment's loops, chords and beats repeat). Longer than
    ``VOICE_BLOCK_S``, the clip is cut into equal blocks, each its own search (the search grows with the square of
    the frames). A block too short to hold a repetition keeps its whole mix (a mask of ones)."""
    frames = magnitude.shape[1]
    blocks = max(1, int(np.ceil(frames * config.frame_s / VOICE_BLOCK_S)))
    edges = np.linspace(0, frames, blocks + 1).astype(int)
    return np.concatenate(
        [_block_mask(magnitude[:, a:b], config) for a, b in itertools.pairwise(edges)], axis=1, dtype=magnitude.dtype
    )


def _block_mask(magnitude: np.ndarray, config: ExpressiveConfig) -> np.ndarray:
    width = round(VOICE_REPEAT_S / config.frame_s)
    if width >= (magnitude.shape[1] - 1) // 2:  # no frame has similar frames that far on both sides
        return np.ones_like(magnitude)
    # mode "distance": the k kept are the k nearest (librosa's default "connectivity" ranks them all equal)
    similar = librosa.decompose.nn_filter(magnitude, aggregate=np.median, metric="cosine", width=width, mode="distance")
    background = np.minimum(magnitude, similar)
    return librosa.util.softmask(magnitude - background, config.voice_margin * background, power=2)


def melody(y: np.ndarray, config: ExpressiveConfig) -> np.ndarray:
    """The predominant melody's pitch per frame in MIDI (fractional), NaN where pYIN hears none: pYIN's path (its
    states a fifth of a semitone apart), each frame moved to YIN's continuous estimate where that lies within a
    semitone of it."""
    sr, frame, hop = config.sample_rate_hz, config.n_fft, config.hop_length
    f0, voiced, _ = librosa.pyin(
        y,
        fmin=config.fmin_hz,
        fmax=config.fmax_hz,
        sr=sr,
        frame_length=frame,
        hop_length=hop,
        resolution=PYIN_RESOLUTION,
    )
    fine = librosa.yin(y, fmin=config.fmin_hz, fmax=config.fmax_hz, sr=sr, frame_length=frame, hop_length=hop)
    path = librosa.hz_to_midi(np.where(voiced, f0, np.nan))
    refined = librosa.hz_to_midi(fine)
    return np.where(np.abs(refined - path) < 1.0, refined, path)


def segment(pitch: np.ndarray, frame_s: float) -> tuple[list[Note], list[Glide], int]:
    """The notes of a MIDI pitch contour (NaN: no melody), the glides between notes of one voiced run, and how many
    transitions there were between such notes."""
    width = _odd(NOTE_MEDIAN_S / frame_s)
    min_note = max(1, round(MIN_NOTE_S / frame_s))
    notes: list[Note] = []
    glides: list[Glide] = []
    transitions = 0
    for phrase, (start, end) in enumerate(_runs(np.isfinite(pitch))):
        contour = running_median(pitch[start:end], width, 0)
        in_run = [
            Note(start + a, start + b, float(np.median(pitch[start + a : start + b])), phrase)
            for a, b in _label_runs(_semitones(contour))
            if b - a >= min_note and abs(_slope(contour[a:b], frame_s)) <= NOTE_MAX_SLOPE_ST_PER_S
        ]
        for before, after in itertools.pairwise(in_run):
            transitions += 1
            if (after.start - before.end) * frame_s >= GLIDE_MIN_S:
                glides.append(Glide(after.start - before.end, after.pitch - before.pitch))
        notes += in_run
    return notes, glides, transitions


def _slope(x: np.ndarray, frame_s: float) -> float:
    """Least-squares slope of series ``x`` per second."""
    return float(np.polyfit(np.arange(x.size) * frame_s, x, 1)[0])


def _odd(frames: float) -> int:
    return 2 * round(frames / 2) + 1


def _semitones(contour: np.ndarray) -> np.ndarray:
    """Each frame's semitone: the nearest one, kept until ``contour`` lies ``HYSTERESIS_ST`` from it."""
    out = np.empty(contour.size, dtype=np.int64)
    current = round(contour[0])
    for i, value in enumerate(contour):
        if abs(value - current) >= HYSTERESIS_ST:
            current = round(value)
        out[i] = current
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _label_runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of one value in ``labels``."""
    bounds = [0, *(np.flatnonzero(np.diff(labels)) + 1).tolist(), labels.size]
    return list(itertools.pairwise(bounds))


def _melodic(notes: list[Note]) -> dict[str, float]:
    pitches = np.array([n.pitch for n in notes])
    intervals = np.diff(pitches)
    size = np.abs(intervals)
    moving = intervals[size >= 0.5]
    directions = np.sign(moving)
    out = {
        "note_pitch_median": float(np.median(pitches)) if pitches.size else np.nan,
        "note_pitch_range": float(np.percentile(pitches, 95) - np.percentile(pitches, 5)) if pitches.size else np.nan,
        "note_pitch_std": float(pitches.std()) if pitches.size else np.nan,
        "interval_mean": float(size.mean()),
        "contour_up_share": float((moving > 0).mean()),
        "contour_turns": float((directions[1:] != directions[:-1]).mean()),
    }
    for name, (lo, hi) in INTERVALS.items():
        out[f"interval_{name}_share"] = float(((size >= lo) & (size < hi)).mean())
    return out


def _articulation(notes: list[Note], frame_s: float) -> dict[str, float]:
    durations = np.array([n.end - n.start for n in notes]) * frame_s
    pairs = [(a, b) for a, b in itertools.pairwise(notes) if (b.start - a.start) * frame_s <= MAX_IOI_S]
    held = np.array([(a.end - a.start) / (b.start - a.start) for a, b in pairs])
    return {
        "note_duration_mean": float(durations.mean()),
        "note_duration_std": float(durations.std()),
        "articulation": float(held.mean()),
        "legato_share": float(np.mean([a.phrase == b.phrase for a, b in pairs])),
        "staccato_share": float((held < STACCATO_RATIO).mean()),
    }


def _glissando(glides: list[Glide], transitions: int, frame_s: float) -> dict[str, float]:
    seconds = np.array([g.frames for g in glides]) * frame_s
    intervals = np.array([g.interval for g in glides])
    return {
        "glissando_share": len(glides) / transitions if transitions else np.nan,
        "glissando_length": float(seconds.mean()),
        "glissando_up_share": float((intervals > 0).mean()),
        "glissando_length_std": float(seconds.std()),
        "glissando_extent": float(np.abs(intervals).mean()),
        "glissando_extent_std": float(np.abs(intervals).std()),
        "glissando_slope_std": float((np.abs(intervals) / seconds).std()) if glides else np.nan,
    }


def _modulation(notes: list[Note], pitch: np.ndarray, level_db: np.ndarray, frame_s: float) -> dict[str, float]:
    """Vibrato (of the pitch), tremolo (of the level) and the level's trend within each note long enough."""
    long = [n for n in notes if (n.end - n.start) * frame_s >= MODULATED_MIN_S]
    vibrato = [modulation(pitch[n.start : n.end], frame_s) for n in long]
    tremolo = [modulation(level_db[n.start : n.end], frame_s) for n in long]
    has_vibrato = np.array(
        [share >= MODULATED_SHARE and extent >= VIBRATO_MIN_ST for _, extent, share in vibrato], bool
    )
    has_tremolo = np.array(
        [share >= MODULATED_SHARE and extent >= TREMOLO_MIN_DB for _, extent, share in tremolo], bool
    )
    rates, extents = (np.array([v[k] for v in vibrato])[has_vibrato] for k in (0, 1))
    tremolo_rates, tremolo_extents = (np.array([v[k] for v in tremolo])[has_tremolo] for k in (0, 1))
    pitches = np.array([n.pitch for n in long])
    seconds = np.array([n.end - n.start for n in long]) * frame_s
    high = pitches >= HIGH_REGISTER_MIDI
    slopes = np.array([_slope(level_db[n.start : n.end], frame_s) for n in long])
    return {
        "vibrato_share": float(has_vibrato.mean()),
        "vibrato_rate": float(rates.mean()),
        "vibrato_extent": float(extents.mean()),
        "vibrato_rate_std": float(rates.std()),
        "vibrato_extent_std": float(extents.std()),
        "vibrato_extent_max": float(extents.max()) if extents.size else np.nan,
        "vibrato_note_s": float(seconds[has_vibrato].mean()),
        "vibrato_pitch_median": float(np.median(pitches[has_vibrato])) if has_vibrato.any() else np.nan,
        "vibrato_high_share": float(has_vibrato[high].mean()),
        "tremolo_share": float(has_tremolo.mean()),
        "tremolo_rate": float(tremolo_rates.mean()),
        "tremolo_extent": float(tremolo_extents.mean()),
        "tremolo_extent_max": float(tremolo_extents.max()) if tremolo_extents.size else np.nan,
        "tremolo_high_share": float(has_tremolo[high].mean()),
        "crescendo_share": float((slopes > DYNAMIC_DB_PER_S).mean()),
        "decrescendo_share": float((slopes < -DYNAMIC_DB_PER_S).mean()),
    }


def modulation(x: np.ndarray, frame_s: float) -> tuple[float, float, float]:
    """A periodic swing of series ``x`` (a note's pitch or level): its rate (Hz, the strongest frequency within
    ``MODULATION_HZ``), its extent (half peak to peak of a sine of the same variance) and the share of the
    detrended variance lying within ``MODULATION_HZ``."""
    t = np.arange(x.size)
    residual = x - np.polyval(np.polyfit(t, x, 1), t)
    if residual.std() <= 1e-9 * (1 + np.abs(x).max()):  # constant but for rounding
        return 0.0, 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(residual * np.hanning(x.size), n=max(256, x.size))) ** 2
    frequencies = np.fft.rfftfreq(max(256, x.size), d=frame_s)
    band = (frequencies >= MODULATION_HZ[0]) & (frequencies <= MODULATION_HZ[1])
    total = spectrum[1:].sum()
    return (
        float(frequencies[band][np.argmax(spectrum[band])]),
        float(np.sqrt(2) * residual.std()),
        float(spectrum[band].sum() / total),
    )


def _salience(harmonic_power: np.ndarray, pitch: np.ndarray, sr: int, n_fft: int) -> float:
    voiced = np.flatnonzero(np.isfinite(pitch))
    if voiced.size == 0:
        return np.nan
    f0 = librosa.midi_to_hz(pitch[voiced])
    frequencies = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    ratio = frequencies[:, None] / f0[None, :]
    harmonic = np.round(ratio)
    near = np.abs(ratio - harmonic) * f0 <= np.maximum(sr / n_fft, HARMONIC_TOLERANCE * harmonic * f0)
    on_melody = near & (harmonic >= 1) & (harmonic <= HARMONICS)
    frames = harmonic_power[:, voiced]
    total = frames.sum(axis=0)
    share = (frames * on_melody).sum(axis=0) / np.where(total > 0, total, 1.0)
    return float(share[total > 0].mean())
