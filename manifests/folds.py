"""Stratified k-fold assignment that never splits a group."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mvemo.manifests.errors import ConfigError, ManifestError
from mvemo.manifests.schema import Manifest, group_id


def assign_folds(manifest: Manifest, *, k: int = 6, seed: int = 0, group_by: str | None = None) -> Manifest:
    """A copy of ``manifest`` with stratified, group-preserving folds 0..k-1.

    Parameters
    ----------
    manifest : Manifest
        The clip table; existing folds are replaced.
    k : int
        Number of folds, at least 2.
    seed : int
        Seed of the shuffle: the same seed gives the same folds.
    group_by : str, optional
        Column whose equal values must share a fold. Default: the ``group``
        column where filled; a clip without a group stands alone.

    Raises
    ------
    ManifestError
        When ``k`` < 2 or ``k`` exceeds the number of groups in the smallest class
        (some fold would then miss that class), or ``group_by`` is not a column.
    """
    if k < 2:
        raise ManifestError(f"--k {k}: cross-validation needs at least 2 folds")
    groups = _groups(manifest, group_by)
    y = manifest.y
    fewest, rarest = fewest_groups(y, groups)
    smallest = manifest.classes[rarest]
    if k > fewest:
        raise ManifestError(
            f"--k {k} is larger than the {fewest} groups of class {smallest!r}: some fold would have no"
            f" {smallest!r} clip; use --k {fewest} or fewer, or add clips of that class"
        )
    return manifest.with_folds(draw_folds(y, groups, k=k, seed=seed).tolist())


def draw_folds(y: np.ndarray, groups: Sequence[str], *, k: int, seed: int) -> np.ndarray:
    """Stratified folds 0..k-1 that keep each group whole, shuffled by ``seed``: shape (n,), int64."""
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(len(y), dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, list(groups))):
        folds[test] = fold
    return folds


def _groups(manifest: Manifest, group_by: str | None) -> list[str]:
    if group_by is None:
        return manifest.groups
    values = [str(v) if v not in (None, "") else "" for v in manifest.column(group_by)]
    return [group_id(value, clip_id) for value, clip_id in zip(values, manifest.clip_ids)]


class TooFewGroups(ConfigError):
    """Some class has fewer than two groups among rows to split into inner folds (``label``: that class)."""

    def __init__(self, message: str, label: object) -> None:
        super().__init__(message)
        self.label = label


def fewest_groups(y: np.ndarray, groups: Sequence[str]) -> tuple[int, int]:
    """The fewest groups any class has among the rows, and that class (the first such in label order)."""
    groups_of: dict[int, set[str]] = defaultdict(set)
    for label, group in zip(np.asarray(y).tolist(), groups):
        groups_of[int(label)].add(group)
    return min(((len(g), c) for c, g in groups_of.items()), default=(0, -1))


def inner_splits(y: np.ndarray, groups: Sequence[str], *, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped, stratified inner folds of some rows: the one definition every inner choice uses (a head's
    hyperparameters, stacking, the fusion picked as ``integrated``, an epoch of fine-tuning, an optimizer).

    The rule for small classes: there are ``min(k, g)`` folds, ``g`` the fewest groups of any class among the
    rows, so that every class can reach both sides of every fold (StratifiedGroupKFold balances the classes
    as its groups allow; a class of unequal groups may still miss a fold's validation side).

    Parameters
    ----------
    y : ndarray of int, shape (n,)
        The rows' classes.
    groups : sequence of str, length n
        The rows' groups (``group_id``); a group never sits on both sides of a fold.
    k : int
        Folds wanted, at least 2.
    seed : int
        Seed of the shuffle: the same rows, groups and seed give the same folds.

    Returns
    -------
    list of (train, validation)
        Positions into ``y``, disjoint within a fold; every row validates in exactly one fold.

    Raises
    ------
    TooFewGroups
        When some class has fewer than two groups: it could not be validated without also being
        absent from training.
    """
    unique, codes = np.unique(np.asarray(y), return_inverse=True)
    labels = unique.tolist()
    fewest, rarest = fewest_groups(codes, groups)
    if fewest < 2:
        raise TooFewGroups(
            f"{len(codes)} rows: class {labels[rarest]!r} has {fewest} group(s) among them, and inner folds need at least"
            " 2 groups of every class to validate without training on what they validate; add clips of that class",
            labels[rarest],
        )
    return list(_grouped_splits(codes.astype(np.int64).tobytes(), tuple(groups), min(k, fewest), seed))


@functools.lru_cache(maxsize=32)
def _grouped_splits(codes: bytes, groups: tuple[str, ...], k: int, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """StratifiedGroupKFold's folds, drawn once for all the heads fitted on the same rows (its search over groups
    took a third of a nested CV's time when every head drew them again)."""
    y = np.frombuffer(codes, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return tuple(splitter.split(np.zeros(len(y)), y, list(groups)))


def inner_split(y: np.ndarray, groups: Sequence[str], *, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One grouped, stratified split into training and validation rows: the first of
    ``inner_splits(k=round(1 / share))`` (for an epoch chosen on one held-out part).

    About ``share`` of the rows validate (more where a class has fewer groups than 1 / share).
    Raises ``ConfigError`` as ``inner_splits`` does.
    """
    return inner_splits(y, groups, k=max(2, round(1 / share)), seed=seed)[0]


def fold_table(manifest: Manifest) -> np.ndarray:
    """Clips per (fold, class), shape (n_folds, n_classes), int64."""
    table = np.zeros((manifest.n_folds, len(manifest.classes)), dtype=np.int64)
    np.add.at(table, (manifest.folds, manifest.y), 1)
    return table
