"""What a CV report says: no figure from nothing, every repeat's notes, each figure's definition, and paired
differences on the clips both models score."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.heads.linear import LogisticHead
from mvemo.fuse.metrics import METRIC_DEFINITIONS
from mvemo.fuse.models import available_models, incomplete_inputs
from mvemo.fuse.report.targets import values_document
from mvemo.fuse.stage import run_cv
from mvemo.fuse.targets.values import cross_validate_values
from mvemo.manifests import CacheError
from mvemo.pipeline.cli.main import cli
from tests.fuse.helpers import embedding_cache
from tests.fuse.test_dimensional import valued

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

NETS = {"musicnn": (6, 1.2), "msdvgg": (6, 1.2), "i3d": (6, 1.2)}


def table_rows(report: str) -> dict[str, list[str]]:
    """The summary table's rows of report.md by model name (a scored model's name is a link to its confusion matrix)."""
    lines = report.split("## How each figure", 1)[0].splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    return {re.sub(r"^\[(.*)\]\(confusion_.*\.png\)$", r"\1", row[0]): row[1:] for row in rows[1:]}


def test_a_half_computed_input_leaves_the_defaults_and_no_row_scores_zero_clips(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c", nets=NETS, n_per_class=20, written={"emb/msdvgg/all": 30}, failed_sets=("emb/i3d/all",)
    )
    with Cache(cache) as reader:
        assert list(incomplete_inputs(reader)) == ["msdvgg"]
        assert "emb/msdvgg/all: 30 of 60 clips not computed yet" in incomplete_inputs(reader)["msdvgg"]
        defaults = available_models(reader)
    assert all("msdvgg" not in m.inputs for m in defaults), "the half-computed input is in no default model"
    document = run_cv(cache, tmp_path / "r").document
    assert "msdvgg" not in document["models"]
    assert any(
        note.startswith("msdvgg: left out of the default models") and "--nets msdvgg" in note
        for note in document["notes"]
    )
    # i3d failed on every clip: named, its models are reported as not scored, with no figure
    named = run_cv(cache, tmp_path / "n", models="musicnn,msdvgg,i3d,i3d+musicnn").document
    assert set(named["unscored"]) == {"i3d", "i3d+musicnn"} and set(named["models"]) == {"musicnn", "msdvgg"}
    assert named["models"]["msdvgg"]["n_rows"] == 30
    rows = table_rows((tmp_path / "n" / "report.md").read_text())
    for name in ("i3d", "i3d+musicnn"):
        assert rows[name][0].startswith("not scored: no clip has all its inputs")
        assert not any(re.search(r"\d", cell) for cell in rows[name][1:]), f"{name}: a figure from zero rows"
    assert named["comparison"]["models"]["msdvgg"]["clips_per_fold"] == pytest.approx(10)


def test_a_later_repeats_note_reaches_the_report_with_its_repeat(tmp_path: Path) -> None:
    groups = ["tense-band" if i % 3 == 2 else "" for i in range(60)]  # every tense clip in one group, so in one fold
    folds = [0 if i % 3 == 2 else (i // 3) % 3 for i in range(60)]
    cache = embedding_cache(tmp_path / "c", nets={"musicnn": (4, 2.0)}, n_per_class=20, groups=groups, folds=folds)
    result = cross_validate(cache, repeats=4, head=LogisticHead(C=1.0))
    for r in range(1, 4):
        fold = int(result.repeat_folds[r][2])
        note = f"repeat {r}: musicnn, fold {fold}: no training clip of class tense, predicted with probability 0"
        assert note in result.notes
    document = run_cv(cache, tmp_path / "r", repeats=4, head_params={"C": 1.0}).document
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Notes (every repeat)" in report and "repeat 3: musicnn, fold" in report
    assert document["repeats"] == 4


CHOICE = "best(late(musicnn,i3d),musicnn+i3d,musicnn,i3d)"


def test_figures_cover_every_repeat_and_say_how_they_are_pooled(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c", nets=NETS, n_per_class=16)
    document = run_cv(cache, tmp_path / "r", models=f"musicnn,i3d,{CHOICE}", repeats=3).document
    report = (tmp_path / "r" / "report.md").read_text()
    for name in METRIC_DEFINITIONS:
        assert f"- **{name}**:" in report
    musicnn = document["models"]["musicnn"]
    assert sum(map(sum, musicnn["confusion"])) == 3 * 48, "the confusion matrix sums every repeat's predictions"
    assert musicnn["per_class"]["support"] == [16, 16, 16]
    assert len(musicnn["f1_macro_per_repeat"]) == 3 and musicnn["f1_macro"] == pytest.approx(
        np.mean(musicnn["f1_macro_per_repeat"])
    )
    pooled = musicnn["accuracy_pooled"]
    assert len(pooled["per_repeat"]) == 3 and pooled["mean"] == pytest.approx(np.mean(pooled["per_repeat"]))
    assert 0 <= musicnn["accuracy"]["interval"][0] <= musicnn["accuracy"]["interval"][1] <= 1, (
        "an accuracy stays in 0-100 %"
    )
    assert "(all 3 repeats pooled, each clip counted once per repeat" in report
    assert "## Chosen on inner folds (repeat 0 of 3; report.json holds every repeat's)" in report
    assert "Members chosen in the 9 folds of every repeat:" in report
    assert len(document["models"][CHOICE]["choices"]) == 3
    header = next(line for line in report.splitlines() if line.startswith("| model | acc %"))
    assert "pooled acc %" in header and "vs musicnn" in header
    assert json.loads((tmp_path / "r" / "report.json").read_text())["config"]["reference"] == "musicnn"


def test_the_reference_is_named_not_picked_by_its_score(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c", nets={"musicnn": (6, 0.0), "i3d": (6, 2.0)}, n_per_class=16)
    result = cross_validate(cache, models="musicnn,i3d")
    assert result.comparison["reference"] == "musicnn", "the first unimodal model listed, though it scores worse"
    assert result.comparison["models"]["i3d"]["mean"] > 0
    assert cross_validate(cache, models="musicnn,i3d", reference="i3d").comparison["reference"] == "i3d"
    with pytest.raises(ValueError, match=r"--reference 'msdvgg' is not among the models \['musicnn', 'i3d'\]"):
        cross_validate(cache, models="musicnn,i3d", reference="msdvgg")


def test_inner_and_outer_accuracy_of_per_fold_fine_tuned_inputs(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c", nets={"musicnn": (6, 1.0)}, fold_sets=(0, 1, 2), finetune="full", n_per_class=16
    )
    document = run_cv(cache, tmp_path / "r").document
    assert document["fine_tuned_models"] == ["musicnn"]
    inner = document["models"]["musicnn"]["inner_accuracy"]
    folds = document["models"]["musicnn"]["inner_accuracy_per_fold"][0]
    assert inner == pytest.approx(np.mean(folds)) and all(0 <= a <= 1 for a in folds)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Inner and outer accuracy" in report
    assert re.search(r"\| musicnn \| yes \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \|", report)
    untuned = embedding_cache(tmp_path / "u", nets={"musicnn": (6, 1.0)}, n_per_class=16)
    run_cv(untuned, tmp_path / "ru")
    assert re.search(
        r"\| musicnn \| no \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \|", (tmp_path / "ru" / "report.md").read_text()
    )


def test_no_model_with_a_clip_to_score_is_an_input_error(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c", nets={"musicnn": (4, 1.0), "i3d": (4, 1.0)}, n_per_class=8, failed_sets=("emb/i3d/all",)
    )
    with pytest.raises(
        CacheError, match=r"no clip holds every input of any model of \['i3d'\] \(clip 'c0': emb/i3d/all failed"
    ):
        cross_validate(cache, models="i3d")
    result = CliRunner().invoke(
        cli, ["cv", "--cache", str(cache), "--out", str(tmp_path / "r"), "--models", "i3d"], prog_name="mvemo-cv"
    )
    assert result.exit_code == 2 and "Traceback" not in result.output and len(result.stderr.splitlines()) == 1


def test_models_whose_names_slug_alike_each_get_a_confusion_matrix_of_their_own(tmp_path: Path) -> None:
    """Sets a, b and a_b: the models a_b and a+b both slugged to confusion_a_b.png, and one matrix was lost."""
    cache = embedding_cache(tmp_path / "c", nets={}, vectors={"a": (4, 1.0), "b": (4, 0.5), "a_b": (4, 2.0)})
    document = run_cv(cache, tmp_path / "report", models="a_b,a+b,late(a,b)").document
    files = document["figures"]["confusion"]
    assert set(files) == {"a_b", "a+b", "late(a,b)"}
    assert len({name.lower() for name in files.values()}) == 3, files
    for name in files.values():
        assert (tmp_path / "report" / name).is_file()
    assert files["a_b"] != "confusion_a_b.png" or files["a+b"] != "confusion_a_b.png"


def test_value_models_whose_names_slug_alike_each_get_a_scatter_plot_of_their_own(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c", nets={}, vectors={"a": (4, 1.0), "b": (4, 0.5), "a_b": (4, 2.0)}, retarget=valued
    )
    figures = values_document(cross_validate_values(cache, names=("valence",), models="a_b,a+b"))["figures"]
    assert len(set(figures.values())) == 2, figures
