"""``mvemo bench short-clips``: stage one on clips shorter than its window, against clips that fill it.

A clip shorter than the analysis window (30 s by default) is computed and embedded from its sound alone: its
spectrograms' frames past the sound are the window's zero padding, its LLDs its own frames, and the music encoders run
the patches of its sound (``extract.nets.musicnn``). So its cost follows its sound. The bench runs stage one
(``SETS`` and the music encoders) in one process over ``n_clips`` 6-s clips (musemo's first, where ``../shared`` lies
beside the clone; else generated ones), over the same clips looped to fill the window (30 s of sound: the work every
clip cost before, whatever its length), and over the same clips followed by 24 s of digital silence in the file
(which the encoders now leave out too: that run's nets cost the short clips' own), each into a fresh cache, the runs
taking turns; it reports each run's seconds (the faster of its two) and the short clips' over each. The encoders run
with their published weights where found, else from seeded random weights (the same work).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mvemo.extract.decode.audio import AudioWindow, decode_audio
from mvemo.extract.nets import INIT, NET_GROUPS, pretrained_file
from mvemo.extract.stage import extract_features
from mvemo.extract.weights.registry import find_weights
from mvemo.manifests.schema import Clip, Manifest
from mvemo.manifests.synthetic import AudioCues, synthesize_audio
from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of_each

SETS = ("logmel", "lld", "descriptors")
NETS = ("encoders",)
SHORT_S, WINDOW_S = 6.0, 30.0
MUSEMO = SHARED_SAMPLE.parent / "musemo"


def bench_short_clips(
    *, n_clips: int = 24, repeat: int = 2, weights_dir: str | None = None, folder: str | None = None
) -> dict[str, Any]:
    """The figures of ``mvemo bench short-clips --json``."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        manifests, source = clips(Path(tmp), n_clips)
        options = net_options(weights_dir)
        runs = dict.fromkeys(manifests, 0)

        def run(manifest: Manifest, name: str) -> None:
            runs[name] += 1
            extract_features(
                manifest,
                Path(tmp) / f"{name}-{runs[name]}",
                features=SETS,
                nets=NETS,
                net_options=options,
                weights_dir=weights_dir,
            )

        seconds = best_of_each({name: functools.partial(run, manifests[name], name) for name in manifests}, repeat)
    return {
        "clips": n_clips,
        "source": source,
        "sets": [*SETS, *NETS],
        "weights": "published" if not options else "seeded random (their files not found)",
        **{f"{name} s": round(seconds[name], 2) for name in manifests},
        "short over looped (goal <= 0.33)": round(seconds["short"] / seconds["looped"], 3),
        "short over padded": round(seconds["short"] / seconds["padded"], 3),
    }


def clips(folder: Path, n_clips: int) -> tuple[dict[str, Manifest], str]:
    """The manifests of the short clips, of the same looped to the window's length and of the same followed by
    digital silence, as wav files each (so that all decode alike), with folds for the nets; and where the sound came
    from."""
    sources = sorted(MUSEMO.glob("*/*.ogg"))[:n_clips]
    rng = np.random.default_rng(0)
    made: dict[str, list[Clip]] = {"short": [], "looped": [], "padded": []}
    for i in range(n_clips):
        if i < len(sources):
            decoded = decode_audio(sources[i], AudioWindow(duration_s=SHORT_S))
            y, sr = decoded.y, decoded.sr
        else:
            cues = AudioCues(
                tempo_bpm=100.0 + i, minor=bool(i % 2), loudness=0.5, brightness=0.5, regularity=0.8, dissonance=0.2
            )
            y, sr = synthesize_audio(cues, SHORT_S, 44100, rng), 44100
        window = round(WINDOW_S * sr)
        for name, audio in (
            ("short", y),
            ("looped", np.resize(y, window)),
            ("padded", np.pad(y, (0, window - y.size))),
        ):
            path = folder / name / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, audio, sr)
            made[name].append(Clip(f"c{i}", "x", audio=path, fold=i % 2))
    source = f"musemo's first {len(sources)}" if sources else "generated"
    return {name: Manifest(("x",), tuple(clips)) for name, clips in made.items()}, source


def net_options(weights_dir: str | None) -> dict[str, dict[str, str]]:
    """The encoders from seeded random weights where their published files are not found here (the same work)."""
    encoders = NET_GROUPS["encoders"]
    if all(find_weights(str(pretrained_file(net)), weights_dir) is not None for net in encoders):
        return {}
    return {net: {INIT: "random"} for net in encoders}
