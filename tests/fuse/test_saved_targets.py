"""Saved models of tags and of valence/arousal: trained on every clip, saved without pickle, loaded and checked; saved
models of every kind of target and head run where scikit-learn cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.h5file import seal
from mvemo.cache.read import Cache
from mvemo.fuse.compose import Features
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.saved.targets import FittedValueParts, values_from_record, values_record
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.stage import fuse_cache
from mvemo.fuse.targets.parts import KernelPart
from mvemo.fuse.targets.regression import fit_values
from mvemo.manifests import ConfigError, Manifest
from mvemo.pipeline.cli.main import cli
from tests.fuse.helpers import embedding_cache

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def targeted(manifest: Manifest) -> Manifest:
    """A tag and values that follow from the class (which the embeddings carry)."""
    clips = tuple(
        replace(c, tags=("low",) if y == 0 else (), valence=float(y) - 1, arousal=1 - float(y))
        for c, y in zip(manifest.clips, manifest.y)
    )
    return replace(manifest, clips=clips, tags=("low", "never"), scale=(-2.0, 2.0))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embedding_cache(
        tmp_path_factory.mktemp("t") / "cache", nets={"a": (6, 2.0), "b": (4, 1.0)}, n_per_class=10, retarget=targeted
    )


def saved(cache: Path, out: Path, target: str) -> Path:
    fuse_cache(cache, out, target=target, models="a,b,late(a,b)")
    return out / "model"


def test_a_saved_tag_model_gives_each_tag_its_probability_and_threshold(cache: Path, tmp_path: Path) -> None:
    model = load_fusion_model(saved(cache, tmp_path / "tags", "tags"))
    assert (model.target, model.outputs, model.default_model) == ("tags", ["low", "never"], "a")
    with Cache(cache) as c:
        proba = model.predict("a", {"a": c.read_matrix("emb/a/all")})
        truth = c.targets.tag_matrix
    assert proba.shape == (30, 2) and ((proba >= 0) & (proba <= 1)).all()
    low, never = model.thresholds("a")
    assert np.mean((proba[:, 0] >= low) == truth[:, 0].astype(bool)) > 0.9, "the carried tag is called on its clips"
    assert not np.any(proba[:, 1] >= max(never, 0.5)), "a tag no clip carries is never called"


def test_a_saved_value_model_predicts_within_the_training_range(cache: Path, tmp_path: Path) -> None:
    model = load_fusion_model(saved(cache, tmp_path / "values", "valence,arousal"))
    assert (model.target, model.outputs, model.scale) == ("valence,arousal", ["valence", "arousal"], (-2.0, 2.0))
    assert model.document["format"] == 3, "linear maps alone: every reader since format 3 reads them"
    with Cache(cache) as c:
        X, values = c.read_matrix("emb/a/all"), c.targets.values
    pred = model.predict("a", {"a": X})
    assert np.corrcoef(pred[:, 0], values[:, 0])[0, 1] > 0.9
    extreme = model.predict("a", {"a": X[:1] * 1e6})
    assert np.all(np.abs(extreme) < 10), "inputs are clipped to the training range: no wild extrapolation"


def test_a_value_model_asked_for_another_head_records_the_ridge_heads_it_ran(cache: Path, tmp_path: Path) -> None:

    out = tmp_path / "values"
    args = ["fuse", str(cache), "--out", str(out), "--target", "valence", "--models", "a", "--head", "rbf-svm"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "model" / "model.json").read_text())
    assert (document["head"], document["head_params"]) == ("ridge", {}), "the report says ridge ran: so must the model"


@pytest.mark.parametrize(
    "target, damage, message",
    [
        (
            "tags",
            lambda doc: doc["models"]["a"]["model"]["per_tag"][0].update(threshold=1.5),
            r"threshold is not in \[0, 1\]",
        ),
        ("tags", lambda doc: doc.update(tags=["low"]), r"per_tag is not one entry per tag \['low'\]"),
        ("valence,arousal", lambda doc: doc.update(scale=[1, 1]), r"scale is not \[low, high\]"),
        ("valence,arousal", lambda doc: doc.update(values=["valence"], target="valence"), r"not a\s+finite map"),
    ],
)
def test_a_damaged_saved_model_is_refused_naming_the_problem(
    cache: Path, tmp_path: Path, target, damage, message
) -> None:
    folder = saved(cache, tmp_path / "m", target)
    document = json.loads((folder / "model.json").read_text())
    damage(document)
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=message):
        load_fusion_model(folder)


def test_value_heads_of_the_wrong_shape_are_refused(cache: Path, tmp_path: Path) -> None:
    folder = saved(cache, tmp_path / "m", "valence,arousal")
    with h5py.File(folder / "heads.h5", "r+") as f:
        key = next(iter(f))
        del f[key]["low"]
        f[key]["low"] = np.zeros(2)
    seal(folder / "heads.h5")  # an edit on purpose, sealed again: the checks behind the seal are what is tested
    with pytest.raises(ConfigError, match=r"low \(2,\)"):
        load_fusion_model(folder)


def test_a_saved_value_model_of_kernel_ridge_heads_predicts_and_is_checked(cache: Path, tmp_path: Path) -> None:
    """Kernel expansions to values are saved as arrays and loaded as such; one whose gamma was edited to 0 is
    refused."""
    kernel = SelectionConfig(value_heads=("kernel-ridge",))
    _, folder = fuse_cache(cache, tmp_path / "kernel", target="valence,arousal", models="a,b", selection=kernel)
    model = load_fusion_model(folder)
    assert model.document["selection"]["value_heads"] == ["kernel-ridge"] and model.document["head"] == "kernel-ridge"
    assert model.document["format"] == 4, "a reader of format 3 would take a kernel expansion for a linear map"
    assert all(isinstance(part, KernelPart) for fitted in model.fitted.values() for part in fitted.parts)
    with Cache(cache) as c:
        X, values = c.read_matrix("emb/a/all"), c.targets.values
    assert np.corrcoef(model.predict("a", {"a": X})[:, 0], values[:, 0])[0, 1] > 0.9
    with h5py.File(folder / "heads.h5", "r+") as f:
        key = next(iter(f))
        del f[key]["gamma"]
        f[key]["gamma"] = np.float64(0.0)
    seal(folder / "heads.h5")
    with pytest.raises(ConfigError, match="a gamma <= 0"):
        load_fusion_model(folder)


def test_a_value_model_of_linear_and_kernel_parts_reads_back_as_it_predicted() -> None:
    """``values_record`` then ``values_from_record``: the same predictions, each part of its own kind."""
    rng = np.random.default_rng(0)
    good = rng.standard_normal((90, 3))
    values = np.stack([np.sin(2 * good[:, 0]) + good[:, 0] ** 2, good[:, 1]], axis=1)
    both = SelectionConfig(value_heads=("ridge", "kernel-ridge"))
    fitted = fit_values(
        Features(("good",)),
        {"good": good},
        values,
        groups=[f"g{i}" for i in range(90)],
        strata=np.zeros(90, dtype=int),
        selection=both,
    )
    heads: dict = {}
    record = values_record(FittedValueParts(fitted.parts(), fitted.choices()), heads)
    assert [type(head).__name__ for head in heads.values()] == ["LinearValues", "KernelValues"]
    new = {"good": rng.standard_normal((20, 3))}
    assert values_from_record(record, heads).values(new) == pytest.approx(fitted.predict(new), abs=1e-12)


# A fresh Python in which importing scikit-learn fails: it loads each saved model and prints its predictions.
WITHOUT_SCIKIT_LEARN = """
import json, sys
sys.modules["sklearn"] = None  # any import of scikit-learn raises ImportError
from mvemo.cache.read import Cache
from mvemo.fuse.saved.model import load_fusion_model
with Cache(sys.argv[1]) as cache:
    blocks = {name: cache.read_matrix(f"emb/{name}/all") for name in ("a", "b")}
