"""``mvemo study fusion`` and ``mvemo study decide``: the protocol's rules, their paired differences, and its
decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.fuse.metrics import paired
from mvemo.fuse.rules import RULES, compare_rules, decide, decision_table, rule_models
from mvemo.manifests.errors import ConfigError
from mvemo.pipeline.cli.main import cli
from tests.fuse.helpers import embedding_cache
from tests.fuse.test_dimensional import valued


def test_each_rule_once_over_the_default_inputs_then_each_input() -> None:
    audio = rule_models(["musicnn", "msdvgg", "descriptors"])
    assert list(audio) == [*RULES, "musicnn", "msdvgg", "descriptors"]
    assert audio["modal"] == audio["late"] and audio["modal-trimmed"] == audio["trimmed"], "one modality"
    both = {name: node.expr for name, node in rule_models(["musicnn", "msdvgg", "i3d"], ["i3d"]).items()}
    assert both["modal"] == "late(late(musicnn,msdvgg),i3d)"
    assert both["modal-trimmed"] == "late(late(musicnn,msdvgg,weights=trimmed),i3d)"
    assert both["trimmed"] == "late(musicnn,msdvgg,i3d,weights=trimmed)"


def test_every_rule_is_a_model_of_every_kind_of_target() -> None:
    rules = rule_models(["musicnn", "descriptors"])
    assert list(rules) == [*RULES, "musicnn", "descriptors"]


def test_paired_differences_skip_folds_without_a_score() -> None:
    d = paired([[0.6, 0.7, None]], [[0.5, 0.8, 0.1]], k=3)
    assert d["mean"] == pytest.approx(0.0) and (d["won"], d["lost"]) == (1, 1)
    low, high = d["interval"]
    assert low < 0 < high


def study(folds: dict[str, list[float]]) -> dict:
    """A study of classes with one repeat of these fold scores per rule."""
    scores = {rule: {"f1_macro": [s]} for rule, s in folds.items()}
    return {
        "target": "label",
        "folds": len(next(iter(folds.values()))),
        "rules": dict.fromkeys(folds),
        "fold_scores": scores,
    }


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


def value_study(valence: dict[str, list[float]], arousal: dict[str, list[float]]) -> dict:
    """A study of values with one repeat of these fold CCCs per rule given."""
    scores = {rule: {"ccc_valence": [valence[rule]], "ccc_arousal": [arousal[rule]]} for rule in valence}
    return {"target": "values", "measures": ["ccc_valence", "ccc_arousal"], "folds": 6, "fold_scores": scores}


def test_each_value_is_a_set_of_its_own_and_a_rule_a_set_did_not_measure_replaces_nothing() -> None:
    late = [0.60, 0.62, 0.58, 0.61, 0.60, 0.59]
    clearly = [x + 0.05 + 0.002 * i for i, x in enumerate(late)]
    measured = {rule: late for rule in RULES if rule not in ("late-inner", "stack")}  # run with --rules, or older
    sets = {
        "classes": study({rule: late for rule in RULES} | {"choice": clearly, "stack": clearly}),
        "musemo": value_study(measured | {"trimmed": clearly}, measured | {"trimmed": [x - 0.01 for x in late]}),
    }
    decision = decide(sets)
    steps = {step["rule"]: step for step in decision["steps"]}
    assert [a["set"] for a in steps["trimmed"]["per_set"]] == ["classes", "musemo valence", "musemo arousal"]
    assert not steps["trimmed"]["replaces"], "better on valence, worse on arousal by more than 0.005"
    assert steps["choice"]["replaces"] and decision["default"] == "choice"
    assert not steps["stack"]["replaces"] and steps["stack"]["not_measured"] == ["musemo valence", "musemo arousal"]
    table = decision_table(decision)
    assert "| stack | choice | " in table and "not measured | not measured | no |" in table


def test_a_set_whose_study_measured_late_alone_has_its_column_of_not_measured() -> None:
    late = [0.60, 0.62, 0.58, 0.61, 0.60, 0.59]
    clearly = [x + 0.05 + 0.002 * i for i, x in enumerate(late)]
    sets = {"moods": study({"late": late}), "classes": study({rule: late for rule in RULES} | {"choice": clearly})}
    decision = decide(sets)
    assert decision["sets"] == ["moods", "classes"] and decision["default"] == "late", "unmeasured: replaces nothing"
    header, _, *rows = decision_table(decision).splitlines()[: 2 + len(RULES) - 1]
    assert header == "| rule | against | moods | classes | replaces |"
    assert all(row.split(" | ")[2] == "not measured" for row in rows), rows


def test_a_study_of_some_rules_measures_those_and_each_input(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c", nets={"musicnn": (8, 0.8), "msdvgg": (8, 0.5)}, n_per_class=12)
    with Cache(cache) as reader:
        document = compare_rules(reader, repeats=1, rules=("late", "choice"))
        assert list(document["rules"]) == ["late", "choice", "musicnn", "msdvgg"]
        for rules in (("choice",), ("late", "stacked")):
            with pytest.raises(ConfigError, match="late among them"):
                compare_rules(reader, repeats=1, rules=rules)
    (option,) = [p for p in cli.commands["study"].commands["fusion"].params if p.name == "rules"]
    assert all(rule in option.help for rule in RULES), "--rules' help names every rule"


def write_study(path: Path, document: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return str(path)


def test_studies_of_one_file_name_in_two_folders_are_two_sets(tmp_path: Path) -> None:
    late = [0.60, 0.62, 0.58, 0.61, 0.60, 0.59]
    others = {rule: late for rule in RULES}
    a = write_study(tmp_path / "a" / "study.json", study(others | {"modal": [x + 0.01 for x in late]}))
    b = write_study(tmp_path / "b" / "study.json", study(others | {"modal": [x - 0.02 for x in late]}))
    alone = write_study(tmp_path / "mved.json", study(others))
    decided = CliRunner().invoke(cli, ["study", "decide", a, b, alone, "--json"])
    assert decided.exit_code == 0, decided.output
    modal = json.loads(decided.output)["steps"][0]
    by_set = {entry["set"]: entry["mean"] for entry in modal["per_set"]}
    assert by_set == pytest.approx({a: 0.01, b: -0.02, "mved": 0.0}), "a stem that two files share names neither"


def test_a_study_given_twice_is_one_line_naming_it(tmp_path: Path) -> None:
    a = write_study(tmp_path / "a" / "study.json", study({rule: [0.6, 0.6, 0.6] for rule in RULES}))
    again = str(tmp_path / "a" / ".." / "a" / "study.json")
    decided = CliRunner().invoke(cli, ["study", "decide", a, again])
    assert decided.exit_code == 2 and len(decided.output.strip().splitlines()) == 1, decided.output
    assert again in decided.output and "twice" in decided.output


def fold_by_fold(mine: list[list[float | None]], theirs: list[list[float | None]]) -> tuple[float, int, int]:
    """A plain reference of a paired difference: the mean over every fold of every repeat of ``mine`` less ``theirs``
    (folds without both scores left out), and the folds won and lost."""
    d = []
    for repeat_mine, repeat_theirs in zip(mine, theirs, strict=True):
        for a, b in zip(repeat_mine, repeat_theirs, strict=True):
            if a is not None and b is not None:
                d.append(a - b)
    return sum(d) / len(d), sum(x > 0 for x in d), sum(x < 0 for x in d)


def check_paired(row: dict, mine: list, theirs: list, what: str) -> None:
    mean, won, lost = fold_by_fold(mine, theirs)
    assert row["mean"] == pytest.approx(mean, abs=1e-12) and (row["won"], row["lost"]) == (won, lost), what
    low, high = row["interval"]
    assert low - 1e-12 <= row["mean"] <= high + 1e-12, what


@pytest.mark.heavy
def test_the_study_runs_every_rule_and_decides_from_its_files(tmp_path: Path) -> None:
    inputs = ["musicnn", "msdvgg", "i3d"]
    cache = embedding_cache(
        tmp_path / "c", nets={"musicnn": (8, 0.8), "msdvgg": (8, 0.5), "i3d": (8, 0.6)}, n_per_class=12
    )
    with Cache(cache) as reader:
        document = compare_rules(reader, repeats=2)
    assert document["inputs"] == inputs and document["repeats"] == 2
    rows, scores, models = document["rules"], document["fold_scores"], rule_models(inputs, ["i3d"])
    assert list(rows) == list(scores) == list(models) == [*RULES, *inputs], (
        "every rule of the protocol, then each input"
    )
    best = document["best_input"]["f1_macro"]
    assert best == max(inputs, key=lambda name: rows[name]["f1_macro"])
    for name, row in rows.items():
        folds = scores[name]["f1_macro"]
        assert row["model"] == models[name].expr and 0 <= row["f1_macro"] <= 1
        assert len(folds) == 2 and all(len(repeat) == document["folds"] for repeat in folds), (
            "a score per fold per repeat"
        )
        check_paired(row["vs_late"]["f1_macro"], folds, scores["late"]["f1_macro"], f"{name} against late")
        check_paired(row["vs_best_input"]["f1_macro"], folds, scores[best]["f1_macro"], f"{name} against {best}")
    assert any(rows[name]["vs_late"]["f1_macro"]["mean"] != 0 for name in rows), "differences that are not all zero"
    out = tmp_path / "study.json"
    runner = CliRunner()
    printed = runner.invoke(cli, ["study", "fusion", str(cache), "--repeats", "1", "--out", str(out)])
    assert printed.exit_code == 0, printed.output
    assert "| modal-trimmed | `late(late(musicnn,msdvgg,weights=trimmed),i3d)` |" in printed.output
    decided = runner.invoke(cli, ["study", "decide", str(out), "--json"])
    assert decided.exit_code == 0, decided.output
    written = json.loads(out.read_text())["fold_scores"]
    for step in json.loads(decided.output)["steps"]:
        (per_set,) = step["per_set"]
        assert per_set["set"] == "study", "the set is named by its file"
        check_paired(per_set, written[step["rule"]]["f1_macro"], written[step["against"]]["f1_macro"], step["rule"])
    late = written["late"]["f1_macro"]
    edited = {rule: {"f1_macro": late} for rule in RULES} | {
        "trimmed": {"f1_macro": [[x + 0.1 for x in r] for r in late]}
    }
    changed = write_study(tmp_path / "changed" / "study.json", json.loads(out.read_text()) | {"fold_scores": edited})
    decided = runner.invoke(cli, ["study", "decide", changed, "--json"])
    assert decided.exit_code == 0, decided.output
    assert json.loads(decided.output)["default"] == "trimmed", "decided by the fold scores the file holds"


@pytest.mark.heavy
def test_a_study_of_values_scores_each_values_ccc_fold_by_fold(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c", nets={"a": (8, 2.0), "b": (8, 0.3)}, n_per_class=12, retarget=valued)
    with Cache(cache) as reader:
        document = compare_rules(reader, target="values", repeats=2)
    assert (
        document["measures"] == ["ccc_valence", "ccc_arousal"] and list(document["best_input"]) == document["measures"]
    )
    assert list(document["rules"]) == [*RULES, "a", "b"]
    assert document["best_input"]["ccc_valence"] == "a", "the net that carries the values"
    scores = document["fold_scores"]
    for name, row in document["rules"].items():
        for measure in document["measures"]:
            folds = scores[name][measure]
            assert len(folds) == 2 and all(len(repeat) == document["folds"] for repeat in folds)
            check_paired(row["vs_late"][measure], folds, scores["late"][measure], f"{name} {measure} against late")
    printed = CliRunner().invoke(cli, ["study", "fusion", str(cache), "--target", "values", "--repeats", "1"])
    assert printed.exit_code == 0, printed.output
    assert "vs late (ccc_arousal)" in printed.output and "| trimmed | `late(a,b,weights=trimmed)` |" in printed.output

    config, out = tmp_path / "kernel.toml", tmp_path / "kernel.json"
    config.write_text('[fuse]\nvalue_heads = ["kernel-ridge"]\n')
    command = [
        "study",
        "fusion",
        str(cache),
        "--target",
        "values",
        "--repeats",
        "1",
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    assert CliRunner().invoke(cli, command).exit_code == 0
    kernel = json.loads(out.read_text())
    assert kernel["selection"]["value_heads"] == ["kernel-ridge"], "the study records how it chose"
    first = {measure: folds[:1] for measure, folds in document["fold_scores"]["a"].items()}  # the first repeat's
    assert kernel["fold_scores"]["a"] != first, "the heads the config names ran"
    config.write_text('[head]\nname = "lda"\n')
    refused = CliRunner().invoke(cli, command)
    assert refused.exit_code == 2 and "the [fuse] table alone" in refused.output
