"""``mvemo predict``: label new files with a saved fusion model, computing exactly the features it was trained on.

Each clip is one job on the executor (serial, local processes or a Dask cluster),
so a catalogue of new videos fans out like stage one; results stream into one CSV.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvemo.cache.fingerprint import combined_digest, file_sha256, media_hash
from mvemo.cache.layout import ABSENT
from mvemo.extract.embed import build_net
from mvemo.extract.nets import INIT, net_options
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.run import FeatureConfigs, compute_clip, modality
from mvemo.extract.train import kinds_of
from mvemo.extract.units import load_checkpoint
from mvemo.extract.video import VIDEO_FEATURES
from mvemo.fuse.models import LLDSTATS, summarize_lld
from mvemo.fuse.saved import SavedFusionModel, load_fusion_model
from mvemo.manifests.errors import ConfigError, MediaError, MvemoError
from mvemo.manifests.schema import Clip


def choose_model(saved: SavedFusionModel, name: str | None) -> str:
    """``name``, or the saved model's default: its integrated model where it was saved, else the first model
    listed (``fuse.run.fuse_cache``)."""
    models = saved.document["models"]
    if name is not None:
        if name not in models:
            raise ConfigError(f"--model {name!r}: the saved model holds {sorted(models)}")
        return name
    return str(saved.document["default_model"])


def model_inputs(saved: SavedFusionModel, name: str, clip: Clip, weights_dir: str | None = None) -> dict[str, np.ndarray]:
    """Every input the model reads, computed from the clip's media with the saved configs (fingerprints checked);
    each feature set once, however many nets read it. Pretrained weights are looked for as ``extract`` does
    (``weights_dir``, ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights``)."""
    configs, fingerprints = model_configs(saved, name)
    arrays = ClipFeatures(clip).get(configs, fingerprints)  # one decode of the clip for every set the model reads
    return inputs_from_sets(saved, name, arrays, weights_dir)


def model_configs(saved: SavedFusionModel, name: str) -> tuple[dict[str, dict], dict[str, str]]:
    """The config and fingerprint of every cached feature set a saved model reads, a net's inputs included."""
    configs: dict[str, dict] = {}
    fingerprints: dict[str, str] = {}
    for set_name, described in saved.document["models"][name]["feature_sets"].items():
        if set_name.startswith("emb/"):  # a net's embedding: the cached sets it was computed from
            configs |= described["input_configs"]
            fingerprints |= described["config"]["inputs"]
        else:
            configs[set_name], fingerprints[set_name] = described["config"], described["fingerprint"]
    return configs, fingerprints


def inputs_from_sets(
    saved: SavedFusionModel, name: str, arrays: dict[str, np.ndarray], weights_dir: str | None = None
) -> dict[str, np.ndarray]:
    """The model's inputs (one row each) from one clip's feature sets: vector sets as they are, LLD statistics,
    and each net's embedding of its input sets."""
    model = saved.document["models"][name]
    inputs: dict[str, np.ndarray] = {}
    for input_name, (set_name, described) in zip(model["inputs"], model["feature_sets"].items()):
        if not set_name.startswith("emb/"):
            value = arrays[set_name]
            inputs[input_name] = summarize_lld(value[None], np.array([len(value)])) if input_name == LLDSTATS else value[None]
        else:
            described_json = json.dumps(described, sort_keys=True)
            net = _saved_net(input_name, len(saved.classes), described_json, saved.folder, weights_dir)
            with torch.no_grad():
                inputs[input_name] = net.embed(*net.prepare(*(arrays[k][None] for k in kinds_of(net)))).numpy()
    return inputs


