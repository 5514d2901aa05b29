"""The ready-made models shipped with mvemo, as this version reads them: every set each model reads computed with the
fingerprint it was trained on (its nets' embeddings and their inputs alike, no weight file needed to tell), and a
model whose record says a set was computed otherwise refused in one line that names the set and what differs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mvemo.extract.nets.musicnn import Musicnn
from mvemo.fuse.saved.model import MODEL_JSON, load_fusion_model
from mvemo.manifests.errors import ConfigError
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.predict.inputs import check_computable
from mvemo.pipeline.readymade.recipes import RECIPES, shipped_folder

pytestmark = pytest.mark.heavy


@pytest.mark.parametrize("name", list(RECIPES))
def test_this_version_computes_every_set_a_shipped_model_reads_as_it_was_trained(name: str) -> None:
    saved = load_fusion_model(shipped_folder(name))
    for model in saved.models:
        check_computable(saved, model)
        for set_name, described in saved.feature_sets(model).items():
            assert {"extractor_version", "layout"} <= set(described), f"{set_name}: its whole fingerprint record"


def edited_copy(tmp_path: Path, edit: Any) -> Path:
    """A copy of the shipped 4q-quadrants whose record of ``emb/musicnn/all`` ``edit`` changed."""
    folder = shutil.copytree(shipped_folder("4q-quadrants"), tmp_path / "model")
    document = json.loads((folder / MODEL_JSON).read_text())
    edit(document["models"]["integrated-audio"]["feature_sets"]["emb/musicnn/all"])
    (folder / MODEL_JSON).write_text(json.dumps(document))
    return folder


def legacy(described: dict[str, Any]) -> None:
    """As a model saved before the whole record was kept."""
    del described["extractor_version"], described["layout"]


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d.update(fingerprint="0" * 64), "its recorded fingerprint is not that of its record"),
        (
            lambda d: d["config"]["computed_with"].update(transformers="4.0.0"),
            'config.computed_with.transformers "4.0.0" then, absent now',
        ),
        (lambda d: d["config"].update(precision="bfloat16"), 'config.precision "bfloat16" then, "float32" now'),
        (lambda d: d.update(extractor="mvemo.net.other"), 'extractor "mvemo.net.other" then, "mvemo.net.musicnn" now'),
        (lambda d: d["config"].update(pool="max"), "its recorded fingerprint is not that of its record"),
        (lambda d: d["layout"].update(row_shape=[100]), "layout.row_shape [100] then, [200] now"),
    ],
    ids=["fingerprint", "transformers", "precision", "extractor", "an-option-edited", "layout"],
)
def test_a_saved_model_refuses_an_embedding_set_computed_otherwise(tmp_path: Path, edit: Any, named: str) -> None:
    saved = load_fusion_model(edited_copy(tmp_path, edit))
    with pytest.raises(
        ConfigError, match="emb/musicnn/all: the model was trained on rows this version computes"
    ) as err:
        check_computable(saved, "integrated-audio")
    assert named in str(err.value) and "\n" not in str(err.value)


def test_a_net_whose_code_changed_is_refused_by_version_or_by_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change of a net's code raises its ``embedding_version``: a model that records it names it; an older one, which
    recorded its fingerprint alone, is refused all the same."""
    monkeypatch.setattr(Musicnn, "embedding_version", property(lambda net: "4"))
    with pytest.raises(ConfigError, match=r'emb/musicnn/all: .*extractor_version "3" then, "4" now'):
        check_computable(load_fusion_model(edited_copy(tmp_path / "a", lambda d: None)), "integrated-audio")
    with pytest.raises(ConfigError, match=r"emb/musicnn/all: .*another version of its extractor's code computed it"):
        check_computable(load_fusion_model(edited_copy(tmp_path / "b", legacy)), "integrated-audio")


def test_a_model_saved_before_the_whole_record_was_kept_is_read_where_this_version_computes_the_same(
    tmp_path: Path,
) -> None:
    check_computable(load_fusion_model(edited_copy(tmp_path, legacy)), "integrated-audio")


def test_models_list_marks_the_model_whose_weights_differ_and_lists_every_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MVEMO_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "i3d_rgb_kinetics400.npz").write_bytes(b"another file")
    listed = CliRunner().invoke(cli, ["models", "list", "--json", "--weights-dir", str(weights)])
    assert listed.exit_code == 0, listed.output
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert list(entries) == list(RECIPES)
    assert "other than the model's: i3d_rgb_kinetics400.npz" in entries["mved-classes"]["weights"]
    assert (
        "i3d" not in entries["4q-quadrants"]["weights"]
        and "missing: musicnn_msd_musicnn.npz" in entries["4q-quadrants"]["weights"]
    )
    assert {e["computes"] for e in entries.values()} == {"as trained"}


def test_models_list_marks_a_model_this_version_computes_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Musicnn, "embedding_version", property(lambda net: "4"))
    listed = CliRunner().invoke(cli, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("no: ") == len(RECIPES) and 'extractor_version "3" then, "4" now' in listed.output


@pytest.mark.parametrize("name", list(RECIPES))
def test_each_shipped_card_holds_its_recipe_as_this_version_writes_it(name: str) -> None:
    """So that `mvemo models train NAME` of an unchanged recipe finds no difference in recipe.json."""
    card = json.loads((shipped_folder(name) / "recipe.json").read_text())
    assert card["recipe"] == json.loads(json.dumps(RECIPES[name].to_json()))


def test_a_model_whose_weight_files_are_absent_names_every_one_before_reading_a_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mvemo.extract.weights.registry import WeightsError
    from mvemo.pipeline.predict.inputs import weight_files
    from mvemo.pipeline.predict.predictor import Predictor

    monkeypatch.setenv("MVEMO_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    saved = load_fusion_model(shipped_folder("4q-quadrants"))
    files = list(weight_files(saved, saved.default_model))
    assert len(files) == 4 and all(len(sha) == 64 for sha in weight_files(saved, saved.default_model).values())
    with pytest.raises(WeightsError) as err:
        Predictor(shipped_folder("4q-quadrants"), weights_dir=tmp_path / "empty")
    message = str(err.value)
    assert f"reads 4 weight files not found in {tmp_path / 'empty'}, {tmp_path / 'none'}, " in message
    assert f": {', '.join(files)}; get them with `mvemo weights fetch {files[0]}`; " in message and "\n" not in message
    assert all(f"`mvemo weights fetch {file}`" in message for file in files) and "stage one" not in message


def test_a_fine_tuned_or_randomly_initialised_net_needs_no_weight_file(tmp_path: Path) -> None:
    from mvemo.pipeline.predict.inputs import weight_files

    def fine_tuned(described: dict[str, Any]) -> None:
        described["checkpoint"] = {"path": "musicnn.pt", "sha256": hashlib.sha256(b"a checkpoint").hexdigest()}

    def random_init(described: dict[str, Any]) -> None:
        described["weights_sha256"] = ""

    for k, edit in enumerate((fine_tuned, random_init)):
        folder = edited_copy(tmp_path / str(k), edit)
        (folder / "musicnn.pt").write_bytes(b"a checkpoint")
        saved = load_fusion_model(folder)
        files = weight_files(saved, "integrated-audio")
        assert "musicnn_msd_musicnn.npz" not in files and len(files) == 3, edit.__name__
