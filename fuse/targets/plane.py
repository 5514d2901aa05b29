"""One emotion plane from every label: a model of valence and arousal that learns from several sets at once.

A **rated** set carries valence and arousal on a scale (musemo's ratings); a **placed** set carries classes that have a
place on the plane (4Q's quadrants, Q1..Q4: the signs of valence and arousal, by their names; any other classes by the
places a config gives them). Every set is read from a cache of its own, computed with the same feature sets (the same
fingerprints): the model reads the inputs they all hold.

How the placed songs are learnt from (``METHODS``, compared by the plane study, whose last section says why the
default is ``gated``: docs/studies/plane.md):

- ``own``: the scored set's own labels alone; a placed song at the centre of its quadrant on the rated scale;
- ``rated``: the rated sets alone;
- ``pseudo-equal``: every set; each placed song at the mean rated position of its quadrant among the rated training
  rows (an outer test fold's ratings place nothing), weighing as much as one rated clip;
- ``pseudo-inner``: as ``pseudo-equal``, the placed songs' total weight, as a multiple of the rated clips' total,
  chosen on inner folds among ``PLACED_WEIGHTS`` by the mean over the sets of each one's inner relative squared error;
- ``one-sided``: as ``pseudo-equal``, but a placed song predicted further out on its side than its position costs
  nothing (a squared hinge at the position: a label says a song's side, not how far out it lies), fitted by giving
  such a song its prediction as its target and fitting again (``ONE_SIDED_FITS`` fits in all);
- ``gated``: two experts, ``rated``'s model and one of the placed songs alone (each at its quadrant's mean rated
  position), mixed by a logistic gate's probability that a clip's music is like the rated sets' (``GatedValues``):
  what each set knows holds for music like its own.

Fitting the squared error of the placed positions makes a head's best prediction the probability-weighted mean of the
quadrants' positions, a proper score of where a label puts a song. The model is the value model of
``fuse.targets.regression`` (ridge heads, late fusion, every choice on grouped inner folds) with row weights, mapped
onto the rated scale on the rated rows' inner predictions alone.

Cross-validation scores each set on its own folds (repeat 0 the cache's, then folds drawn again with seeds 1, 2, ...,
groups and strata kept), every other set's rows in every training fold of a method that reads them, never scored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from mvemo.cache.read import Cache
from mvemo.fuse.compose import Features, Late, Node, inputs_of
from mvemo.fuse.fitted import concatenated
from mvemo.fuse.grammar import parse_models
from mvemo.fuse.heads.linear import LogisticHead
from mvemo.fuse.inputs import input_set_name, read_input
from mvemo.fuse.metrics import corrected_interval, paired
from mvemo.fuse.models import fusion_inputs
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.regression import FittedValues, fit_values, relative_error
from mvemo.fuse.targets.values import ccc, value_metrics
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor
from mvemo.manifests.folds import draw_folds
from mvemo.manifests.targets import QUADRANTS, VALUE_COLUMNS, quadrants

METHODS = ("own", "rated", "pseudo-equal", "pseudo-inner", "one-sided", "gated")
# the methods that read every set's rows, and the rounds of a one-sided fit (the fixed point of its squared hinge)
JOINT_METHODS = ("pseudo-equal", "pseudo-inner", "one-sided", "gated")
ONE_SIDED_FITS = 3
# The default: by the project's rule (clearly better on a set, clearly worse on none) over the plane study's paired
# intervals on both sets; the study's own stricter margin kept `rated` (docs/studies/plane.md, "The project's decision")
DEFAULT_METHOD = "gated"
# pseudo-inner: the placed songs' total weight, as a multiple of the rated clips' total, chosen on inner folds
PLACED_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
# Each of 4Q's quadrants as the signs of its valence and arousal (Russell's circumplex)
QUADRANT_PLACES = {"Q1": (1.0, 1.0), "Q2": (-1.0, 1.0), "Q3": (-1.0, -1.0), "Q4": (1.0, -1.0)}
MODEL = "integrated-audio"  # the default model: the plain late fusion of every input the sets share
RATED_MEASURES = ("ccc_valence", "ccc_arousal")
PLACED_MEASURES = ("valence_roc_auc", "quadrant_accuracy", "arousal_roc_auc", "calm_over_sad_roc_auc")


@dataclass(frozen=True)
class PlaneSet:
    """One set of the plane: its ``name``, whether it is ``rated``, each clip's ``targets`` (n, 2): its ratings, or
    the signs of its class's place (±1, ±1), and its groups (named after the set), stored folds, strata (the
    quadrant, 0..3) and clip ids; ``blocks``: each shared input's rows (n, d)."""

    name: str
    rated: bool
    targets: np.ndarray
    groups: list[str]
    folds: np.ndarray
    strata: np.ndarray
    clip_ids: list[str]
    blocks: dict[str, np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Plane:
    """The sets a values model learns from, on the rated sets' ``scale``, with the ``inputs`` they all hold."""

    sets: list[PlaneSet]
    scale: tuple[float, float]
    inputs: list[str]

    def placed_centres(self) -> np.ndarray:
        """Each quadrant's centre on the scale (4, 2), Q1..Q4: where ``own`` puts a placed song."""
        low, high = self.scale
        signs = np.array([QUADRANT_PLACES[q] for q in QUADRANTS])
        return (low + high) / 2 + signs * (high - low) / 4


def load_plane(caches: Sequence[Cache], *, places: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> Plane:
    """The plane of ``caches``: each a rated set (it holds valence and arousal on a scale) or a placed set (its
    classes have a place: 4Q's quadrant names, or those ``places`` gives for the set, by its cache folder's name,
    as {class: (valence sign, arousal sign)}); every input the caches all hold with the same fingerprint.

    Raises
    ------
    ConfigError
        Naming the cache and the fix: one of neither kind, no rated set, rated sets of different scales, a class
        without a place, no input shared, or an input computed otherwise in one cache than in another.
    """
    places = dict(places or {})
    names = _set_names(caches)
    rated = [c for c in caches if set(VALUE_COLUMNS) <= set(c.targets.value_names) and c.targets.scale]
    if not rated:
        raise ConfigError(
            f"caches {names}: none holds valence and arousal ratings on a scale; a values model learns its scale from"
            " a rated set (a manifest with valence and arousal columns and a '# scale:' line)"
        )
    scales = {(float(c.targets.scale[0]), float(c.targets.scale[1])) for c in rated if c.targets.scale}
    if len(scales) > 1:
        raise ConfigError(f"the rated sets {names} have scales {sorted(scales)}: give them ratings on one scale")
    scale = scales.pop()
    inputs = _shared_inputs(caches, names)
    sets = [_plane_set(cache, name, scale, inputs, places.get(name)) for cache, name in zip(caches, names)]
    return Plane(sets, scale, inputs)


def _set_names(caches: Sequence[Cache]) -> list[str]:
    """Each cache's name in reports and in ``places``: its folder's name, numbered where two share one."""
    names = [Path(c.path).name for c in caches]
    return [name if names.count(name) == 1 else f"{name}-{i + 1}" for i, name in enumerate(names)]


def _shared_inputs(caches: Sequence[Cache], names: list[str]) -> list[str]:
    """The inputs of the default fusions (``fuse.models.fusion_inputs``) that every cache holds, each computed alike
    in all (the same fingerprint), in the first cache's order."""
    held = [fusion_inputs(cache) for cache in caches]
    shared = [name for name in held[0] if all(name in other for other in held[1:])]
    if not shared:
        raise ConfigError(
            f"caches {names} share no input (they hold {held}); compute the same sets and nets in each with one config"
        )
    for name in shared:
        prints = {n: c.fingerprint(input_set_name(c, name, None)) for n, c in zip(names, caches)}
        if len(set(prints.values())) > 1:
            raise ConfigError(
                f"input {name!r} was computed otherwise in {names[1:]} than in {names[0]!r} (fingerprints"
                f" {', '.join(f'{n} {p[:12]}' for n, p in prints.items())}): compute every set with one config"
                " (`mvemo extract --config`), so that one model reads them all"
            )
    return shared


def _plane_set(
    cache: Cache,
    name: str,
    scale: tuple[float, float],
    inputs: list[str],
    places: Mapping[str, Sequence[float]] | None,
) -> PlaneSet:
    targets_of = cache.targets
    if set(VALUE_COLUMNS) <= set(targets_of.value_names) and targets_of.scale:
        columns = [targets_of.value_names.index(v) for v in VALUE_COLUMNS]
        targets = np.asarray(targets_of.values, dtype=np.float64)[:, columns]
        strata = quadrants(targets, scale)
        rated = True
    else:
        given = places or (QUADRANT_PLACES if set(cache.classes) <= set(QUADRANT_PLACES) else {})
        unplaced = [c for c in cache.classes if c not in given]
        if not cache.classes or unplaced:
            raise ConfigError(
                f"cache {name!r}: neither valence and arousal ratings nor classes with a place on the plane"
                f" ({unplaced or 'no classes'} have none); name its classes Q1..Q4, or give each class's signs in a"
                f" [[sets]] table: places = {{ {cache.classes[0] if cache.classes else 'calm'} = [1, -1], ... }}"
            )
        signs = {c: tuple(float(np.sign(v)) for v in given[c]) for c in cache.classes}
        if any(0.0 in s or len(s) != 2 for s in signs.values()):
            raise ConfigError(f"cache {name!r}: places {dict(given)}: each class needs two signs, ±1 each")
        targets = np.array([signs[cache.classes[y]] for y in cache.y], dtype=np.float64)
        strata = quadrants(targets, (-1.0, 1.0))
        rated = False
    if len(cache) == 0 or cache.folds.min() < 0:
        raise ConfigError(f"cache {name!r} has no folds; run `mvemo manifest folds MANIFEST`, then `mvemo extract`")
    read = {i: read_input(cache, input_set_name(cache, i, None)) for i in inputs}
    done = np.logical_and.reduce([d for _, d in read.values()])
    rows = np.flatnonzero(done)
    return PlaneSet(
        name,
        rated,
        targets[rows],
        [f"{name}:{cache.groups[r]}" for r in rows],
        np.asarray(cache.folds)[rows],
        strata[rows],
        [cache.clip_ids[r] for r in rows],
        {i: np.asarray(X, dtype=np.float64)[rows] for i, (X, _) in read.items()},
    )


def plane_model(plane: Plane, names: str | None = None) -> tuple[str, Node]:
    """The model of ``names`` (one, in the grammar of ``fuse.grammar`` over the shared inputs), else the plain late
    fusion of every shared input (``MODEL``)."""
    alone = {name: Features((name,)) for name in plane.inputs}
    default = Late(tuple(alone.values())) if len(alone) > 1 else next(iter(alone.values()))
    if not names:
        return MODEL, default
    known = alone | {MODEL: default, "integrated": default}

    def unknown(name: str) -> ConfigError:
        return ConfigError(f"--models {names!r}: {name!r} is no input every set holds ({', '.join(plane.inputs)})")

    models = parse_models(names, known, unknown)
    if len(models) != 1:
        raise ConfigError(f"--models {names!r}: a values model of several sets is one model; name one")
    return models[0]


class GatedValues:
    """Two experts mixed by a gate: ``rated`` (the rated sets' model) weighed by the gate's probability that a clip's
    music is like the rated sets', ``placed`` (the placed songs' model) by the rest; the gate a logistic head over the
    ``inputs``' columns side by side, its C chosen on inner folds."""

    def __init__(
        self, node: Node, gate: LogisticHead, inputs: tuple[str, ...], rated: FittedValues, placed: FittedValues
    ) -> None:
        self.node, self.gate, self.gate_inputs, self.rated, self.placed = node, gate, inputs, rated, placed

    def rated_share(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each row's probability that its music is like the rated sets' (n,)."""
        proba = self.gate.predict_proba(concatenated(blocks, self.gate_inputs))
        return proba[:, list(self.gate.classes_).index(1)]

    def predict(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        share = self.rated_share(blocks)[:, None]
        return share * self.rated.predict(blocks) + (1 - share) * self.placed.predict(blocks)

    def choices(self) -> dict[str, Any]:
        return {"gate": self.gate.selected_, "rated": self.rated.choices(), "placed": self.placed.choices()}


@dataclass
class PlaneFit:
    """A values model fitted on rows of several sets, and what was chosen for it: the placed songs' weight."""

    model: FittedValues | GatedValues
    placed_weight: float | None

    def choices(self) -> dict[str, Any]:
        return {"placed_weight": self.placed_weight, **self.model.choices()}


def fit_plane(
    plane: Plane,
    node: Node,
    taken: Mapping[str, np.ndarray],
    method: str,
    selection: SelectionConfig,
) -> PlaneFit:
    """``node`` fitted by ``method`` on the rows ``taken`` of each set (its name to row indices; a set left out takes
    none), every choice on grouped inner folds of those rows (module doc)."""
    if method not in METHODS:
        raise ConfigError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    parts = [(s, taken[s.name]) for s in plane.sets if s.name in taken and len(taken[s.name])]
    blocks = {i: np.concatenate([s.blocks[i][rows] for s, rows in parts]) for i in plane.inputs}
    groups = [s.groups[r] for s, rows in parts for r in rows]
    strata = np.concatenate([s.strata[rows] for s, rows in parts])
    rated = np.concatenate([np.full(len(rows), s.rated) for s, rows in parts])
    of_set = np.concatenate([np.full(len(rows), k) for k, (_, rows) in enumerate(parts)])
    targets = np.concatenate([s.targets[rows] for s, rows in parts])
    placed = ~rated
    if rated.any():
        positions = np.array([_mean_or_nan(targets[rated & (strata == q)]) for q in range(len(QUADRANTS))])
        missing = [QUADRANTS[q] for q in np.unique(strata[placed]) if np.isnan(positions[q]).any()]
        if missing:
            raise ConfigError(f"no rated clip lies in quadrant {missing} among the training rows: nothing places them")
        targets[placed] = positions[strata[placed]]
    else:
        targets[placed] = plane.placed_centres()[strata[placed]]

    def fit(weight: float) -> FittedValues:
        weights = np.ones(len(targets))
        if placed.any() and rated.any():
            weights[placed] = weight * rated.sum() / placed.sum()
        return fit_values(
            node, blocks, targets, groups=groups, strata=strata, selection=selection, weights=weights, rated=rated
        )

    both = bool(placed.any() and rated.any())
    equal = placed.sum() / max(rated.sum(), 1)  # each placed song weighs as one rated clip
    if method == "gated" and both:
        return PlaneFit(_gated(node, blocks, targets, groups, strata, rated, selection), None)
    if method == "one-sided" and both:
        return PlaneFit(_one_sided(fit, equal, targets, placed, blocks, plane.scale), float(equal))
    if method != "pseudo-inner" or not both:
        return PlaneFit(fit(equal), float(equal) if both else None)
    fitted = {w: fit(w) for w in PLACED_WEIGHTS}
    errors = {
        w: float(np.mean([relative_error(targets[of_set == k], m.inner_pred[of_set == k]) for k in range(len(parts))]))
        for w, m in fitted.items()
    }
    best = min(PLACED_WEIGHTS, key=lambda w: errors[w])
    return PlaneFit(fitted[best], best)


def _gated(
    node: Node,
    blocks: Mapping[str, np.ndarray],
    targets: np.ndarray,
    groups: list[str],
    strata: np.ndarray,
    rated: np.ndarray,
    selection: SelectionConfig,
) -> GatedValues:
    """``gated``'s experts, each fitted on its own rows (the rated expert mapped onto the ratings' scale), and its
    gate, fitted on both to tell a rated clip from a placed song."""
    experts = []
    for rows in (np.flatnonzero(rated), np.flatnonzero(~rated)):
        experts.append(
            fit_values(
                node,
                {name: X[rows] for name, X in blocks.items()},
                targets[rows],
                groups=[groups[r] for r in rows],
                strata=strata[rows],
                selection=selection,
                rated=rated[rows],
            )
        )
    inputs = inputs_of(node)
    gate = LogisticHead(inner_folds=selection.inner_folds, random_state=selection.seed)
    gate.fit(concatenated(blocks, inputs), rated.astype(np.int64), groups=groups)
    return GatedValues(node, gate, inputs, *experts)


def _one_sided(
    fit: Callable[[float], FittedValues],
    weight: float,
    targets: np.ndarray,
    placed: np.ndarray,
    blocks: Mapping[str, np.ndarray],
    scale: tuple[float, float],
) -> FittedValues:
    """The fixed point of the squared hinge at each placed song's position: fitted, then each placed song predicted
    beyond its position on its side given its prediction as its target (it then costs nothing), fitted again;
    ``targets`` (n, 2) is changed in place, as ``fit`` reads it."""
    positions = targets[placed].copy()
    side = np.sign(positions - (scale[0] + scale[1]) / 2)
    model = fit(weight)
    for _ in range(ONE_SIDED_FITS - 1):
        pred = model.predict({name: X[placed] for name, X in blocks.items()})
        targets[placed] = np.where(side * (pred - positions) > 0, pred, positions)
        model = fit(weight)
    return model


def _mean_or_nan(rows: np.ndarray) -> np.ndarray:
    return rows.mean(axis=0) if len(rows) else np.full(rows.shape[1], np.nan)


def taken_rows(plane: Plane, method: str, scored: PlaneSet, train: np.ndarray) -> dict[str, np.ndarray]:
    """The training rows of ``method`` when ``scored`` is scored with its rows ``train``: its own, and every other
    set's rows that the method reads (``own``: none; ``rated``: the rated sets'; the others: every set's)."""
    taken = {scored.name: train} if method != "rated" or scored.rated else {}
    for other in plane.sets:
        if other is not scored and (method in JOINT_METHODS or (method == "rated" and other.rated)):
            taken[other.name] = np.arange(len(other))
    return taken


@dataclass
class PlaneResult:
    """Out-of-fold predictions of each method on each set, repeat after repeat, and what was chosen per fold."""

    plane: Plane
    methods: tuple[str, ...]
    n_folds: dict[str, int]
    # method -> set -> per repeat: (predictions (n, 2), folds (n,), per fold the choices)
    runs: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]]]]


