"""The expressive descriptors: synthetic melodies of known intervals, vibrato, glissando, tremolo, articulation and
dynamics read back as such, and input without melody stays finite at the documented values."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from mvemo.extract.audio import compute_audio_features
from mvemo.extract.decode.audio import Decoded
from mvemo.extract.features import FeatureConfigs
from mvemo.extract.handcrafted.expressive import COLUMNS, ExpressiveConfig, expressive, foreground_mask, modulation
from mvemo.manifests import ConfigError

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

SR = 16000
# The melody analysis alone: these melodies repeat note for note, which is what the separation takes for accompaniment
CONFIG = ExpressiveConfig(voice_margin=0.0)
NAMES = CONFIG.columns
UNDEFINED = {c.name: c.undefined for c in COLUMNS}


def tone(midi: np.ndarray, level_db: np.ndarray) -> np.ndarray:
    """A harmonic tone (3 partials) following a MIDI pitch and a level in dB, one value per sample."""
    phase = 2 * np.pi * np.cumsum(440 * 2 ** ((midi - 69) / 12)) / SR
    amplitude = 0.2 * 10 ** (level_db / 20)
    return np.asarray(amplitude * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.3 * np.sin(3 * phase)), dtype=np.float32)


def melody(
    pitches: list[float],
    note_s: float = 0.5,
    held: float = 1.0,
    vibrato: tuple[float, float] = (0.0, 0.0),
    glide_s: float = 0.0,
    tremolo: tuple[float, float] = (0.0, 0.0),
    level_slope_db_per_s: float = 0.0,
) -> np.ndarray:
    """Notes of ``note_s`` each, sounding for ``held`` of it; vibrato and tremolo as (rate Hz, extent in semitones or
    dB); the last ``glide_s`` of each note sliding to the next; each note's level rising by the slope given."""
    n = int(note_s * SR)
    t = np.arange(n) / SR
    midi, level = [], []
    for i, pitch in enumerate(pitches):
        contour = np.full(n, float(pitch))
        if glide_s and i + 1 < len(pitches):
            g = int(glide_s * SR)
            contour[-g:] = np.linspace(pitch, pitches[i + 1], g)
        midi.append(contour + vibrato[1] * np.sin(2 * np.pi * vibrato[0] * t))
        db = tremolo[1] * np.sin(2 * np.pi * tremolo[0] * t) + level_slope_db_per_s * (t - note_s / 2)
        level.append(np.where(t < held * note_s, db, -200.0))
    return tone(np.concatenate(midi), np.concatenate(level))


def describe(y: np.ndarray) -> dict[str, float]:
    vector = expressive(y, CONFIG)
    assert vector.dtype == np.float32 and vector.shape == (len(NAMES),) and np.isfinite(vector).all()
    return dict(zip(NAMES, vector.tolist(), strict=True))


SCALE = [60, 62, 64, 65, 67, 65, 64, 62] * 3


def test_steps_read_as_legato_notes_of_steps_without_expression() -> None:
    v = describe(melody(SCALE))
    assert v["melody_voiced_share"] > 0.95 and v["melody_notes_per_s"] == pytest.approx(2.0, rel=0.1)
    assert v["note_pitch_median"] == pytest.approx(64, abs=0.5) and v["note_pitch_range"] == pytest.approx(7, abs=0.3)
    assert v["interval_step_share"] == 1.0 and v["interval_mean"] == pytest.approx(12 / 7, abs=0.1)
    assert v["contour_up_share"] == pytest.approx(0.5, abs=0.05)
    assert v["contour_turns"] == pytest.approx(5 / 22, abs=0.05)  # a turn at each top and bottom of the scale
    assert v["note_duration_mean"] == pytest.approx(0.5, abs=0.05)
    assert v["legato_share"] == 1.0 and v["staccato_share"] == 0.0 and v["articulation"] > 0.9
    for name in ("vibrato_share", "glissando_share", "tremolo_share", "crescendo_share", "decrescendo_share"):
        assert v[name] == 0.0, name
    assert v["melody_salience"] > 0.8 and v["pitch_classes_mean"] < 1.5


