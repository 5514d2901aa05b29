"""Stratified k-fold assignment that never splits a group."""

from __future__ import annotations

import warnings
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
    groups_per_class: dict[int, set[str]] = defaultdict(set)
    for label, group in zip(y, groups):
        groups_per_class[int(label)].add(group)
    fewest, smallest = min((len(g), manifest.classes[c]) for c, g in groups_per_class.items())
    if k > fewest:
        raise ManifestError(
            f"--k {k} is larger than the {fewest} groups of class {smallest!r}: some fold would have no"
            f" {smallest!r} clip; use --k {fewest} or fewer, or add clips of that class"
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(len(manifest), dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        folds[test] = fold
    return manifest.with_folds(folds.tolist())


def _groups(manifest: Manifest, group_by: str | None) -> list[str]:
    if group_by is None:
        return manifest.groups
    values = [str(v) if v not in (None, "") else "" for v in manifest.column(group_by)]
    return [group_id(value, clip_id) for value, clip_id in zip(values, manifest.clip_ids)]


def inner_split(y: np.ndarray, groups: Sequence[str], *, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One grouped, stratified split of some rows into training and validation: the one split every inner
    choice uses (an epoch of fine-tuning, the softmax head's early stopping).

    Parameters
    ----------
    y : ndarray of int, shape (n,)
        The rows' classes.
    groups : sequence of str, length n
        The rows' groups (``group_id``); a group never sits on both sides.
    share : float
        About this share of the rows validates: the first of round(1 / share) splits, fewer
        where the largest class or the groups are fewer.
    seed : int

    Returns
    -------
    train, validation : ndarray of int
        Positions into ``y``, disjoint.

    Raises
    ------
    ConfigError
        With fewer than two groups: nothing could validate without training too.
    """
    n_groups = len(set(groups))
    if n_groups < 2:
        raise ConfigError(f"{len(y)} rows in {n_groups} group: too few to hold some out for validation")
    n_splits = max(2, min(round(1 / share), int(np.bincount(y).max()), n_groups))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer rows than splits simply misses some splits
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        train, val = next(splitter.split(np.zeros(len(y)), y, list(groups)))
    return train, val


def fold_table(manifest: Manifest) -> np.ndarray:
    """Clips per (fold, class), shape (n_folds, n_classes), int64."""
    table = np.zeros((manifest.n_folds, len(manifest.classes)), dtype=np.int64)
    np.add.at(table, (manifest.folds, manifest.y), 1)
    return table