def cross_validate_plane(
    plane: Plane,
    node: Node,
    *,
    methods: Sequence[str] = (DEFAULT_METHOD,),
    repeats: int = 1,
    selection: SelectionConfig | None = None,
    executor: Executor | None = None,
) -> PlaneResult:
    """Each method scored on each set, on the set's folds of each repeat (module doc), every other set's rows in
    every training fold of a method that reads them."""
    selection = selection or SelectionConfig(value_heads=("ridge",))
    jobs = [(m, s.name, r) for m in methods for s in plane.sets for r in range(repeats)]
    run = _FoldRunner(plane, node, selection)
    outcomes = list(executor.map(run, jobs)) if executor is not None else [run(job) for job in jobs]
    runs: dict[str, dict[str, list[Any]]] = {m: {s.name: [] for s in plane.sets} for m in methods}
    for (method, name, _), outcome in zip(jobs, outcomes):
        runs[method][name].append(outcome)
    n_folds = {s.name: int(s.folds.max()) + 1 for s in plane.sets}
    return PlaneResult(plane, tuple(methods), n_folds, runs)


@dataclass(frozen=True)
class _FoldRunner:
    """Every outer fold of one (method, scored set, repeat): picklable, for an executor's workers."""

    plane: Plane
    node: Node
    selection: SelectionConfig

    def __call__(self, job: tuple[str, str, int]) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
        method, name, repeat = job
        scored = next(s for s in self.plane.sets if s.name == name)
        k = int(scored.folds.max()) + 1
        folds = scored.folds if repeat == 0 else draw_folds(scored.strata, scored.groups, k=k, seed=repeat)
        pred = np.zeros_like(scored.targets)
        choices = []
        for fold in range(k):
            test, train = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
            fitted = fit_plane(
                self.plane, self.node, taken_rows(self.plane, method, scored, train), method, self.selection
            )
            pred[test] = fitted.model.predict({i: X[test] for i, X in scored.blocks.items()})
            choices.append(fitted.choices())
        return pred, folds, choices


