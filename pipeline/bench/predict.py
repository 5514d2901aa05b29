"""``mvemo bench predict``: what a user waits for one song's label against what each further song costs.

``mvemo predict`` is run as a user runs it, in a process of its own: over one song (``T1``: the start-up, imports,
weights and the song) and over nine in one call (``T9``); the second's songs after the first cost ``(T9 - T1) / 8``
each, and the first over that says how much of a one-song answer is start-up (goal: at most 2). The runs take turns,
each the faster of two. The songs are 4q-dev's where ``../shared`` lies beside the clone, else generated 30-s ones.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mvemo.extract.nets import pretrained_file
from mvemo.extract.weights.registry import find_weights
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests.synthetic import AudioCues, synthesize_audio
from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of_each
from mvemo.pipeline.readymade.recipes import shipped_folder

MVEMO = Path(sys.executable).parent / "mvemo"
FOURQ = SHARED_SAMPLE.parent / "4q-dev"
SONGS = 9


def bench_predict(
    *, model: str = "4q-quadrants", weights_dir: str | None = None, folder: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """The figures of ``mvemo bench predict --json``: ``model`` a ready-made model's name or a saved model's folder
    (``name``: the model of that folder to use); skipped where the nets' weights are not found."""
    saved_folder = Path(model) if Path(model).is_dir() else shipped_folder(model)
    missing = weights_missing(saved_folder, name, weights_dir)
    if missing:
        return {"skipped": f"the weights of {model} are not found: {', '.join(missing)} (`mvemo weights fetch FILE`)"}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        songs, source = song_files(Path(tmp))
        command = [str(MVEMO), "predict", *([str(model)] if Path(model).is_dir() else ["--model", model])]
        command += [*(["--model", name] if name else []), *(["--weights-dir", weights_dir] if weights_dir else []), "--json"]
        runs = {"1": songs[:1], "9": songs}
        seconds = best_of_each({n: functools.partial(_run, [*command, *map(str, files)]) for n, files in runs.items()}, 2)
    per_song = (seconds["9"] - seconds["1"]) / (SONGS - 1)
    return {
        "model": str(model) + (f" ({name})" if name else ""),
        "songs": source,
        "first song s (T1)": round(seconds["1"], 3),
        "nine songs s (T9)": round(seconds["9"], 3),
        "each further song s ((T9 - T1) / 8)": round(per_song, 4),
        "first over each further (goal <= 2)": round(seconds["1"] / per_song, 2) if per_song > 0 else None,
    }


def weights_missing(folder: Path, name: str | None, weights_dir: str | None) -> list[str]:
    """The weight files the saved model's nets read that are not found."""
    saved = load_fusion_model(folder)
    sets = saved.feature_sets(name or saved.default_model)
    files = {file for set_name in sets if set_name.startswith("emb/") and (file := pretrained_file(set_name.split("/")[1]))}
    return sorted(file for file in files if find_weights(file, weights_dir) is None)


def song_files(folder: Path) -> tuple[list[Path], str]:
    """``SONGS`` songs: 4q-dev's first, else generated 30-s ones written as wav files; and where they came from."""
    found = sorted(FOURQ.glob("Q*/*.ogg"))[:SONGS]
    if len(found) == SONGS:
        return found, f"4q-dev's first {SONGS} songs"
    songs = []
    for i in range(SONGS):
        cues = AudioCues(tempo_bpm=90.0 + 5 * i, minor=bool(i % 2), loudness=0.5, brightness=0.5, regularity=0.8, dissonance=0.2)
        songs.append(folder / f"song{i}.wav")
        sf.write(songs[-1], synthesize_audio(cues, 30.0, 22050, np.random.default_rng(i)), 22050)
    return songs, f"{SONGS} generated 30-s songs"


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... exited {done.returncode}: {done.stderr[-500:]}")
