"""The one loop of nested cross-validation, whatever the target: every model x every outer fold x every repeat.

For test fold k, every model is fitted on the other folds' rows of the inputs written for fold k (nets fine-tuned
without fold k), with each choice made on inner folds of those rows, and predicts fold k. Repeat 0 uses the
manifest's folds, stored in the cache; repeat r > 0 draws folds again with seed r, groups and stratification kept,
which only inputs that no fold trained allow: re-splitting would put clips that trained a fold's nets into its test
set. What a fit learns and predicts is the target kind's (``TargetKind``): classes (``fuse.cv``), tags
(``fuse.targets.tags``), values (``fuse.targets.values``); the folds, the inputs each fold reads, the clip counts,
the notes and the fits' scheduling are this module's, written once for the three.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from mvemo.cache.read import Cache, CacheLike, PinnedCache, opened
from mvemo.fuse.heads.upper_net import UpperLayers
from mvemo.fuse.inputs import in_sample_inputs, input_set_name, layers_above, missing_reasons, patch_count, read_input
from mvemo.fuse.models import (
    FusionModel,
    complete_inputs,
    incomplete_inputs,
    input_sets,
    names_a_named_model,
    per_patch_inputs,
    random_init_nets,
    select_models,
)
from mvemo.fuse.provenance import fine_tuned_nets, protocol
from mvemo.manifests.errors import CacheError, ConfigError
from mvemo.manifests.executor import Executor, Progress
from mvemo.manifests.folds import draw_folds, iterative_folds, require_whole_groups


class TooFewToChoose(ConfigError):
    """A class has fewer than two groups among a fold's training rows: nothing can be chosen on inner folds."""


@dataclass(frozen=True)
class Labels:
    """What the folds and clip counts know of a target: the names its rows are counted by (classes, or the
    quadrants of values), each row's index among them, and what the folds of repeats are stratified by: ``strata``,
    or for tags every tag at once (``tag_matrix``)."""

    classes: tuple[str, ...]
    y: np.ndarray
    strata: np.ndarray
    tag_matrix: np.ndarray | None = None


@dataclass
class FoldOutcome:
    """One model fitted on one outer fold's training rows: its predictions ``pred`` for the fold's test ``rows``
    (class probabilities, each tag's probability, or the values), which (row, output) pairs are scored (``scored``,
    None: all), what was chosen on inner folds (``choices``, ``described``), the notes, and for classes and tags the
    inner folds' accuracy and the thresholds chosen there; ``failed``: the tags that could not choose, with why."""

    rows: np.ndarray
    pred: np.ndarray
    choices: Any = field(default_factory=dict)
    described: Any = ""
    notes: list[str] = field(default_factory=list)
    inner_accuracy: float | None = None
    threshold: Any = 0.5
    scored: np.ndarray | None = None
    failed: dict[str, str] = field(default_factory=dict)


# fit(model, read, train, test, fold): one model of one fold, ``read`` its inputs' matrices of every row (a cut's
# left in the cache, ``fuse.inputs.CutRows``)
FoldFit = Callable[[FusionModel, dict[str, np.ndarray], np.ndarray, np.ndarray, int], FoldOutcome]


class TargetKind(Protocol):
    """What a kind of target brings to the loop: its ``labels`` (for folds and clip counts) and, per outer fold, the
    function that fits one model on the training rows and predicts the test rows (``fitter``; given the rows'
    groups and the fold's inputs, so that models on the same rows share their fits)."""

    @property
    def labels(self) -> Labels: ...

    def fitter(self, groups: list[str], inputs: FoldInputs) -> FoldFit: ...


@dataclass(frozen=True)
class FoldInputs:
    """What every fit of one test fold reads, fixed before any fit: the set each input reads, and per model the rows
    that hold all its inputs (read once, so that a writer still adding rows cannot make the fits and the clip counts
    disagree)."""

    sets: dict[str, str]
    usable: dict[str, np.ndarray]
    patches: dict[str, int]
    upper: dict[str, UpperLayers] = field(default_factory=dict)
    in_sample: frozenset[str] = frozenset()  # ``fuse.inputs.in_sample_inputs``