def set_scores(
    plane: Plane, scored: PlaneSet, pred: np.ndarray, rows: np.ndarray | None = None
) -> dict[str, float | None]:
    """The measures of ``pred`` (n, 2) of ``scored``'s clips (``rows``, default all): each value's CCC, r, R² and
    RMSE and the quadrant accuracy for a rated set; the valence and arousal ROC-AUC, calm over sad and the quadrant
    accuracy from the signs for a placed set."""
    rows = np.arange(len(scored)) if rows is None else rows
    truth, pred = scored.targets[rows], pred[rows]
    accuracy = float(np.mean(quadrants(pred, plane.scale) == scored.strata[rows]))
    if scored.rated:
        scores: dict[str, float | None] = {"quadrant_accuracy": accuracy}
        for d, name in enumerate(VALUE_COLUMNS):
            scores |= {f"{key}_{name}": value for key, value in value_metrics(truth[:, d], pred[:, d]).items()}
        return scores
    calm_or_sad = np.isin(scored.strata[rows], (2, 3))
    return {
        "valence_roc_auc": _auc(truth[:, 0] > 0, pred[:, 0]),
        "arousal_roc_auc": _auc(truth[:, 1] > 0, pred[:, 1]),
        "calm_over_sad_roc_auc": _auc(truth[calm_or_sad, 0] > 0, pred[calm_or_sad, 0]),
        "quadrant_accuracy": accuracy,
    }