def test_intervals_fall_in_their_bins() -> None:
    v = describe(melody([60, 64, 67, 72] * 6, note_s=0.4))  # a major third, a minor third, a fourth, an octave down
    assert v["interval_third_share"] == pytest.approx(0.5, abs=0.05)
    assert v["interval_fourth_fifth_share"] == pytest.approx(0.25, abs=0.05)
    assert v["interval_leap_share"] == pytest.approx(0.25, abs=0.05)
    assert v["interval_step_share"] == v["interval_repeat_share"] == 0.0
    assert v["contour_up_share"] == pytest.approx(0.75, abs=0.05)


@pytest.mark.parametrize("rate_hz, extent_st", [(5.5, 0.5), (6.5, 0.8)])
def test_vibrato_rate_and_extent(rate_hz: float, extent_st: float) -> None:
    v = describe(melody([60, 62, 64, 67] * 4, note_s=1.0, vibrato=(rate_hz, extent_st)))  # steps wider than the swing
    assert v["vibrato_share"] == 1.0
    assert v["vibrato_rate"] == pytest.approx(rate_hz, abs=0.3)
    assert 0.7 * extent_st <= v["vibrato_extent"] <= 1.1 * extent_st
    assert v["melody_notes_per_s"] == pytest.approx(1.0, rel=0.1)  # the swing splits no note
    assert v["glissando_share"] == 0.0


def test_glissando_share_length_and_direction() -> None:
    pitches = [60, 64, 60, 67, 62] * 4
    v = describe(melody(pitches, note_s=0.8, glide_s=0.3))
    assert v["glissando_share"] > 0.9
    assert 0.12 <= v["glissando_length"] <= 0.3
    rising = np.mean(np.diff(pitches) > 0)
    assert v["glissando_up_share"] == pytest.approx(rising, abs=0.1)
    assert describe(melody(pitches, note_s=0.8))["glissando_share"] == 0.0  # the same steps, struck


def test_vibrato_statistics_and_its_coverage_of_the_high_register() -> None:
    """Low notes plain, high notes with a narrow then a wide vibrato: the spread and the widest of the extents, the
    register of the notes with vibrato, and its coverage from C4 up against below it."""
    low = melody([48, 50, 52, 53] * 2, note_s=1.0)
    narrow = melody([67, 69, 71, 72] * 2, note_s=1.0, vibrato=(5.5, 0.4))
    wide = melody([67, 69, 71, 72] * 2, note_s=1.0, vibrato=(5.5, 0.8))
    v = describe(np.concatenate([low, narrow, wide]))
    assert v["vibrato_share"] == pytest.approx(2 / 3, abs=0.05) and v["vibrato_high_share"] == pytest.approx(
        1.0, abs=0.05
    )
    assert 0.7 * 0.8 <= v["vibrato_extent_max"] <= 1.1 * 0.8
    assert v["vibrato_extent_std"] == pytest.approx(0.2, abs=0.07), "half the gap between 0.4 and 0.8"
    assert v["vibrato_rate_std"] < 0.3, "one rate throughout"
    assert v["vibrato_pitch_median"] == pytest.approx(70, abs=1.5) and v["vibrato_note_s"] == pytest.approx(
        1.0, abs=0.15
    )
    plain = describe(np.concatenate([melody([48, 50, 52, 53] * 2, note_s=1.0, vibrato=(5.5, 0.6)), narrow]))
    assert plain["vibrato_high_share"] == pytest.approx(1.0, abs=0.05) and plain["vibrato_share"] > 0.95