class ClipFeatures:
    """The feature sets of one clip, computed by stage one's own per-clip code, each once per (name, fingerprint)."""

    def __init__(self, clip: Clip) -> None:
        self.clip = clip
        self.computed: dict[tuple[str, str], np.ndarray] = {}

    def get(self, configs: dict[str, dict], fingerprints: dict[str, str]) -> dict[str, np.ndarray]:
        """The sets named in ``configs``, computed with those saved configs, whose fingerprints must match this version's."""
        missing = {name: config for name, config in configs.items() if (name, fingerprints[name]) not in self.computed}
        if missing:
            # one frame sampling gives every video set: compute them all, so a second net's set needs no decode
            names = (*missing, *(v for v in VIDEO_FEATURES if v not in missing and set(missing) & set(VIDEO_FEATURES)))
            computed_as = fingerprints_of(missing, names)
            check_fingerprints(computed_as, fingerprints, missing)
            for name, value in compute_clip(self.clip, names, FeatureConfigs.from_records(missing)).items():
                if value is ABSENT:
                    raise MediaError(
                        f"clip {self.clip.clip_id!r}: the model reads {modality(name)} and the clip has none;"
                        f" give the clip a file with {modality(name)}, or choose a --model that does not read it"
                    )
                if isinstance(value, str):
                    raise MediaError(value)
                self.computed[(name, computed_as[name])] = value
        return {name: self.computed[(name, fingerprints[name])] for name in configs}


def fingerprints_of(configs: dict[str, dict], names: Iterable[str] | None = None) -> dict[str, str]:
    """The fingerprints this version gives the feature sets ``names`` (default: those of ``configs``) computed with
    ``configs`` (saved records, by set name)."""
    specs = FeatureConfigs.from_records(configs).specs(configs if names is None else names)
    return {spec.name: spec.fingerprint for spec in specs}


def check_fingerprints(computed: dict[str, str], saved: dict[str, str], names: Iterable[str]) -> None:
    """Raise ``ConfigError`` where a set's saved fingerprint is not the one this version computes."""
    for name in names:
        if computed[name] != saved[name]:
            raise ConfigError(
                f"the saved model's {name} config has fingerprint {saved[name][:12]}, this version computes"
                f" {computed[name][:12]}; retrain it with `mvemo fuse` on a cache from this version"
            )


@functools.lru_cache(maxsize=8)
def _saved_net(net_name: str, num_classes: int, described_json: str, folder: Path, weights_dir: str | None) -> EmotionNet:
    """The saved net rebuilt once per process: its pretrained weights found as extract finds them (the same
    sha256, else an error), the same seeded random init, or the fine-tuned checkpoint saved with the model
    (``described_json``: its feature set in the model's document)."""
    described = json.loads(described_json)
    config = described["config"]
    options = {k: config[k] for k in net_options(net_name) if k in config}
    if "checkpoint" in described or not described["weights_sha256"]:  # a checkpoint holds every weight
        options[INIT] = "random"
    net, _ = build_net(net_name, num_classes, weights_dir=weights_dir, seed=config["seed"], options=options)
    if "checkpoint" in described:
        load_checkpoint(net, described["checkpoint"], folder)
    elif net.weights_sha256 != described["weights_sha256"]:
        raise ConfigError(
            f"{net_name} was computed with weights of sha256 {described['weights_sha256'][:12]}, the file found has"
            f" {net.weights_sha256[:12]}; give --weights-dir the folder of the weights the model was trained with"
        )
    return net.eval()


def file_clip(file: str) -> Clip:
    """A file named on the command line: one clip whose video and audio are that file, its path for id."""
    path = Path(file).absolute()  # as a manifest's paths: a worker may run in another folder
    return Clip(file, "", video=path, audio=path)


