"""A clip's sound, one definition (``extract.sound``): what every net and every set computed from the audio take for
it, and what each of them takes for the window's padding."""

from __future__ import annotations

import numpy as np
import torch

from mvemo.extract.audio import LogMelConfig, MelConfig, WaveformConfig, compute_audio_features
from mvemo.extract.decode.audio import AudioWindow, Decoded
from mvemo.extract.handcrafted.lld import LldConfig
from mvemo.extract.sound import SCAN_BLOCK, floor_of, of_sound, sound_frames, sound_samples


def test_the_sound_lasts_up_to_the_last_sample_that_is_not_zero() -> None:
    y = np.array([0.0, 0.5, 0.0, 0.2, 0.0, 0.0], dtype=np.float32)
    assert sound_samples(y) == 4, "a silence within the clip is sound, the zeros after it are not"
    assert sound_samples(np.zeros(5, dtype=np.float32)) == 5, "silence alone: no end to find, all of it"


def test_the_sounds_end_is_found_wherever_it_lies_among_the_scans_blocks() -> None:
    """Scanned from the end a block at a time: an end at or next to a block's edge, in the first block, after many
    blocks of padding, and a window shorter than one block, each where the last sample that is not zero says."""
    block = SCAN_BLOCK
    for size in (1, block - 1, block, block + 1, 5 * block + 17):
        for last in sorted({0, 1, block - 1, block, block + 1, 2 * block, size - 2, size - 1} & set(range(size))):
            y = np.zeros(size, dtype=np.float32)
            y[: last + 1 : block // 2 + 1] = 0.5  # sound in earlier blocks too
            y[last] = -1e-30
            assert sound_samples(y) == last + 1, (size, last)
    assert sound_samples(np.zeros(0, dtype=np.float32)) == 0


def test_frames_of_sound_count_up_to_each_clips_last_step_unlike_the_padding() -> None:
    """Every step up to its last one of sound (a silence within it counts), one step for a clip of none; over every
    channel; against one padding value or one per clip."""
    steps = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.float32)
    assert sound_frames(steps).tolist() == [3, 1, 5, 5]
    rows = (torch.rand(64, 300) < torch.rand(64, 1) * 0.05).float()
    expected = [max((t + 1 for t in range(300) if row[t]), default=1) for row in rows.tolist()]
    assert sound_frames(rows).tolist() == expected
    channels = torch.zeros(2, 3, 6)
    channels[0, 2, 4] = 1.0
    channels[1, 0, 1] = -1.0
    assert sound_frames(channels).tolist() == [5, 2]
    floors = torch.tensor([-80.0, -60.0])
    assert sound_frames(channels - 80.0 + torch.tensor([0.0, 20.0])[:, None, None], padding=floors).tolist() == [5, 2]
    assert of_sound(torch.tensor([2, 0, 3]), 3).tolist() == [[True, True, False], [False] * 3, [True] * 3]


def test_every_set_of_a_short_clip_ends_its_sound_where_its_samples_end() -> None:
    """A 2-s clip whose last 0.5 s are digital silence, in a 3-s window: the waveform, both mel spectrograms and the
    LLDs all end its sound at 1.5 s, whichever set the nets read it from (to a frame, and to the tail that resampling
    to the LLDs' 44.1 kHz leaves after the last sample)."""
    sr = 16000
    rng = np.random.default_rng(0)
    y = np.zeros(2 * sr, dtype=np.float32)
    y[: int(1.5 * sr)] = 0.1 * rng.standard_normal(int(1.5 * sr))
    window = AudioWindow(duration_s=3.0)
    configs = {
        "waveform": WaveformConfig(audio_window=window),
        "logmel": LogMelConfig(audio_window=window),
        "mel": MelConfig(audio_window=window),
        "lld": LldConfig(audio_window=window),
    }
    sets = compute_audio_features(Decoded(y, sr, valid_s=2.0), tuple(configs), configs)
    as_tensor = {name: torch.from_numpy(values.astype(np.float32))[None] for name, values in sets.items()}
    seconds = {
        "waveform": int(sound_frames(as_tensor["waveform"])[0]) / sr,
        "logmel": int(sound_frames(as_tensor["logmel"])[0]) * configs["logmel"].hop_length / sr,
        "mel": int(sound_frames(as_tensor["mel"], padding=floor_of(as_tensor["mel"]))[0]) * 256 / sr,
        "lld": len(sets["lld"]) * configs["lld"].hop_length / configs["lld"].sample_rate_hz,
    }
    assert seconds["waveform"] == 1.5
    for name in ("logmel", "mel", "lld"):
        assert abs(seconds[name] - 1.5) <= 0.06, f"{name} ends its sound at {seconds[name]:.3f} s"