def sets_read(cache: Cache, models: Iterable[FusionModel]) -> list[str]:
    """Every cached set the ``models`` read, for any test fold or the final model, sorted."""
    return sorted({s for m in models for name in m.inputs for s in input_sets(cache, name)})


@dataclass(frozen=True)
class Basis:
    """What a cross-validation scored from, for the final model fitted after it: its models, the cache pinned to the
    clip table and to every set those models read, and which of the inputs that decided the models (``decided_by``;
    None: every input, as for the default models and the named ones, ``integrated`` say) stage one had not finished."""

    models: tuple[FusionModel, ...]
    pin: PinnedCache
    incomplete: frozenset[str]
    decided_by: tuple[str, ...] | None

    @classmethod
    def of(cls, cache: Cache, models: list[FusionModel], names: str | None) -> Basis:
        """The basis of ``models`` (``--models`` ``names``) fitted on ``cache`` as it is now: no set they do not read
        is opened, but where every input's completeness decided them."""
        decided_by = None
        if names and names.strip() and not names_a_named_model(names):
            decided_by = tuple(dict.fromkeys(name for m in models for name in m.inputs))
        incomplete = frozenset(incomplete_inputs(cache, decided_by))
        return cls(tuple(models), cache.pin(sets_read(cache, models)), incomplete, decided_by)

    @property
    def sets(self) -> list[str]:
        """Every set the models read (those a report and a saved model describe and fingerprint)."""
        return [set_name for set_name, _ in self.pin.stamps]

    def require_unchanged(self, cache: Cache) -> None:
        """Raise ``CacheError`` in one line unless ``cache`` is as the cross-validation read it: the same clips, every
        set its models read as it was, and the same of the inputs that decided them complete."""
        self.pin.require_same(cache)
        for set_name in self.sets:
            self.pin.require_set(cache, set_name)
        now = set(incomplete_inputs(cache, self.decided_by))
        for name in sorted(now ^ self.incomplete):
            raise CacheError(
                f"cache {str(cache.path)!r}: {name} became {'incomplete' if name in now else 'complete'} since the"
                " cross-validation, so its models are not those of the cache now; run `mvemo fuse` again once"
                " `mvemo extract` has finished"
            )


@dataclass
class FoldRuns:
    """What the loop did: the models, the folds of each repeat, each model's outcome per repeat and fold
    (``outcomes[r][model][fold]``), the clips each model used and left out, the notes of the run and its folds, and
    the target ``kind`` that fitted them."""

    models: list[FusionModel]
    n_folds: int
    protocol: str
    fine_tuned: tuple[str, ...]
    repeat_folds: list[np.ndarray]
    outcomes: list[dict[str, list[FoldOutcome]]]
    clips: dict[str, Any]
    notes: list[str]
    clip_ids: list[str]
    groups: list[str]
    # models that read embeddings of nets fine-tuned per fold (their inner scores are optimistic)
    fine_tuned_models: list[str]
    kind: TargetKind
    basis: Basis

    def pooled(self, r: int, model: str) -> list[FoldOutcome]:
        """The outcomes of ``model`` in repeat ``r`` that predicted some row, fold after fold."""
        return [out for out in self.outcomes[r][model] if len(out.rows)]


def check_folds(cache: Cache, n_folds: int | None) -> int:
    """The cache's number of folds; ``n_folds`` must agree, and no fold may split a group (exit 2 otherwise)."""
    if len(cache) == 0 or cache.folds.min() < 0:
        raise CacheError(
            f"cache {str(cache.path)!r} has no folds;"
            " run `mvemo manifest folds MANIFEST --k 6`, then `mvemo extract` again"
        )
    require_whole_groups(cache.folds, cache.groups, cache.clip_ids, where=f"cache {str(cache.path)!r}")
    stored = int(cache.folds.max()) + 1
    if n_folds is not None and n_folds != stored:
        raise ConfigError(
            f"--folds {n_folds}: the cache holds the manifest's {stored} folds, and re-splitting would put clips"
            f" that trained a fold's nets into its test set; use --folds {stored} (or leave --folds out)"
        )
    return stored


