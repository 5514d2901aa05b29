"""``mvemo study fusion``: the fusion rules of docs/results.md's protocol, each over the default model's inputs, with
each rule's paired difference against the plain late fusion and against the best single input.

Per test fold of every repeat a rule is scored on the fold's clips (macro F1 for classes; for tags, per tag with
present and absent clips in the fold, ROC-AUC and average precision, averaged over those tags; for values, each
value's CCC) and compared with another rule on the same clips: the mean difference, its 95 % interval corrected for
overlapping training rows (``fuse.metrics.corrected_interval``) and the folds won-lost. Values are decided by each
value on its own, as two sets: a rule must not be worse on either. Every rule fits every kind of target: for values,
``late-inner`` and ``stack`` learn non-negative weights on the members' inner out-of-fold predictions
(``fuse.targets.regression.combination``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from mvemo.cache.read import Cache
from mvemo.fuse.compose import Features, Late, Node, Stack, choice_among_fusions
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.metrics import paired
from mvemo.fuse.models import fusion_inputs, modality
from mvemo.fuse.targets.tags import cross_validate_tags
from mvemo.fuse.targets.values import ccc, cross_validate_values
from mvemo.manifests.errors import ConfigError

# the rules in the protocol's order, simplest first
RULES = ("late", "modal", "trimmed", "modal-trimmed", "choice", "late-inner", "stack")
# the headline each target is decided by, and what it is reported beside (values: each value's CCC, ``measures``)
MEASURES = {"label": ("f1_macro",), "tags": ("roc_auc_macro", "map")}


def measures(target: str, value_names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """What a study of ``target`` reports per rule: ``MEASURES``, or ``ccc_<value>`` for each value."""
    return MEASURES[target] if target in MEASURES else tuple(f"ccc_{name}" for name in value_names)


def decided_by(study: dict[str, Any]) -> list[str]:
    """The measures a study's set decides by: the headline of classes or tags, each value's CCC."""
    return [MEASURES[study["target"]][0]] if study["target"] in MEASURES else list(study["measures"])


def rule_models(inputs: list[str], video: Collection[str] = ()) -> dict[str, Node]:
    """Each rule of the protocol over ``inputs`` (those of the video modality: ``video``), then each input alone (two
    rules may be one model on these inputs, as ``modal`` is ``late`` over one modality: it is fitted once)."""
    alone = tuple(Features((name,)) for name in inputs)
    pools = [tuple(m for m in alone if (m.inputs[0] in video) == is_video) for is_video in (False, True)]

    def per_modality(weights: str) -> Node:
        """Each modality's late fusion (a modality of one member is that member), then theirs with equal weights."""
        fused = [p[0] if len(p) == 1 else Late(p, weights) for p in pools if p]
        return fused[0] if len(fused) == 1 else Late(tuple(fused))

    rules: dict[str, Node] = {
        "late": Late(alone),
        "modal": per_modality("equal"),
        "trimmed": Late(alone, "trimmed"),
        "modal-trimmed": per_modality("trimmed"),
        "choice": choice_among_fusions(alone),
        "late-inner": Late(alone, "inner"),
        "stack": Stack(alone),
    }
    return rules | {name: Features((name,)) for name in inputs}


def fold_scores(result: Any, model: str, target: str) -> dict[str, list[list[float | None]]]:
    """Per measure of ``target``, ``model``'s score on each test fold of each repeat (None where a fold cannot say)."""
    if target not in MEASURES:
        return {
            f"ccc_{name}": [
                [
                    ccc(p.values[p.folds == f, d], p.pred[p.folds == f, d]) if (p.folds == f).any() else None
                    for f in range(result.n_folds)
                ]
                for p in (repeat[model] for repeat in result.repeats)
            ]
            for d, name in enumerate(result.names)
        }
    if target == "label":
        scores: list[list[float | None]] = []
        for repeat in result.repeats:
            p = repeat[model]
            labels, pred = np.arange(p.proba.shape[1]), p.proba.argmax(axis=1)
            folds = [p.folds == f for f in range(result.n_folds)]
            scores.append(
                [
                    float(f1_score(p.y[rows], pred[rows], average="macro", labels=labels, zero_division=0))
                    if rows.any()
                    else None
                    for rows in folds
                ]
            )
        return {"f1_macro": scores}
    auc: list[list[float | None]] = []
    ap: list[list[float | None]] = []
    for repeat in result.repeats:
        p = repeat[model]
        per_fold_auc, per_fold_ap = [], []
        for f in range(result.n_folds):
            aucs, aps = [], []
            for t in range(p.y.shape[1]):
                rows = (p.folds == f) & p.scored[:, t]
                truth = p.y[rows, t]
                if 0 < truth.sum() < len(truth):
                    aucs.append(roc_auc_score(truth, p.proba[rows, t]))
                    aps.append(average_precision_score(truth, p.proba[rows, t]))
            per_fold_auc.append(float(np.mean(aucs)) if aucs else None)
            per_fold_ap.append(float(np.mean(aps)) if aps else None)
        auc.append(per_fold_auc)
        ap.append(per_fold_ap)
    return {"roc_auc_macro": auc, "map": ap}


def headline(result: Any, model: str, measure: str, target: str) -> float:
    """The report's figure: pooled per repeat, averaged over repeats."""
    metrics = result.metrics[model]
    if target not in MEASURES:
        return float(metrics[measure.removeprefix("ccc_")]["ccc"])
    return float(metrics[measure] if target == "label" else metrics[measure]["mean"])