class Predictor:
    """A saved fusion model and the one of its models that labels new clips."""

    def __init__(
        self, model_dir: str | os.PathLike[str], model: str | None = None, weights_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.saved = load_fusion_model(Path(model_dir).absolute())
        self.model = choose_model(self.saved, model)
        self.weights_dir = None if weights_dir is None else str(Path(weights_dir).absolute())  # workers run elsewhere

    @property
    def classes(self) -> list[str]:
        return self.saved.classes

    def predict(self, clips: Iterable[Clip], executor: Any = None) -> Iterator[dict[str, Any]]:
        """One result per clip, in order: ``{"clip_id", "file", "model", "label", "probabilities"}`` or
        ``{"clip_id", "file", "error"}``. A bad clip, even one that kills its worker, never stops the rest;
        a ``ConfigError`` (the saved model does not fit this version) stops the run."""
        job = functools.partial(predict_clip, self.saved, self.model, weights_dir=self.weights_dir)
        return each_clip(job, clips, executor)


def each_clip(job: Any, clips: Iterable[Clip], executor: Any) -> Iterator[dict[str, Any]]:
    """``job`` of every clip on the executor, results in order; a lost job is the clip's failure."""
    clips = list(clips)
    mapper = map if executor is None else executor.map
    # results first: the executor's stream is read to its end, and ends with the clips
    for result, clip in zip(mapper(job, clips), clips, strict=True):
        if isinstance(result, ConfigError):
            raise result
        if isinstance(result, BaseException):  # the executor lost the job (a worker died on this clip)
            result = failed_result(clip, f"clip {clip.clip_id!r}: its worker died ({type(result).__name__}: {result})")
        yield result


def seen_in_training(saved: SavedFusionModel, clip: Clip) -> bool:
    """Whether the clip's media are those of a clip the model trained on: its probabilities then test nothing.

    A file given alone (its video and audio the same file) may have been a training clip's video and audio,
    its audio alone or its video alone."""
    known = set(saved.document.get("training_media_sha256", ()))
    if not known:
        return False
    if clip.video is None or clip.video != clip.audio:
        return media_hash([clip.video, clip.audio]) in known
    digest = file_sha256(clip.video)  # read once for every way a training clip may have used the file
    uses: list[list[str | None]] = [[digest, digest], [None, digest], [digest, None]]
    return any(combined_digest(pair) in known for pair in uses)


def predict_clip(saved: SavedFusionModel, name: str, clip: Clip, *, weights_dir: str | None = None) -> dict[str, Any]:
    """The model's label for one clip (a job that runs on any executor's worker)."""

    def label() -> dict[str, Any]:
        proba = saved.predict_proba(name, model_inputs(saved, name, clip, weights_dir))[0]
        return {
            "clip_id": clip.clip_id,
            "file": _file_of(clip),
            "model": name,
            "label": saved.classes[int(np.argmax(proba))],
            "probabilities": {c: float(p) for c, p in zip(saved.classes, proba)},
            "in_training": seen_in_training(saved, clip),
        }

    return clip_result(clip, label)


def clip_result(clip: Clip, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, or the clip's failure: a bad clip never stops a run; a ``ConfigError`` (the saved model
    does not fit this version) does."""
    try:
        return compute()
    except ConfigError:
        raise
    except MvemoError as err:
        return failed_result(clip, str(err))
    except Exception as err:  # a decoder or library fault on one clip must not stop the run
        return failed_result(clip, f"clip {clip.clip_id!r}: {type(err).__name__}: {err}")


def _file_of(clip: Clip) -> str:
    return str(clip.video or clip.audio)


def failed_result(clip: Clip, reason: str) -> dict[str, Any]:
    return {"clip_id": clip.clip_id, "file": _file_of(clip), "error": reason}


def write_results_csv(
    results: Iterable[dict[str, Any]], path: str | os.PathLike[str], classes: list[str], labels: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Stream ``results`` into one CSV (a row per clip: id, file, predicted label, a probability per class, or the
    error; the manifest's label where it gives one), passing each result on. Rows go to ``PATH.partial``, which is
    renamed to ``PATH`` once every clip is in, so an interrupted run leaves its finished rows and no complete-looking file.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as f:
        columns = ["clip_id", "file", *(["manifest_label"] if labels else []), "model", "predicted", *(f"p_{c}" for c in classes), "error"]  # fmt: skip
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for result in results:
            row = {"clip_id": result["clip_id"], "file": result["file"], "error": result.get("error", "")}
            if labels:
                row["manifest_label"] = labels.get(result["clip_id"], "")
            if "label" in result:
                row |= {"model": result["model"], "predicted": result["label"]}
                row |= {f"p_{c}": f"{p:.6f}" for c, p in result["probabilities"].items()}
            writer.writerow(row)
            f.flush()
            yield result
    os.replace(partial, path)