# The matrices of the run in progress in this process (a cross-validation, or fuse's CV and final model): the sets
# one step (a fold, the final model) reads, kept for the next step while it reads them too (a set every fold shares,
# LLD statistics, a frozen net's embeddings) and dropped as soon as a step does not; all dropped when the run ends
# (``release_run``) or another starts. Memory: one step's inputs at a time, never every set a run has read.
_RUN: dict[str, Any] = {"id": None, "matrices": {}}


def run_matrices(run: str, cache: Cache, set_names: Iterable[str]) -> dict[str, np.ndarray]:
    """The float32 input matrix of each of ``set_names`` (``fuse.inputs.read_input``: a cut's stays in the cache),
    those the ``run``'s last step read in this process reused, the others read."""
    if _RUN["id"] != run:
        _RUN.update(id=run, matrices={})
    held = _RUN["matrices"]
    if cache.pinned is not None:
        for set_name in set(set_names):
            cache.pinned.require_set(cache, set_name)
    keys = {set_name: (str(cache.path), set_name, cache.modified_ns(set_name)) for set_name in set(set_names)}
    matrices = {s: held[key] if key in held else read_input(cache, s)[0] for s, key in keys.items()}
    _RUN["matrices"] = {key: matrices[s] for s, key in keys.items()}
    return matrices


def release_run(run: str) -> None:
    """Drop the matrices that ``run`` read in this process."""
    if _RUN["id"] == run:
        _RUN.update(id=None, matrices={})


def new_run() -> str:
    """A name for a run whose matrices ``run_matrices`` holds until ``release_run``."""
    return uuid.uuid4().hex


def fold_inputs(cache: Cache, models: list[FusionModel], n_folds: int) -> list[FoldInputs]:
    """The ``FoldInputs`` of each test fold."""
    done: dict[str, np.ndarray] = {}
    per_fold = []
    for fold in range(n_folds):
        sets = {i: input_set_name(cache, i, fold) for m in models for i in m.inputs}
        for set_name in sets.values():
            if set_name not in done:
                done[set_name] = cache.done(set_name)
        usable = {m.name: np.logical_and.reduce([done[sets[i]] for i in m.inputs]) for m in models}
        patches = {i: n for i, s in sets.items() if (n := patch_count(cache, s)) is not None}
        per_fold.append(FoldInputs(sets, usable, patches, in_sample=in_sample_inputs(cache, sets)))
    return per_fold


def fit_fold(
    cache: CacheLike,
    models: tuple[FusionModel, ...],
    kind: TargetKind,
    folds: np.ndarray,
    fold: int,
    inputs: FoldInputs,
    run: str,
) -> dict[str, FoldOutcome]:
    """Every model fitted on the rows outside ``fold`` of ``folds`` and its predictions for the rows inside, as the
    target ``kind`` fits (its inputs' matrices those of ``run``, ``run_matrices``); ``cache`` the run's open cache,
    or the cache pinned to the clip table the run read (``cache.read.PinnedCache``), opened here. A model uses the rows
    that hold all its inputs (``inputs.usable``); a fold with no such test row is noted and not scored."""
    with opened(cache) as cache:
        groups = cache.groups
        matrices = run_matrices(run, cache, inputs.sets.values())
    fit = kind.fitter(groups, inputs)
    outcomes = {}
    for model in models:
        read = {i: matrices[inputs.sets[i]] for i in model.inputs}
        usable = inputs.usable[model.name]
        train = np.flatnonzero(usable & (folds != fold))
        test = np.flatnonzero(usable & (folds == fold))
        if len(test) == 0:
            note = f"{model.name}, fold {fold}: no test clip has all its inputs; not scored"
            outcomes[model.name] = FoldOutcome(test, np.zeros((0, 0)), notes=[note])
        else:
            outcomes[model.name] = fit(model, read, train, test, fold)
    return outcomes


