"""Fixtures shared by every test package: seeded signals, tiny media files, the shared data."""

from __future__ import annotations

import os
from pathlib import Path

# Each pytest-xdist worker computes on one thread, set before numpy and torch load: two workers each running two
# OpenMP threads on two cores fight over them (the suite took 398 s so against 293 s on one thread each).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[variable] = "1"

import numpy as np
import pytest

# ../shared beside the clone, or $MVEMO_SHARED (the GPU check points it at a copy on a machine that lacks ../shared)
SHARED = Path(os.environ.get("MVEMO_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
MVED_SAMPLE = SHARED / "data" / "mved-sample"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def mved_sample() -> Path:
    """The 136 real music videos of ../shared, or a skip where a clone has none."""
    if not MVED_SAMPLE.is_dir():
        pytest.skip(f"{MVED_SAMPLE} is absent (a user's clone has no ../shared)")
    return MVED_SAMPLE


def tiny_frames(n: int = 10, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def tiny_audio(duration_s: float = 0.5, sr: int = 16000, channels: int = 2) -> np.ndarray:
    t = np.arange(int(duration_s * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    return tone if channels == 1 else np.repeat(tone[:, None], channels, axis=1)


def write_tiny(path: Path, *, video: bool = True, audio: bool = True) -> Path:
    """A short real media file: h264 video and/or AAC (or PCM/FLAC by suffix) audio."""
    from mvemo.manifests.synthetic import write_media  # PyAV: imported where used, so the GPU tests run without it

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_media(
        path,
        frames=tiny_frames() if video else None,
        y=tiny_audio() if audio else None,
        sr=16000,
    )


def write_song_with_cover(path: Path, y: np.ndarray, *, sr: int) -> Path:
    """An mp3 of mono ``y`` with a cover picture attached, as music libraries hold songs."""
    import av

    with av.open(str(path), "w") as out:
        sound = out.add_stream("mp3", rate=sr, layout="mono")
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(tiny_frames(n=1, width=32)[0], format="rgb24").reformat(format="yuvj420p")
        out.mux([*cover.encode(picture), *cover.encode()])
        frame = av.AudioFrame.from_ndarray(np.asarray(y, dtype=np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = sr
        for block in av.AudioResampler(format="fltp", layout="mono", rate=sr).resample(frame):
            out.mux(sound.encode(block))
        out.mux(sound.encode())
    return path


@pytest.fixture(scope="session", autouse=True)
def numba_compiled_once() -> None:
    """Each test process compiles stage one's numba code under the machine's lock before its first test, as each
    stage-one process does: a test that called a numba function first, beside a worker compiling the same one, left
    numba's cache written by two processes, which segfaults every later load (``extract.numba_once``; seen in CI)."""
    from mvemo.extract.numba_once import compile_numba_once

    compile_numba_once()


@pytest.fixture(autouse=True)
def no_installed_weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no weights a user installed ($MVEMO_WEIGHTS, ~/.cache/mvemo/weights, torch's hub cache): a net runs
    with the weights a test gives it, or from the random weights a test asks for."""
    home = tmp_path_factory.getbasetemp() / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MVEMO_WEIGHTS", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))


def faststart(source: Path, target: Path) -> Path:
    """``source`` remuxed with its index (moov) first, as streamed and downloaded mp4s are: a cut file still opens."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", options={"movflags": "faststart"}) as dst:
        streams = [s for s in src.streams if s.type in ("audio", "video")]
        out = {s.index: dst.add_stream_from_template(s) for s in streams}
        for packet in src.demux(*streams):
            if packet.dts is not None:
                packet.stream = out[packet.stream.index]
                dst.mux(packet)
    return target
