"""A saved model is checked when it is opened: each damaged or hand-edited field of model.json or heads.h5 stops
`mvemo predict` with exit 2 and one line naming the file and the problem, before any clip is read."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from mvemo.cache.h5file import seal
from mvemo.pipeline.cli.main import cli
from tests.built import built_once
from tests.conftest import write_tiny
from tests.faults.test_damaged_files import DAMAGES, damage
from tests.pipeline import helpers
from tests.pipeline.helpers import synthetic_manifest

MODELS = "descriptors,lldstats,twodcnn,late(descriptors,lldstats),stack(descriptors,twodcnn)"


@pytest.fixture(scope="session")
def saved() -> Path:
    return built_once("saved-model", save_a_model, code=[__file__, helpers.__file__]) / "fused" / "model"


def save_a_model(root: Path) -> None:
    manifest = synthetic_manifest(root, ("Exciting", "Sad", "Tension"), clips_per_class=4, duration_s=4.0)
    (root / "c.toml").write_text("[audio]\nduration_s = 4.0\n")
    runner = CliRunner()
    extract = ["extract", str(manifest), "--cache", str(root / "cache"), "--config", str(root / "c.toml")]
    result = runner.invoke(
        cli, [*extract, "--features", "lld,descriptors", "--nets", "twodcnn", "--random-init", "twodcnn"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["fuse", str(root / "cache"), "--out", str(root / "fused"), "--models", MODELS])
    assert result.exit_code == 0, result.output


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_tiny(tmp_path / "song.wav", video=False)


def edited(saved: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    copy = folder / "model"
    shutil.copytree(saved, copy)
    document = json.loads((copy / "model.json").read_text())
    edit(document)
    (copy / "model.json").write_text(json.dumps(document))
    return copy


def first_features(record: dict) -> dict:
    """The first feature-level node of a model's tree."""
    if record["kind"] == "features":
        return record
    return first_features(record["chosen"] if record["kind"] == "best" else record["members"][0])


def rename_input(document: dict, old: str, new: str, old_set: str, new_set: str) -> None:
    model = document["models"][old]
    model["inputs"] = [new]
    model["feature_sets"] = {new_set: model["feature_sets"][old_set]}
    first_features(model["model"])["inputs"] = [new]
    document["models"][new] = document["models"].pop(old)
    document["default_model"] = new


EDITS = {
    "a head not in heads.h5": (
        lambda d: first_features(d["models"]["descriptors"]["model"]).update(head="head99"),
        r"models\['descriptors'\]\.model\.head 'head99' is not in heads\.h5",
    ),
    "an unknown input": (
        lambda d: rename_input(d, "descriptors", "spectra", "descriptors", "spectra"),
        r"models\['spectra'\]: feature sets \['spectra'\]: this version computes only",
    ),
    "an unknown net": (
        lambda d: rename_input(d, "twodcnn", "fournet", "emb/twodcnn/all", "emb/fournet/all"),
        r"models\['fournet'\]: net 'fournet': not a known net",
    ),
    "fewer classes than the heads output": (
        lambda d: d.update(classes=d["classes"][:2]),
        r"\.head '\w+' outputs class 2, and model\.json lists 2 classes",
    ),
    "a feature set without its fingerprint": (
        lambda d: d["models"]["lldstats"]["feature_sets"]["lld"].pop("fingerprint"),
        r"models\['lldstats'\]\.feature_sets\['lld'\]\.fingerprint is not a string",
    ),
    "a default that is no model": (
        lambda d: d.update(default_model="integrated"),
        r"default_model is not one of the models",
    ),
    "inputs its heads do not read": (
        lambda d: d["models"]["descriptors"]["inputs"].append("lldstats"),
        r"models\['descriptors'\]\.feature_sets is not one feature set per input",
    ),
    "a late fusion with a weight too few": (
        lambda d: d["models"]["late(descriptors,lldstats)"]["model"]["weights"].pop(),
        r"\.model\.weights is not 2 weights >= 0, one per member",
    ),
    "a stack's meta-head of the wrong width": (
        lambda d: d["models"]["stack(descriptors,twodcnn)"]["model"].update(
            meta=first_features(d["models"]["descriptors"]["model"])["head"]
        ),
        r"\.model\.meta '\w+' reads \d+ columns, its members give 6",
    ),
    "a config edited out of shape": (
        lambda d: d["models"]["lldstats"]["feature_sets"]["lld"]["config"].update(n_mfcc="many"),
        r"models\['lldstats'\]: ",
    ),
    "a net without its seed": (
        lambda d: d["models"]["twodcnn"]["feature_sets"]["emb/twodcnn/all"]["config"].pop("seed"),
        r"models\['twodcnn'\]: emb/twodcnn/all: its config's seed None is not an integer",
    ),
    "another format": (lambda d: d.update(format=1), r"saved by another version of mvemo \(model format 1"),
    "a checkpoint at an absolute path": (
        lambda d: d["models"]["twodcnn"]["feature_sets"]["emb/twodcnn/all"].update(
            checkpoint={"path": "/etc/hostname", "sha256": "0" * 64}
        ),
        r"emb/twodcnn/all'\]\.checkpoint\.path '/etc/hostname' is not in the model's folder",
    ),
    "a checkpoint up and out of the folder": (
        lambda d: d["models"]["twodcnn"]["feature_sets"]["emb/twodcnn/all"].update(
            checkpoint={"path": "../../../../../../../../etc/hostname", "sha256": "0" * 64}
        ),
        r"checkpoint\.path '\.\./(\.\./)*etc/hostname' is not in the model's folder",
    ),
}