def compare_rules(
    cache: Cache, *, target: str = "label", repeats: int = 10, rules: Collection[str] = RULES, **options: Any
) -> dict[str, Any]:
    """The ``rules`` of ``rule_models`` (``late`` among them) over the default model's inputs, cross-validated
    ``repeats`` times (``options``: those of ``fuse.cv.cross_validate``, ``fuse.targets.tags.cross_validate_tags`` and
    ``fuse.targets.values.cross_validate_values``: selection, executor, progress...), each with its headline and its
    paired differences against ``late`` and the best single input; ``target`` "values": the cache's values. A rule
    left out is not measured on this set, and ``decide`` lets it replace nothing."""
    if target not in (*MEASURES, "values"):
        raise ConfigError(f"--target {target!r}: the study compares rules for label, tags or values")
    unknown = [rule for rule in rules if rule not in RULES]
    if unknown or "late" not in rules:
        raise ConfigError(
            f"--rules {','.join(rules)}: name rules among {', '.join(RULES)}, late among them (each is paired with it)"
        )
    inputs = fusion_inputs(cache)
    if len(inputs) < 2:
        raise ConfigError(
            f"cache {str(cache.path)!r}: the default model fuses {inputs or 'nothing'}; a study needs two inputs"
        )
    video = [name for name in inputs if modality(cache, name) == "video"]
    models = {name: node for name, node in rule_models(inputs, video).items() if name in rules or name in inputs}
    runs: dict[str, Callable[..., Any]] = {
        "label": cross_validate,
        "tags": cross_validate_tags,
        "values": cross_validate_values,
    }
    run = runs[target]
    result = run(
        cache, models=",".join(dict.fromkeys(node.expr for node in models.values())), repeats=repeats, **options
    )
    reported = measures(target, getattr(result, "names", ()))
    scores = {name: fold_scores(result, node.expr, target) for name, node in models.items()}
    figures = {name: {m: headline(result, node.expr, m, target) for m in reported} for name, node in models.items()}
    best_input = {m: max(inputs, key=lambda name: figures[name][m]) for m in reported}
    k = result.n_folds
    rows = {}
    for name, node in models.items():
        rows[name] = {
            "model": node.expr,
            **figures[name],
            "vs_late": {m: paired(scores[name][m], scores["late"][m], k=k) for m in reported},
            "vs_best_input": {m: paired(scores[name][m], scores[best_input[m]][m], k=k) for m in reported},
        }
    document = {"target": target, "measures": list(reported), "inputs": inputs, "best_input": best_input}
    return document | {"folds": k, "repeats": repeats, "rules": rows, "fold_scores": scores}


def decide(studies: Mapping[str, dict[str, Any]], *, tolerance: float = 0.005) -> dict[str, Any]:
    """The protocol's decision over the ``studies`` of every set (``compare_rules``'s documents, by set; a study of
    values is a set per value): starting from ``late``, each rule in ``RULES`` order replaces the default of the
    moment where it is better on some set by more than the paired interval's half-width (its lower end above 0) and
    worse on none by more than ``tolerance``; a rule some set's study did not measure (``compare_rules``' ``rules``)
    replaces nothing. Returns the default, the sets in order and, per rule, the comparisons that decided it."""
    decided = [
        (name if len(decided_by(study)) == 1 else f"{name} {measure.removeprefix('ccc_')}", study, measure)
        for name, study in studies.items()
        for measure in decided_by(study)
    ]
    default, steps = "late", []
    for rule in RULES[1:]:
        against, unmeasured = [], []
        for name, study, measure in decided:
            folds = study["fold_scores"]
            if rule not in folds:
                unmeasured.append(name)
                continue
            against.append({"set": name, **paired(folds[rule][measure], folds[default][measure], k=study["folds"])})
        better = any(a["interval"][0] > 0 for a in against) and all(a["mean"] >= -tolerance for a in against)
        step = {"rule": rule, "against": default, "per_set": against, "replaces": better and not unmeasured}
        steps.append(step | ({"not_measured": unmeasured} if unmeasured else {}))
        if step["replaces"]:
            default = rule
    return {"default": default, "sets": [name for name, _, _ in decided], "steps": steps}


def _difference(d: dict[str, Any]) -> str:
    low, high = d["interval"]
    return f"{d['mean']:+.3f} ({low:+.3f}, {high:+.3f}), {d['won']}-{d['lost']}"


def study_table(document: dict[str, Any]) -> str:
    """A study as a markdown table: each rule's figures and, per measure it is decided by, its paired differences
    (mean, 95 % interval, folds won-lost) against ``late`` and the best input."""
    reported = document["measures"]
    main = decided_by(document)
    best = document["best_input"]
    header = ["rule", "model", *reported]
    for measure in main:
        of = "" if len(main) == 1 else f"{measure}, "
        header += [f"vs late{f' ({measure})' if of else ''}", f"vs {best[measure]} ({of}best input)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in document["rules"].items():
        cells = [name, f"`{row['model']}`", *(f"{row[m]:.3f}" for m in reported)]
        for measure in main:
            cells += [_difference(row["vs_late"][measure]), _difference(row["vs_best_input"][measure])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def decision_table(decision: dict[str, Any]) -> str:
    """The decision's walk as a markdown table, then the default it ends on."""
    sets = decision["sets"]
    lines = ["| rule | against | " + " | ".join(sets) + " | replaces |", "|" + "---|" * (3 + len(sets))]
    for step in decision["steps"]:
        per_set = {a["set"]: _difference(a) for a in step["per_set"]} | dict.fromkeys(
            step.get("not_measured", []), "not measured"
        )
        replaces = "yes" if step["replaces"] else "no"
        lines.append("| " + " | ".join([step["rule"], step["against"], *(per_set[s] for s in sets), replaces]) + " |")
    return "\n".join([*lines, "", f"default: {decision['default']}"])
