"""``mvemo bench predict``: what a user waits for one song's label against what each further song costs.

``mvemo predict`` is run as a user runs it, in a process of its own: over one song (``T1``: the start-up, imports,
weights and the song) and over N in one call (``TN``, nine by default); the second's songs after the first cost
``(TN - T1) / (N - 1)`` each, and the first over that says how much of a one-song answer is start-up (goal: at most
2). Both runs again with ``mvemo serve`` holding the model (started before them, in a runtime folder of the bench's
own) and ``MVEMO_SERVE=1``: each call is then a fork of a process that loaded it, which each call's ``--verbose`` line
confirms. The runs take turns, each the faster of two. The songs are 4q-dev's where ``../shared`` lies beside the
clone, else generated 30-s ones.

Beside them, in the same turns, a fresh Python that only imports torch and librosa and runs librosa's first STFT
(``IMPORTS``): what a process that labels a song with nets and librosa's features waits for before its first
sample, one import after the other. ``T1`` less that and one further song is the start-up left to mvemo (Python and
click, the model's heads, the nets' weights, first calls); below zero, what working side by side saves (a
one-command predict imports torch and loads the nets while a second process imports librosa and computes the song's
sets: ``pipeline.predict.ahead``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mvemo.extract.weights.registry import find_weights
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests.synthetic import AudioCues, synthesize_audio
from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of_each
from mvemo.pipeline.readymade.recipes import shipped_folder
from mvemo.pipeline.serving.wire import SERVE, listening, socket_path

MVEMO = Path(sys.executable).parent / "mvemo"
FOURQ = SHARED_SAMPLE.parent / "4q-dev"
SONGS = 9
REPEAT = 2  # runs of each, the faster kept
# The imports of a first label: the nets' torch, and librosa up to its first STFT (scipy.signal, numba's loads)
IMPORTS = "import numpy, torch, librosa; librosa.stft(numpy.zeros(16000, numpy.float32))"


def bench_predict(
    *,
    model: str = "4q-quadrants",
    songs: int = SONGS,
    repeat: int = REPEAT,
    weights_dir: str | None = None,
    folder: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The figures of ``mvemo bench predict --json``: ``model`` a ready-made model's name or a saved model's folder
    (``name``: the model of that folder to use) over one song and ``songs``, the faster of ``repeat`` runs each;
    skipped where the nets' weights are not found."""
    saved_folder = Path(model) if Path(model).is_dir() else shipped_folder(model)
    missing = weights_missing(saved_folder, name, weights_dir)
    if missing:
        return {"skipped": f"the weights of {model} are not found: {', '.join(missing)} (`mvemo weights fetch FILE`)"}
    which = [str(model)] if Path(model).is_dir() else ["--model", model]
    weights = ["--weights-dir", weights_dir] if weights_dir else []
    with (
        tempfile.TemporaryDirectory(dir=folder) as tmp,
        tempfile.TemporaryDirectory(prefix="mvemo", dir="/tmp") as runtime,
    ):
        files, source = song_files(Path(tmp), songs)
        command = [str(MVEMO), "predict", *which, *(["--model", name] if name else []), *weights, "--json", "--verbose"]
        alone = {key: value for key, value in os.environ.items() if key != SERVE}
        envs = {"alone": alone, "served": {**alone, SERVE: "1", "XDG_RUNTIME_DIR": runtime}}
        with _server([str(MVEMO), "serve", "--model", str(model), *weights], envs["served"], Path(tmp) / "serve.log"):
            runs = {
                f"{how} {n}": functools.partial(_run, [*command, *map(str, files[:n])], env, served=how == "served")
                for how, env in envs.items()
                for n in (1, songs)
            }
            runs["imports"] = functools.partial(_imports, alone)
            seconds = best_of_each(runs, repeat)
    figures: dict[str, Any] = {"model": str(model) + (f" ({name})" if name else ""), "songs": source}
    for how in envs:
        first, every = round(seconds[f"{how} 1"], 3), round(seconds[f"{how} {songs}"], 3)  # the ratio of what it prints
        per_song = (every - first) / (songs - 1)
        figures |= {
            f"{how}: first song s (T1)": first,
            f"{how}: all songs s (TN)": every,
            f"{how}: each further song s ((TN - T1) / (N - 1))": round(per_song, 4),
            f"{how}: first over each further (goal <= 2)": round(first / per_song, 2) if per_song > 0 else None,
        }
    imports = round(seconds["imports"], 3)
    per_song = figures["alone: each further song s ((TN - T1) / (N - 1))"]
    figures |= {
        "alone: imports of torch and librosa s": imports,
        "alone: T1 less those imports and one further song s": round(
            figures["alone: first song s (T1)"] - imports - per_song, 3
        ),
    }
    return figures


@contextlib.contextmanager
def _server(command: list[str], env: dict[str, str], log: Path, *, timeout_s: float = 300) -> Iterator[None]:
    """``mvemo serve`` (``command``) running in ``env`` while the block runs, from the moment its socket listens,
    logging into ``log``; stopped after it."""
    path = socket_path(env)
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stderr=output)
        try:
            deadline = time.monotonic() + timeout_s
            while not listening(path):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`mvemo serve` did not start within {timeout_s} s: {log.read_text()[-500:]}")
                time.sleep(0.1)
            yield
        finally:
            process.terminate()
            process.wait(30)


def weights_missing(folder: Path, name: str | None, weights_dir: str | None) -> list[str]:
    """The weight files the saved model's nets read that are not found."""
    from mvemo.pipeline.predict.inputs import weight_files

    saved = load_fusion_model(folder)
    return sorted(
        file for file in weight_files(saved, name or saved.default_model) if find_weights(file, weights_dir) is None
    )


def song_files(folder: Path, n: int) -> tuple[list[Path], str]:
    """``n`` songs: 4q-dev's first, else generated 30-s ones written as wav files; and where they came from."""
    found = sorted(FOURQ.glob("Q*/*.ogg"))[:n]
    if len(found) == n:
        return found, f"4q-dev's first {n} songs"
    songs = []
    for i in range(n):
        cues = AudioCues(
            tempo_bpm=90.0 + 5 * i, minor=bool(i % 2), loudness=0.5, brightness=0.5, regularity=0.8, dissonance=0.2
        )
        songs.append(folder / f"song{i}.wav")
        sf.write(songs[-1], synthesize_audio(cues, 30.0, 22050, np.random.default_rng(i)), 22050)
    return songs, f"{n} generated 30-s songs"


def _run(command: list[str], env: dict[str, str], *, served: bool) -> None:
    """Run ``command``, which must end well and run where ``served`` says (its ``--verbose`` line)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... exited {done.returncode}: {done.stderr[-500:]}")
    where = done.stderr.splitlines()[0] if done.stderr else ""
    if where.startswith("mvemo predict: runs served by") != served:
        raise RuntimeError(f"{' '.join(command[:3])} ... ran where it was not to: {where}")


def _imports(env: dict[str, str]) -> None:
    """A fresh Python that imports torch and librosa and runs librosa's first STFT (``IMPORTS``)."""
    subprocess.run([sys.executable, "-c", IMPORTS], check=True, env=env)