def predict(model: Path, clip: Path):
    return CliRunner().invoke(cli, ["predict", str(model), str(clip)], prog_name="mvemo")


@pytest.mark.heavy
def test_an_intact_saved_model_opens_and_labels_a_clip(saved: Path, clip: Path) -> None:
    result = predict(saved, clip)
    assert result.exit_code == 0, result.output
    assert "song.wav" in result.stdout


@pytest.mark.parametrize("name", list(EDITS))
def test_each_damaged_field_is_one_line_and_exit_2_before_any_clip(
    saved: Path, clip: Path, tmp_path: Path, name: str
) -> None:
    edit, message = EDITS[name]
    model = edited(saved, tmp_path, edit)
    result = predict(model, clip)
    assert result.exit_code == 2, (name, result.output)
    assert result.stdout == "", "no clip was labelled or marked failed"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mvemo: error: {model / 'model.json'}"), result.stderr
    assert re.search(message, lines[0]), lines[0]


def test_broken_files_are_one_line_too(saved: Path, clip: Path, tmp_path: Path) -> None:
    model = edited(saved, tmp_path, lambda d: None)
    (model / "model.json").write_text('{"format": 2, "classes": [')
    result = predict(model, clip)
    assert result.exit_code == 2 and "model.json: not JSON" in result.stderr and "Traceback" not in result.output
    model = edited(saved, tmp_path / "h", lambda d: None)
    with h5py.File(model / "heads.h5", "r+") as f:
        del f[next(iter(f))]["bias"]
    seal(model / "heads.h5")  # an edit on purpose, sealed again: the checks behind the seal are what is tested
    result = predict(model, clip)
    assert result.exit_code == 2 and "lacks ['bias']" in result.stderr, result.output
    (model / "heads.h5").write_bytes(b"not hdf5")
    result = predict(model, clip)
    assert result.exit_code == 2 and "heads.h5: not a readable HDF5 file" in result.stderr, result.output


def test_a_head_over_inputs_of_another_size_stops_the_run_instead_of_failing_each_clip(
    saved: Path, clip: Path, tmp_path: Path
) -> None:
    model = edited(saved, tmp_path, lambda d: d.update(default_model="lldstats"))
    head = json.loads((model / "model.json").read_text())["models"]["lldstats"]["model"]["head"]
    with h5py.File(model / "heads.h5", "r+") as f:
        arrays = {key: f[head][key][()] for key in f[head]}
        del f[head]
        group = f.create_group(head)
        group["classes"], group["bias"] = arrays["classes"], arrays["bias"]
        group["mean"], group["scale"], group["weights"] = (
            arrays["mean"][:10],
            arrays["scale"][:10],
            arrays["weights"][:, :10],
        )
    seal(model / "heads.h5")
    result = predict(model, clip)
    assert result.exit_code == 2, result.output
    assert "a head of the saved model reads 10 columns and its inputs give 126" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_heads_file_is_one_line_and_exit_2(saved: Path, clip: Path, tmp_path: Path, how: str) -> None:
    """heads.h5 cut short, a block zeroed, an array replaced by a group or by text
    (``tests.faults.test_damaged_files``)."""
    model = edited(saved, tmp_path, lambda d: None)
    damage(model / "heads.h5", how)
    result = predict(model, clip)
    assert result.exit_code == 2 and result.stdout == "", result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "heads.h5" in lines[0] and "Traceback" not in result.output, result.output