def _auc(high: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(high, scores)) if 0 < high.sum() < len(high) else None


def summarize_plane(result: PlaneResult) -> dict[str, Any]:
    """Per method and set: each measure pooled over the set's clips, averaged over repeats (with its range), the
    measures decided by per fold (``fold_scores``: per repeat, per fold), and the placed weights chosen per fold."""
    document: dict[str, Any] = {
        "sets": {
            s.name: {"kind": "rated" if s.rated else "placed", "clips": len(s), "folds": result.n_folds[s.name]}
            for s in result.plane.sets
        },
        "scale": list(result.plane.scale),
        "inputs": result.plane.inputs,
        "methods": {},
        "fold_scores": {},
        "placed_weights": {},
    }
    for method in result.methods:
        for scored in result.plane.sets:
            runs = result.runs[method][scored.name]
            pooled = [set_scores(result.plane, scored, pred) for pred, _, _ in runs]
            measures = RATED_MEASURES if scored.rated else PLACED_MEASURES
            per_fold = {
                m: [
                    [_fold_measure(result.plane, scored, pred, np.flatnonzero(folds == f), m) for f in np.unique(folds)]
                    for pred, folds, _ in runs
                ]
                for m in measures
            }
            document["methods"].setdefault(method, {})[scored.name] = {
                key: _over_repeats([p[key] for p in pooled], per_fold.get(key), result.n_folds[scored.name])
                for key in pooled[0]
            }
            document["fold_scores"].setdefault(method, {})[scored.name] = per_fold
            weights = [c["placed_weight"] for _, _, choices in runs for c in choices]
            document["placed_weights"].setdefault(method, {})[scored.name] = _tally(weights)
    return document