def test_glissando_sizes_and_their_spread() -> None:
    """Glides of 2 and then 5 semitones, each over the same 0.3 s: their mean size and spread, and the spread of their
    slopes (the same time for a wider interval is a steeper glide)."""
    v = describe(melody([60, 62, 67] * 6, note_s=0.8, glide_s=0.3))
    glides = np.abs(np.diff([60, 62, 67] * 6))
    assert v["glissando_extent"] == pytest.approx(glides.mean(), abs=0.5)
    assert v["glissando_extent_std"] == pytest.approx(glides.std(), abs=0.5)
    assert v["glissando_length_std"] < 0.06 and v["glissando_slope_std"] > 5.0
    even = describe(melody([60, 62] * 9, note_s=0.8, glide_s=0.3))
    assert even["glissando_extent_std"] < 0.3 and even["glissando_slope_std"] < v["glissando_slope_std"] / 2


def test_staccato_notes_are_detached() -> None:
    v = describe(melody([60, 64, 67, 72] * 6, note_s=0.4, held=0.4))
    assert v["melody_notes_per_s"] == pytest.approx(2.5, rel=0.1)
    assert v["staccato_share"] == 1.0 and v["legato_share"] == 0.0 and v["articulation"] < 0.6


def test_tremolo_and_dynamics_within_notes() -> None:
    pitches = [60, 62, 64, 65] * 4
    v = describe(melody(pitches, note_s=1.0, tremolo=(6.0, 4.0)))
    assert v["tremolo_share"] == 1.0 and v["tremolo_rate"] == pytest.approx(6.0, abs=0.3)
    assert v["tremolo_extent"] == pytest.approx(4.0, rel=0.25) and v["tremolo_extent_max"] >= v["tremolo_extent"]
    assert v["tremolo_high_share"] == 1.0 and v["vibrato_share"] == 0.0
    rising, falling = (describe(melody(pitches, note_s=1.0, level_slope_db_per_s=s)) for s in (15.0, -15.0))
    assert rising["crescendo_share"] == 1.0 and rising["decrescendo_share"] == 0.0
    assert falling["decrescendo_share"] == 1.0 and falling["crescendo_share"] == 0.0


def test_a_chord_sounds_more_pitch_classes_than_one_note() -> None:
    t = np.arange(8 * SR) / SR
    single = np.full(t.size, 60.0)
    chord = sum(tone(np.full(t.size, float(m)), np.zeros(t.size)) for m in (60, 64, 67, 71))
    assert describe(chord)["pitch_classes_mean"] >= describe(tone(single, np.zeros(t.size)))["pitch_classes_mean"] + 1.5
    assert describe(chord)["melody_salience"] < describe(tone(single, np.zeros(t.size)))["melody_salience"]


def test_modulation_finds_a_sine_swing() -> None:
    frame_s = CONFIG.frame_s
    t = np.arange(50) * frame_s
    rate, extent, share = modulation(60 + 0.4 * np.sin(2 * np.pi * 5.0 * t) + 0.5 * t, frame_s)
    assert rate == pytest.approx(5.0, abs=0.25) and extent == pytest.approx(0.4, rel=0.05) and share > 0.9
    assert modulation(np.full(50, 60.0), frame_s) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "name, y",
    [
        ("silence", np.zeros(10 * SR, dtype=np.float32)),
        ("shorter than a frame", melody([60], note_s=0.03)),
        ("noise", np.random.default_rng(0).standard_normal(5 * SR).astype(np.float32) * 0.1),
        ("one note", melody([60], note_s=3.0)),
    ],
)
def test_without_melody_or_intervals_values_are_the_documented_ones(name: str, y: np.ndarray) -> None:
    v = describe(y)
    if name in ("silence", "shorter than a frame"):
        assert v == pytest.approx(UNDEFINED)
    if name == "one note":  # a pitch and a duration, no interval, no successive notes
        assert v["note_pitch_median"] == pytest.approx(60, abs=0.2) and v["note_duration_mean"] > 2.5
        for column in ("interval_mean", "contour_up_share", "articulation", "legato_share", "glissando_share"):
            assert v[column] == UNDEFINED[column], column


