"""``mvemo study fusion`` and ``mvemo study decide``: the protocol's rules, their paired differences, and its decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.fuse.rules import RULES, compare_rules, decide, paired, rule_models
from mvemo.pipeline.cli.main import cli
from tests.fuse.helpers import embedding_cache


def test_each_rule_once_over_the_default_inputs_then_each_input() -> None:
    audio = rule_models(["musicnn", "msdvgg", "descriptors"])
    assert list(audio) == [*RULES, "musicnn", "msdvgg", "descriptors"]
    assert audio["modal"] == audio["late"] and audio["modal-trimmed"] == audio["trimmed"], "one modality"
    both = {name: node.expr for name, node in rule_models(["musicnn", "msdvgg", "i3d"]).items()}
    assert both["modal"] == "late(late(musicnn,msdvgg),i3d)"
    assert both["modal-trimmed"] == "late(late(musicnn,msdvgg,weights=trimmed),i3d)"
    assert both["trimmed"] == "late(musicnn,msdvgg,i3d,weights=trimmed)"


def test_paired_differences_skip_folds_without_a_score() -> None:
    d = paired([[0.6, 0.7, None]], [[0.5, 0.8, 0.1]], k=3)
    assert d["mean"] == pytest.approx(0.0) and (d["won"], d["lost"]) == (1, 1)
    low, high = d["interval"]
    assert low < 0 < high


def study(folds: dict[str, list[float]]) -> dict:
    """A study of classes with one repeat of these fold scores per rule."""
    scores = {rule: {"f1_macro": [s]} for rule, s in folds.items()}
    return {"target": "label", "folds": len(next(iter(folds.values()))), "rules": dict.fromkeys(folds), "fold_scores": scores}


def test_a_rule_replaces_the_default_only_when_clearly_better_somewhere_and_worse_nowhere() -> None:
    late = [0.60, 0.62, 0.58, 0.61, 0.60, 0.59]
    clearly = [x + 0.05 + 0.002 * i for i, x in enumerate(late)]  # better in every fold, by more than its noise
    slightly_worse = [x - 0.01 for x in late]
    others = {rule: late for rule in RULES}
    sets = {
        "a": study(others | {"trimmed": clearly, "stack": clearly}),
        "b": study(others | {"stack": slightly_worse}),
    }
    decision = decide(sets)
    steps = {step["rule"]: step for step in decision["steps"]}
    assert steps["trimmed"]["replaces"] and steps["trimmed"]["against"] == "late"
    assert not steps["stack"]["replaces"] and steps["stack"]["against"] == "trimmed", "worse on b by more than 0.005"
    assert decision["default"] == "trimmed"
    assert not steps["modal"]["replaces"], "the same as late everywhere: no evidence"


@pytest.mark.heavy
def test_the_study_runs_every_rule_and_decides_from_its_files(tmp_path: Path) -> None:
    nets = {"musicnn": (8, 0.8), "msdvgg": (8, 0.5), "i3d": (8, 0.6)}
    cache = embedding_cache(tmp_path / "c", nets=nets, n_per_class=12)
    with Cache(cache) as reader:
        document = compare_rules(reader, repeats=2)
    assert document["inputs"] == ["musicnn", "msdvgg", "i3d"] and document["repeats"] == 2
    assert document["best_input"] in nets
    late = document["rules"]["late"]
    assert late["vs_late"]["f1_macro"]["mean"] == 0.0 and late["vs_late"]["f1_macro"]["won"] == 0
    assert len(document["fold_scores"]["stack"]["f1_macro"]) == 2, "one list of fold scores per repeat"
    best = document["rules"][document["best_input"]]
    assert best["vs_best_input"]["f1_macro"]["mean"] == 0.0
    out = tmp_path / "study.json"
    runner = CliRunner()
    printed = runner.invoke(cli, ["study", "fusion", str(cache), "--repeats", "1", "--out", str(out)])
    assert printed.exit_code == 0, printed.output
    assert "| modal-trimmed | `late(late(musicnn,msdvgg,weights=trimmed),i3d)` |" in printed.output
    decided = runner.invoke(cli, ["study", "decide", str(out), "--json"])
    assert decided.exit_code == 0, decided.output
    assert json.loads(decided.output)["default"] in document["rules"]