def _fold_measure(plane: Plane, scored: PlaneSet, pred: np.ndarray, rows: np.ndarray, measure: str) -> float | None:
    if measure.startswith("ccc_"):
        d = VALUE_COLUMNS.index(measure.removeprefix("ccc_"))
        return ccc(scored.targets[rows, d], pred[rows, d])
    return set_scores(plane, scored, pred, rows)[measure]


def _over_repeats(values: list[float | None], folds: list[list[float | None]] | None, k: int) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    summary: dict[str, Any] = {"mean": float(np.mean(present)) if present else None}
    summary |= {"min": min(present), "max": max(present)} if present else {}
    if folds is not None:
        scores = [v for repeat in folds for v in repeat if v is not None]
        summary["per_fold"] = {"mean": float(np.mean(scores)), "interval": corrected_interval(scores, k=k)}
    return summary


def _tally(weights: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in weights:
        counts[str(w)] = counts.get(str(w), 0) + 1
    return counts


def compare_methods(document: dict[str, Any], *, against: Sequence[str] = ("rated", "own")) -> dict[str, Any]:
    """Each method's paired difference fold by fold against each of ``against`` on every set and measure
    (``fuse.metrics.paired``: mean, corrected 95 % interval, folds won-lost)."""
    scores = document["fold_scores"]
    return {
        method: {
            name: {
                measure: {
                    other: paired(folds, scores[other][name][measure], k=document["sets"][name]["folds"])
                    for other in against
                    if other in scores and other != method
                }
                for measure, folds in per_set.items()
            }
            for name, per_set in sets.items()
        }
        for method, sets in scores.items()
    }


# what the protocol decides by: per kind of set, its headline measures
HEADLINES = {"rated": ("ccc_valence", "ccc_arousal"), "placed": ("valence_roc_auc", "quadrant_accuracy")}


def decide_method(document: dict[str, Any], *, tolerance: float = 0.01) -> dict[str, Any]:
    """The protocol's decision (docs/studies/plane.md): the default starts as ``rated``; ``pseudo-equal``, then
    ``pseudo-inner``, then ``one-sided`` replaces the default of the moment where, against it, it is better on some
    headline measure of some set by more than the paired interval's half-width and worse on none by more than
    ``tolerance``."""
    scores, sets = document["fold_scores"], document["sets"]
    default, steps = "rated", []
    for method in JOINT_METHODS:
        if method not in scores:
            continue
        per = [
            (name, measure, paired(scores[method][name][measure], scores[default][name][measure], k=info["folds"]))
            for name, info in sets.items()
            for measure in HEADLINES[info["kind"]]
        ]
        better = any(p["interval"][0] > 0 for _, _, p in per)
        worse = [f"{name} {measure}" for name, measure, p in per if p["mean"] < -tolerance]
        replaces = better and not worse
        steps.append(
            {
                "method": method,
                "against": default,
                "paired": {f"{n} {m}": p for n, m, p in per},
                "clearly_better": better,
                "worse": worse,
                "replaces": replaces,
            }
        )
        if replaces:
            default = method
    return {"default": default, "steps": steps, "tolerance": tolerance}