def test_computed_with_the_other_audio_sets_from_the_real_audio() -> None:
    y = melody(SCALE[:8])
    window = FeatureConfigs().audio_window
    decoded = Decoded(np.concatenate([y, np.zeros(SR, np.float32)]), SR, valid_s=y.size / SR)
    out = compute_audio_features(decoded, ("expressive",), FeatureConfigs().audio)
    assert window.duration_s > y.size / SR
    np.testing.assert_array_equal(out["expressive"], expressive(y, ExpressiveConfig()))


def accompanied(voice: np.ndarray, seconds: float) -> np.ndarray:
    """``voice`` over a one-bar loop of a low chord struck on each beat (1 s, played again and again)."""
    t = np.arange(SR) / SR
    strike = np.exp(-t % 0.25 * 12.0)
    bar = sum(tone(np.full(SR, float(m)), 20 * np.log10(strike + 1e-9) - 6) for m in (43, 47, 50))
    loop = np.tile(bar, int(np.ceil(seconds)))[: int(seconds * SR)]
    return (loop + np.pad(voice, (0, max(0, loop.size - voice.size)))[: loop.size]).astype(np.float32)


def test_the_separation_keeps_the_voice_and_leaves_a_repeating_accompaniment_out() -> None:
    rng = np.random.default_rng(0)
    pitches = list(rng.choice(np.arange(62, 82), size=14, replace=False))  # a line that never repeats a note
    voice = melody(pitches, note_s=1.0, vibrato=(5.5, 0.5))
    mix = accompanied(voice, 14.0)
    config = ExpressiveConfig()

    def power(y: np.ndarray) -> np.ndarray:
        return np.abs(librosa.stft(y, n_fft=config.n_fft, hop_length=config.hop_length)) ** 2

    mask = foreground_mask(np.sqrt(power(mix)), config)
    voice_power, loop_power = power(voice[: mix.size]), power(mix - np.pad(voice, (0, mix.size - voice.size)))
    voice_kept, loop_kept = ((mask * energy).sum() / energy.sum() for energy in (voice_power, loop_power))
    assert voice_kept > 0.4 and loop_kept < 0.05, (voice_kept, loop_kept)  # the voice 55 times weaker than the loop
    separated, whole = (dict(zip(NAMES, expressive(mix, c).tolist(), strict=True)) for c in (config, CONFIG))
    assert 62 <= separated["note_pitch_median"] <= 81 and separated["melody_voiced_share"] > 0.9
    assert separated["vibrato_share"] >= 0.8 and separated["vibrato_rate"] == pytest.approx(5.5, abs=0.3)
    assert whole["note_pitch_median"] < 55 and whole["melody_voiced_share"] < 0.5, (
        "unseparated, the chord is the melody"
    )


def test_a_clip_too_short_to_repeat_keeps_its_whole_mix() -> None:
    config = ExpressiveConfig()
    y = melody([60, 62, 64, 65], note_s=0.5)
    magnitude = np.abs(librosa.stft(y, n_fft=config.n_fft, hop_length=config.hop_length))
    np.testing.assert_array_equal(foreground_mask(magnitude, config), np.ones_like(magnitude))
    np.testing.assert_array_equal(expressive(y, config), expressive(y, CONFIG))


def test_config_is_validated() -> None:
    for margin in (-1.0, float("inf"), "10"):
        with pytest.raises(ConfigError, match=r"\[expressive\] voice_margin"):
            ExpressiveConfig(voice_margin=margin)  # type: ignore[arg-type]
    assert ExpressiveConfig(voice_margin=10) == ExpressiveConfig(), "a TOML integer is the default, not a new config"
    with pytest.raises(ConfigError, match=r"\[expressive\] fmin_hz"):
        ExpressiveConfig(fmin_hz=2000.0)
    with pytest.raises(ConfigError, match=r"\[expressive\] hop_length"):
        ExpressiveConfig(hop_length=1024, n_fft=2048)
    with pytest.raises(ConfigError, match=r"\[expressive\] n_fft=512: pYIN and YIN need half a frame"):
        ExpressiveConfig(sample_rate_hz=48000, n_fft=512, hop_length=256)
