"""``mvemo bench predict``: what a user waits for one song's label against what each further song costs.

``mvemo predict`` is run as a user runs it, in a process of its own: over one song (``T1``: the start-up, imports,
weights and the song) and over nine in one call (``T9``); the second's songs after the first cost ``(T9 - T1) / 8``
each, and the first over that says how much of a one-song answer is start-up (goal: at most 2). Both runs again with
``mvemo serve`` holding the model (started before them, in a runtime folder of the bench's own): each call is then a
fork of a process that loaded it. The runs take turns, each the faster of two. The songs are 4q-dev's where
``../shared`` lies beside the clone, else generated 30-s ones.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mvemo.extract.weights.registry import find_weights
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests.synthetic import AudioCues, synthesize_audio
from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of_each
from mvemo.pipeline.readymade.recipes import shipped_folder
from mvemo.pipeline.server import NO_SERVE

MVEMO = Path(sys.executable).parent / "mvemo"
FOURQ = SHARED_SAMPLE.parent / "4q-dev"
SONGS = 9
REPEAT = 2  # runs of each, the faster kept


def bench_predict(
    *, model: str = "4q-quadrants", weights_dir: str | None = None, folder: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """The figures of ``mvemo bench predict --json``: ``model`` a ready-made model's name or a saved model's folder
    (``name``: the model of that folder to use); skipped where the nets' weights are not found."""
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
        songs, source = song_files(Path(tmp))
        command = [str(MVEMO), "predict", *which, *(["--model", name] if name else []), *weights, "--json"]
        envs = {"alone": {**os.environ, NO_SERVE: "1"}, "served": {**without(NO_SERVE), "XDG_RUNTIME_DIR": runtime}}
        with serving([str(MVEMO), "serve", "--model", str(model), *weights], envs["served"]) as server:
            runs = {
                f"{how} {n}": functools.partial(_run, [*command, *map(str, songs[:n])], env)
                for how, env in envs.items()
                for n in (1, SONGS)
            }
            seconds = best_of_each(runs, REPEAT)
        if server.commands("predict") != 2 * REPEAT:
            raise RuntimeError(f"the served runs did not all reach `mvemo serve`: it logged {server.log[-500:]!r}")
    figures: dict[str, Any] = {"model": str(model) + (f" ({name})" if name else ""), "songs": source}
    for how in envs:
        first, nine = round(seconds[f"{how} 1"], 3), round(seconds[f"{how} {SONGS}"], 3)  # the ratio of what it prints
        per_song = (nine - first) / (SONGS - 1)
        figures |= {
            f"{how}: first song s (T1)": first,
            f"{how}: nine songs s (T9)": nine,
            f"{how}: each further song s ((T9 - T1) / 8)": round(per_song, 4),
            f"{how}: first over each further (goal <= 2)": round(first / per_song, 2) if per_song > 0 else None,
        }
    return figures


@dataclass
class Server:
    """A ``mvemo serve`` process and, once it stopped, what it logged after it started listening."""

    process: subprocess.Popen[bytes]
    log: str = ""

    def commands(self, name: str) -> int:
        """How many commands ``name`` it ran to their end."""
        return sum(line.startswith(f"mvemo serve: {name} ") and ": exit " in line for line in self.log.splitlines())


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], *, timeout_s: float = 300) -> Iterator[Server]:
    """``mvemo serve`` (``command``) running in ``env`` while the block runs, from the moment it listens; stopped
    (SIGTERM) after it, its log then read."""
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    assert process.stderr is not None
    said = b""
    deadline = time.monotonic() + timeout_s
    while b"listening at" not in said:
        waiting = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))[0]
        part = os.read(process.stderr.fileno(), 65536) if waiting else b""
        if not part:  # timed out, or the server ended
            process.kill()
            process.wait()
            raise RuntimeError(f"{' '.join(command[:3])} ... did not start within {timeout_s} s: {said[-500:]!r}")
        said += part
    server = Server(process)
    try:
        yield server
    finally:
        process.terminate()
        try:
            server.log = process.communicate(timeout=30)[1].decode(errors="replace")
        except subprocess.TimeoutExpired:
            process.kill()
            server.log = process.communicate()[1].decode(errors="replace")


def without(name: str) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != name}


def weights_missing(folder: Path, name: str | None, weights_dir: str | None) -> list[str]:
    """The weight files the saved model's nets read that are not found."""
    from mvemo.pipeline.predict.inputs import weight_files

    saved = load_fusion_model(folder)
    return sorted(
        file for file in weight_files(saved, name or saved.default_model) if find_weights(file, weights_dir) is None
    )


def song_files(folder: Path) -> tuple[list[Path], str]:
    """``SONGS`` songs: 4q-dev's first, else generated 30-s ones written as wav files; and where they came from."""
    found = sorted(FOURQ.glob("Q*/*.ogg"))[:SONGS]
    if len(found) == SONGS:
        return found, f"4q-dev's first {SONGS} songs"
    songs = []
    for i in range(SONGS):
        cues = AudioCues(
            tempo_bpm=90.0 + 5 * i, minor=bool(i % 2), loudness=0.5, brightness=0.5, regularity=0.8, dissonance=0.2
        )
        songs.append(folder / f"song{i}.wav")
        sf.write(songs[-1], synthesize_audio(cues, 30.0, 22050, np.random.default_rng(i)), 22050)
    return songs, f"{SONGS} generated 30-s songs"


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... exited {done.returncode}: {done.stderr[-500:]}")
