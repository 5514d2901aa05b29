"""mvemo's beat tracker finds the frames librosa's does, on real and synthetic onset envelopes of either float type."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from mvemo.extract.handcrafted.beats import track_beats
from mvemo.manifests.synthetic import AudioCues, synthesize_audio
from tests.conftest import SHARED

SR, HOP = 16000, 512


def onsets_of(y: np.ndarray) -> np.ndarray:
    """The onset envelope of the descriptors' rhythm: librosa's onset strength over 64 mel bands in dB."""
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=HOP, n_mels=64)
    return librosa.onset.onset_strength(S=librosa.power_to_db(mel, top_db=None), sr=SR, hop_length=HOP, n_fft=1024)


def envelopes() -> list[tuple[str, np.ndarray]]:
    """Onset envelopes of every kind: random, sparse clicks off the tempo, synthetic music, real songs where
    ../shared lies beside the clone."""
    rng = np.random.default_rng(0)
    found = [(f"random {dtype.__name__}", rng.gamma(0.5, 1.0, 900).astype(dtype)) for dtype in (np.float32, np.float64)]
    clicks = np.zeros(900, dtype=np.float32)
    clicks[rng.choice(900, 40, replace=False)] = rng.uniform(0.5, 3.0, 40)
    found.append(("clicks", clicks))
    for seed in range(3):
        cues = AudioCues(80.0 + 40 * seed, bool(seed % 2), 0.5, 0.3 * seed, 1.0 - 0.4 * seed, 0.2)
        found.append((f"synthetic {seed}", onsets_of(synthesize_audio(cues, 20.0, SR, np.random.default_rng(seed)))))
    for song in sorted((SHARED / "data" / "4q-dev").glob("Q*/*.ogg"))[:6]:
        found.append((song.name, onsets_of(librosa.load(song, sr=SR, duration=30.0)[0])))
    return found


@pytest.mark.heavy
def test_the_beats_are_librosas_frame_for_frame_at_its_tempo_and_at_others() -> None:
    compared = 0
    for name, onsets in envelopes():
        tempo = float(librosa.feature.tempo(onset_envelope=onsets, sr=SR, hop_length=HOP)[0])
        for bpm in (tempo, 0.5 * tempo, 97.0):
            _, expected = librosa.beat.beat_track(onset_envelope=onsets, sr=SR, hop_length=HOP, bpm=bpm)
            got = track_beats(onsets, SR / HOP, bpm)
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} at {bpm:.1f} BPM")
            compared += expected.size
    assert compared > 500, "the envelopes have beats to compare"


def test_a_silent_envelope_has_no_beat() -> None:
    assert track_beats(np.zeros(300, dtype=np.float32), SR / HOP, 120.0).size == 0