predictions = {}
for folder in sys.argv[2:]:
    model = load_fusion_model(folder)
    predictions[folder] = {name: model.predict(name, blocks).tolist() for name in model.models}
print(json.dumps(predictions))
"""


def test_saved_models_of_every_target_and_head_predict_the_same_where_scikit_learn_cannot_be_imported(
    cache: Path, tmp_path: Path
) -> None:
    """``predict`` reads and runs a saved model in plain numpy (``fuse.heads.softmax``, ``fuse.fitted``,
    ``fuse.targets.parts``): the same predictions as in a process that fitted it, with scikit-learn unimportable."""
    models = "a,b,late(a,b),stack(a,b),best(a,b)"
    folders = [
        fuse_cache(cache, tmp_path / "classes", models=models)[1],
        fuse_cache(cache, tmp_path / "kernel", models="a", head="rbf-svm")[1],
        fuse_cache(cache, tmp_path / "tags", models=models, target="tags")[1],
        fuse_cache(cache, tmp_path / "values", models="a,late(a,b)", target="valence,arousal")[1],
        fuse_cache(
            cache,
            tmp_path / "kernel-values",
            models="a",
            target="valence,arousal",
            selection=SelectionConfig(value_heads=("kernel-ridge",)),
        )[1],
    ]
    ran = subprocess.run(
        [sys.executable, "-c", WITHOUT_SCIKIT_LEARN, str(cache), *map(str, folders)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    without = json.loads(ran.stdout)
    with Cache(cache) as c:
        blocks = {name: c.read_matrix(f"emb/{name}/all") for name in ("a", "b")}
    for folder in folders:
        model = load_fusion_model(folder)
        assert set(without[str(folder)]) == set(model.models)
        for name in model.models:
            np.testing.assert_array_equal(np.array(without[str(folder)][name]), model.predict(name, blocks))
