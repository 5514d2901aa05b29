"""Variants of a net (another layer or pooling) are inputs of their own, which best(...) chooses among on inner folds:
from their config tables through stage one, stage two and predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.fuse.models import available_models
from mvemo.pipeline.cli.main import cli
from tests.conftest import write_tiny
from tests.pipeline.helpers import synthetic_manifest

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

CONFIG = """
[audio]
duration_s = 8.0

[net.musicnn]
init = "random"

[net.musicnn.max]
pool = "max"

[net.musicnn.taggram]
layer = "taggram"
"""


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("variants")
    synthetic_manifest(root, ("Exciting", "Sad", "Tension"), clips_per_class=4, duration_s=8.0)
    (root / "c.toml").write_text(CONFIG)
    return root


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="mvemo")


def test_variants_are_inputs_that_best_chooses_among_on_inner_folds(variants: Path, tmp_path: Path) -> None:
    root = variants
    cache = root / "cache"
    result = run(
        "extract",
        str(root / "m.csv"),
        "--cache",
        str(cache),
        "--config",
        str(root / "c.toml"),
        "--nets",
        "musicnn,musicnn.max,musicnn.taggram",
    )
    assert result.exit_code == 0, result.output
    with Cache(cache) as reader:
        assert {"emb/musicnn/all", "emb/musicnn.max/all", "emb/musicnn.taggram/all"} <= set(reader.feature_sets())
        assert (
            reader.config("emb/musicnn.max/all")["pool"] == "max" and reader.config("emb/musicnn/all")["pool"] == "mean"
        )
        assert reader.config("emb/musicnn.taggram/all")["layer"] == "taggram"
        assert reader.row_shape("emb/musicnn.taggram/all") == (50,)
        assert [m.name for m in available_models(reader)][:3] == ["musicnn", "musicnn.max", "musicnn.taggram"]
        assert reader.read_matrix("emb/musicnn.max/all").tolist() != reader.read_matrix("emb/musicnn/all").tolist(), (
            "two patches"
        )
    models = "best(musicnn,musicnn.max,musicnn.taggram)"
    result = run("fuse", str(cache), "--out", str(tmp_path / "r"), "--models", f"{models},musicnn.taggram")
    assert result.exit_code == 0, result.output
    choices = json.loads((tmp_path / "r" / "report.json").read_text())["models"][models]["choices"][0]
    for fold in choices:  # the first listed within one standard error of the best: never one scored below an earlier
        scores = list(fold["inner_scores"].values())
        assert fold["chosen"] in ("musicnn", "musicnn.max", "musicnn.taggram")
        assert fold["inner_scores"][fold["chosen"]] >= max(
            scores[: list(fold["inner_scores"]).index(fold["chosen"])], default=-1e9
        )
    clip = write_tiny(tmp_path / "song.wav", video=False)
    for model in (models, "musicnn.taggram"):  # a variant's net rebuilt with its options in predict
        labelled = run("predict", str(tmp_path / "r" / "model"), str(clip), "--json", "--model", model)
        assert labelled.exit_code == 0, labelled.output
        assert json.loads(labelled.stdout)[0]["label"] in ("Exciting", "Sad", "Tension")


def test_a_variant_without_its_table_is_refused_before_any_work(variants: Path, tmp_path: Path) -> None:
    result = run(
        "extract",
        str(variants / "m.csv"),
        "--cache",
        str(tmp_path / "c"),
        "--config",
        str(variants / "c.toml"),
        "--nets",
        "musicnn.mean_pool",
    )
    assert result.exit_code == 2 and "no [net.musicnn.mean_pool] table in --config" in result.output, result.output
    result = run("extract", str(variants / "m.csv"), "--cache", str(tmp_path / "c"), "--nets", "musicnn.Max")
    assert result.exit_code == 2 and "not a known net or a variant of one" in result.output, result.output
    assert not (tmp_path / "c").exists()
