from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from manifests.synthetic import DEMO_CLASSES, write_demo_set, write_media


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        container.seek(0)
        audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
    return frames, audio


def test_write_media_round_trips_frames_and_tone(tmp_path: Path) -> None:
    frames = np.zeros((12, 64, 80, 3), dtype=np.uint8)
    frames[..., 0] = 200
    sr = 16000
    y = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)).astype(np.float32)
    decoded, audio = decode(write_media(tmp_path / "x.mp4", frames=frames, fps=12, y=y, sr=sr))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 4
    spectrum = np.abs(np.fft.rfft(audio[:sr]))
    assert abs(np.argmax(spectrum) * sr / min(sr, audio.size) - 1000) < 5


def test_demo_set_is_seeded_and_classes_differ(tmp_path: Path) -> None:
    files = write_demo_set(tmp_path / "a", clips_per_class=2, duration_s=0.4, seed=3)
    again = write_demo_set(tmp_path / "b", clips_per_class=2, duration_s=0.4, seed=3)
    assert [f.relative_to(tmp_path / "a") for f in files] == [f.relative_to(tmp_path / "b") for f in again]
    assert {f.parent.name for f in files} == set(DEMO_CLASSES)
    first, second = decode(files[0]), decode(again[0])
    assert np.array_equal(first[0], second[0]) and np.allclose(first[1], second[1], atol=1e-4)
    colours = [decode(f)[0].reshape(-1, 3).mean(axis=0) for f in files[::2]]
    assert min(np.abs(a - b).max() for i, a in enumerate(colours) for b in colours[i + 1 :]) > 10
