"""``mvemo bench catalogue``: a ready-made model's clips per second over many files, ``predict`` against ``extract``.

For each ready-made model whose weights are found, over the first clips of the media it is for (4q-dev's songs for
the music models, mved-sample's videos for the video model, where ``../shared`` lies beside the clone): stage one
computing the model's feature sets and nets (``extract_features``, the recipe's config) into a new cache, and
``predict`` labelling the same clips (``Predictor.predict``), each on a fresh pool of the same worker processes, taking
turns, the fastest of ``repeat`` runs (two; one at the smallest size) each. Both run in this process, so the figures
are throughput, not start-up (``bench predict`` times that). ``4q-moods`` reads the sets of ``4q-quadrants`` and is
not run again.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from pathlib import Path
from typing import Any

from mvemo.extract.stage import extract_features
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.schema import Manifest
from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of_each
from mvemo.pipeline.bench.predict import weights_missing
from mvemo.pipeline.config import feature_configs, window_config
from mvemo.pipeline.executors import ProcessExecutor
from mvemo.pipeline.predict.predictor import Predictor
from mvemo.pipeline.readymade.recipes import recipe, shipped_folder

# each model over the media it labels in a catalogue: whole songs, or music videos
MEDIA = {"4q-quadrants": "4q-dev", "valence-arousal": "4q-dev", "mved-classes": "mved-sample"}


def bench_catalogue(
    *,
    n_clips: int = 16,
    workers: int = 2,
    repeat: int = 2,
    weights_dir: str | None = None,
    folder: str | None = None,
) -> dict[str, Any]:
    """The figures of ``mvemo bench catalogue --json``: for each model, what it was run on, or why it was skipped."""
    figures: dict[str, Any] = {}
    for name, data in MEDIA.items():
        missing = weights_missing(shipped_folder(name), None, weights_dir)
        source = SHARED_SAMPLE.parent / data
        if missing:
            figures[name] = {"skipped": f"its weights are not found: {', '.join(missing)} (`mvemo weights fetch FILE`)"}
        elif not source.is_dir():
            figures[name] = {"skipped": f"{source} is not found (../shared beside the clone)"}
        else:
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                manifest = first_clips(source, Path(tmp) / "media", n_clips)
                figures[name] = {"clips": f"{len(manifest)} of {data}"}
                predictor = Predictor(shipped_folder(name), weights_dir=weights_dir)
                figures[name] |= compare(
                    recipe(name).config, predictor, manifest, workers, repeat, weights_dir, Path(tmp)
                )
    return figures


def compare(
    config: dict[str, dict[str, Any]],
    predictor: Predictor,
    manifest: Manifest,
    workers: int,
    repeat: int,
    weights_dir: str | None,
    tmp: Path,
) -> dict[str, Any]:
    """Stage one computing the sets and nets ``predictor``'s model reads (with ``config``, a recipe's tables) against
    ``predictor`` labelling ``manifest``'s clips, each the fastest of ``repeat`` runs: their clips per second, new
    caches in ``tmp``."""
    caches = (tmp / f"cache{i}" for i in itertools.count())

    sets = predictor.saved.feature_sets(predictor.model)  # what the model reads, not all the recipe computed
    nets = [name.split("/")[1] for name in sets if name.startswith("emb/")]
    features = [name for name in sets if not name.startswith("emb/")]

    def extract() -> None:
        with ProcessExecutor(workers) as executor:
            summary = extract_features(
                manifest,
                next(caches),
                features=features,
                nets=nets,
                configs=feature_configs(config),
                windows=window_config(config),
                weights_dir=weights_dir,
                executor=executor,
            )
        if summary.failed:
            raise RuntimeError(f"stage one failed on some clips: {summary}")

    def predict() -> None:
        with ProcessExecutor(workers) as executor:
            results = list(predictor.predict(manifest.clips, executor))
        if failed := [r["clip_id"] for r in results if "error" in r]:
            raise RuntimeError(f"predict failed on {failed[:3]}")

    seconds = best_of_each({"extract": extract, "predict": predict}, repeat)
    per_s = {step: len(manifest) / s for step, s in seconds.items()}
    return {
        "workers": workers,
        "extract clips/s": round(per_s["extract"], 3),
        "predict clips/s": round(per_s["predict"], 3),
        "predict over extract (goal >= 0.9)": round(per_s["predict"] / per_s["extract"], 2),
        "predict clips/s per worker": round(per_s["predict"] / workers, 3),
    }


def first_clips(source: Path, media: Path, n_clips: int) -> Manifest:
    """The first ``n_clips`` media files of ``source``'s class folders, taken from each class in turn (linked under
    ``media``), as a manifest in two folds."""
    by_class = [
        sorted(f for f in folder.iterdir() if f.is_file()) for folder in sorted(source.iterdir()) if folder.is_dir()
    ]
    taken = [f for f in itertools.chain(*itertools.zip_longest(*by_class)) if f is not None][:n_clips]
    for file in taken:
        link = media / file.parent.name / file.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(file.absolute())
    found = scan_tree(media)  # the folds only let stage one run its nets (none is fine-tuned): any two will do
    return dataclasses.replace(
        found, clips=tuple(dataclasses.replace(c, fold=i % 2) for i, c in enumerate(found.clips))
    )