def repeat_folds(
    cache: Cache,
    models: list[FusionModel],
    k: int,
    repeats: int,
    strata: np.ndarray,
    *,
    tag_matrix: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The folds of each repeat: the manifest's, then folds drawn with seeds 1, 2, ... (a draw equal to an earlier
    repeat's is skipped: it would count one split twice), stratified by ``strata``, or by every tag of
    ``tag_matrix`` at once (``manifests.folds.iterative_folds``). More than one repeat needs inputs that no fold
    trained (exit 2 otherwise). Drawn folds keep the cache's ``group`` column whole."""
    if repeats < 1:
        raise ConfigError(f"--repeats {repeats}: expected 1 or more")
    if repeats > 1:
        per_fold = sorted({s for m in models for i in m.inputs for s in [input_set_name(cache, i, 0)] if "/fold" in s})
        if per_fold:
            raise ConfigError(
                f"--repeats {repeats}: {', '.join(per_fold)} and the other folds' sets were fine-tuned per fold of the"
                " manifest, so other folds would test clips that trained them; use --repeats 1 with these, or"
                " embeddings of nets used as they are (--finetune none)"
            )
    drawn, seen = [cache.folds], {_partition(cache.folds)}
    for seed in range(1, 20 * repeats):
        if len(drawn) == repeats:
            return drawn
        if tag_matrix is None:
            folds = draw_folds(strata, cache.groups, k=k, seed=seed)
        else:
            folds = iterative_folds(tag_matrix, cache.groups, k=k, seed=seed)
        if _partition(folds) not in seen:
            drawn.append(folds)
            seen.add(_partition(folds))
    if len(drawn) < repeats:
        raise ConfigError(
            f"--repeats {repeats}: these clips and groups allow only {len(drawn)} different splits into {k} folds"
        )
    return drawn


def _partition(folds: np.ndarray) -> frozenset[frozenset[int]]:
    """A split as the set of its folds' rows, whatever the folds' numbers."""
    return frozenset(frozenset(np.flatnonzero(folds == f).tolist()) for f in np.unique(folds))


def run_folds(
    cache: Cache,
    kind: Callable[[Cache, list[FusionModel]], TargetKind],
    *,
    models: str | None = None,
    n_folds: int | None = None,
    repeats: int = 1,
    executor: Executor | None = None,
    progress: Progress | None = None,
    upper: Mapping[str, UpperLayers] | None = None,
    run: str | None = None,
) -> FoldRuns:
    """The loop: ``kind(cache, models)``'s fits of every model (``--models``, default ``fuse.models.available_models``)
    on every fold of every repeat, on ``executor`` (serial by default; ``progress(fits, total)`` wraps their results),
    the run's notes and clip counts. ``upper``: the published layers above each input cut below them
    (``fuse.heads.upper``); ``run``: the run whose matrices the fits read (``run_matrices``), kept for the caller to
    reuse and release; default one of this call's own, released when it ends."""
    k = check_folds(cache, n_folds)
    chosen = select_models(cache, models)
    target = kind(cache, chosen)
    labels = target.labels
    all_folds = repeat_folds(cache, chosen, k, repeats, labels.strata, tag_matrix=labels.tag_matrix)
    per_fold = [replace(f, upper=layers_above(cache, f.sets, upper or {})) for f in fold_inputs(cache, chosen, k)]
    clips, left_out_notes = clip_counts(cache, chosen, per_fold, labels)
    if not any(inputs.usable[m.name].any() for m in chosen for inputs in per_fold):
        first = next(iter(clips["models"].values()))["left_out"][0]
        raise CacheError(
            f"cache {str(cache.path)!r}: no clip holds every input of any model of {[m.name for m in chosen]}"
            f" (clip {first['clip_id']!r}: {first['reason']}); compute the inputs with `mvemo extract`, or name"
            " models of inputs the cache holds"
        )
    tasks = [(r, fold) for r in range(repeats) for fold in range(k)]
    n = len(tasks)
    # each fit opens the cache again (in a worker, or here), pinned to the clip table and the sets this run reads
    basis = Basis.of(cache, chosen, models)
    read, where = basis.sets, basis.pin
    this_run = run or new_run()
    results = (map if executor is None else executor.map)(
        fit_fold,
        [where] * n,
        [tuple(chosen)] * n,
        [target] * n,
        [all_folds[r] for r, _ in tasks],
        [fold for _, fold in tasks],
        [per_fold[f] for _, f in tasks],
        [this_run] * n,
    )
    outputs = list(progress(results, n) if progress else results)
    if run is None:
        release_run(this_run)
    for out in outputs:
        if isinstance(out, BaseException):
            raise out
    outcomes = [
        {m.name: [out[m.name] for (rr, _), out in zip(tasks, outputs) if rr == r] for m in chosen}
        for r in range(repeats)
    ]
    notes = run_notes(cache, models, left_out_notes)
    for r in range(repeats):
        for model in chosen:
            notes += [
                note if repeats == 1 else f"repeat {r}: {note}" for out in outcomes[r][model.name] for note in out.notes
            ]
    tuned_models = [m.name for m in chosen if any("/fold" in per_fold[0].sets[i] for i in m.inputs)]
    return FoldRuns(
        chosen,
        k,
        protocol(cache, read),
        tuple(fine_tuned_nets(cache, read)),
        all_folds,
        outcomes,
        clips,
        notes,
        cache.clip_ids,
        cache.groups,
        tuned_models,
        target,
        basis,
    )


def run_notes(cache: Cache, models: str | None, left_out: list[str]) -> list[str]:
    """What a run says of its inputs before any fit: those incomplete, the clips ``left_out`` (``clip_counts``),
    and the inputs the default fusions leave out (random-init nets, per-patch inputs)."""
    incomplete = incomplete_inputs(cache)
    if models is None:
        notes = [f"{name}: left out of the default models: {why}" for name, why in incomplete.items()]
    else:
        notes = [f"{name} is incomplete: {why}" for name, why in incomplete.items()]
    notes += left_out
    complete = complete_inputs(cache, incomplete)
    random_init, per_patch = random_init_nets(cache, complete), per_patch_inputs(cache, complete)
    if random_init and models is None:
        notes.append(
            f"{', '.join(random_init)}: embeddings of random weights, never fine-tuned; reported alone and left out of"
            " every default fusion (name them in --models to fuse them)"
        )
    if per_patch and models is None:
        notes.append(
            f"{', '.join(per_patch)}: per-patch inputs, each for its own patch-level or fine-tuned head; reported alone"
            " and left out of every default fusion (name them in --models, e.g. late(musicnn.upper,i3d), to fuse them)"
        )
    return notes


def clip_counts(
    cache: Cache, models: list[FusionModel], per_fold: list[FoldInputs], labels: Labels
) -> tuple[dict[str, Any], list[str]]:
    """Clips in the cache per class, and per model the clips it uses and those it leaves out with the reason
    (a clip is left out when a set its test fold reads lacks it)."""
    classes, y, folds = labels.classes, labels.y, cache.folds
    reasons: dict[str, dict[int, str]] = {}
    per_model: dict[str, dict[str, Any]] = {}
    for model in models:
        missing: dict[int, list[str]] = {}
        for fold, inputs in enumerate(per_fold):
            for name in model.inputs:
                set_name = inputs.sets[name]
                if set_name not in reasons:
                    reasons[set_name] = missing_reasons(cache, set_name)
                for row, reason in reasons[set_name].items():
                    if folds[row] == fold:
                        missing.setdefault(row, []).append(reason)
        used = np.flatnonzero(
            np.logical_or.reduce([inputs.usable[model.name] & (folds == f) for f, inputs in enumerate(per_fold)])
        )
        per_model[model.name] = {
            "used": len(used),
            "used_per_class": {c: int(np.sum(y[used] == i)) for i, c in enumerate(classes)},
            "left_out": [
                {"clip_id": cache.clip_ids[row], "reason": "; ".join(why)} for row, why in sorted(missing.items())
            ],
        }
    counts = {
        "total": len(cache),
        "per_class": {c: int(np.sum(y == i)) for i, c in enumerate(classes)},
        "models": per_model,
    }
    notes = [
        f"{name}: {len(m['left_out'])} clip(s) left out, listed in the report"
        for name, m in per_model.items()
        if m["left_out"]
    ]
    return counts, notes
