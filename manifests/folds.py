"""Stratified k-fold assignment that never splits a group."""

from __future__ import annotations

import functools
import warnings
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mvemo.manifests.errors import ConfigError, ManifestError
from mvemo.manifests.schema import Manifest


def assign_folds(
    manifest: Manifest,
    *,
    k: int | None = None,
    seed: int = 0,
    group_by: str | None = None,
    together: Sequence[tuple[int, int]] = (),
    keep: bool = True,
) -> Manifest:
    """A copy of ``manifest`` with stratified, group-preserving folds 0..k-1: by class, by every tag at once for a
    manifest of tags without classes (``iterative_folds``), or by quadrant (``Manifest.strata``).

    Parameters
    ----------
    manifest : Manifest
        The clip table, possibly with folds for some clips (read with ``partial_folds``).
    k : int, optional
        Number of folds, at least 2. Default: the existing folds' number, else 6.
    keep : bool
        Where some clips have folds, keep every one of them and fold in the others
        (``extend_folds``); False draws all folds anew.
    seed : int
        Seed of the shuffle: the same seed gives the same folds.
    group_by : str, optional
        Column whose equal values must share a fold. Its values are written into the
        ``group`` column (a clip with none keeps its group), so that every later split
        (the outer folds of every repeat, every inner and validation split) keeps the
        same groups whole. Default: the ``group`` column as it is.
    together : sequence of (int, int)
        Pairs of clips (by index) that must share a fold, e.g. one recording under two names: their groups (after
        ``group_by``) are joined (``joined_groups``) and written into the ``group`` column.

    Raises
    ------
    ManifestError
        When ``k`` < 2 or ``k`` exceeds the number of groups in the smallest class
        (some fold would then miss that class), ``group_by`` is not a column, or the
        folds to keep split a group.
    """
    if group_by is not None:
        manifest = manifest.with_groups(_groups_by(manifest, group_by))
    if together:
        manifest = manifest.with_groups(joined_groups(manifest.groups, together))
    existing = np.array([-1 if c.fold is None else c.fold for c in manifest.clips], dtype=np.int64)
    groups = manifest.groups
    y = manifest.strata
    if keep and existing.max() >= 0:
        stored = int(existing.max()) + 1
        given = sorted(set(existing[existing >= 0].tolist()))
        if given != list(range(stored)) or stored < 2:
            raise ManifestError(
                f"column 'fold' holds {given}, not folds 0..k-1 with k >= 2 to keep;"
                " use --reshuffle (with --k K) to draw every fold anew"
            )
        if k not in (None, stored):
            raise ManifestError(
                f"--k {k}: the manifest has {stored} folds and keeping them keeps their number; use --k {stored},"
                " or --reshuffle to draw every fold anew (which invalidates a cache's per-fold embeddings)"
            )
        require_whole_groups(existing, groups, manifest.clip_ids)
        return manifest.with_folds(extend_folds(y, groups, existing, k=stored, seed=seed).tolist())
    k = 6 if k is None else k
    if k < 2:
        raise ManifestError(f"--k {k}: cross-validation needs at least 2 folds")
    n_groups = len(set(groups))
    if k > n_groups:
        raise ManifestError(
            f"--k {k}: the manifest's {len(manifest)} clips form {n_groups} groups (a group's clips share a fold), too"
            f" few for {k} folds; use --k {n_groups} or fewer, or add clips"
        )
    fewest, rarest = fewest_groups(y, groups)
    smallest = manifest.strata_names[rarest]
    if k > fewest and manifest.classes:  # a rare tag or quadrant is spread over as many folds as it has groups
        raise ManifestError(
            f"--k {k} is larger than the {fewest} groups of class {smallest!r}: some fold would have no {smallest!r}"
            f" clip; use --k {fewest} or fewer, or add clips of that class"
        )
    if not manifest.classes and manifest.tags:
        return manifest.with_folds(iterative_folds(manifest.tag_matrix, groups, k=k, seed=seed).tolist())
    return manifest.with_folds(draw_folds(y, groups, k=k, seed=seed).tolist())


def joined_groups(groups: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[str]:
    """``groups`` with the groups of each pair of clips (their indices) joined into one, and all groups joined to
    those transitively: a joined group is named by its groups' names, sorted, joined by ``+``."""
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for a, b in pairs:
        first, second = sorted((root(groups[a]), root(groups[b])))
        parent[second] = first
    members: dict[str, list[str]] = defaultdict(list)
    for g in dict.fromkeys(groups):
        members[root(g)].append(g)
    name = {g: "+".join(sorted(members[root(g)])) for g in parent}
    return [name[g] for g in groups]


SPLIT_GROUP_FIX = (
    "a group's clips must share a fold, or clips of one song or artist would sit on both sides of a split: draw the"
    " folds anew with `mvemo manifest folds MANIFEST --reshuffle` (a cache's per-fold embeddings then need"
    " extracting again), or correct the 'group' column"
)


def split_groups(folds: np.ndarray, groups: Sequence[str]) -> dict[str, list[int]]:
    """The groups whose clips lie in more than one fold, each with its folds (rows of fold -1 have none yet)."""
    folds_of: dict[str, set[int]] = defaultdict(set)
    for group, fold in zip(groups, np.asarray(folds).tolist()):
        if fold >= 0:
            folds_of[group].add(int(fold))
    return {group: sorted(f) for group, f in folds_of.items() if len(f) > 1}


def require_whole_groups(folds: np.ndarray, groups: Sequence[str], clip_ids: Sequence[str], *, where: str = "") -> None:
    """Refuse folds that split a group: ``ManifestError`` naming the first such group, its folds and clips, how many
    groups are split, and the fix. ``where`` names the table (a manifest or cache) in the message."""
    split = split_groups(folds, groups)
    if not split:
        return
    group, in_folds = next(iter(split.items()))
    members = [
        f"{clip_id!r} in fold {int(fold)}"
        for clip_id, g, fold in zip(clip_ids, groups, np.asarray(folds))
        if g == group
    ]
    more = f" ({len(split) - 1} more groups are split too)" if len(split) > 1 else ""
    raise ManifestError(
        f"{where}{': ' if where else ''}group {group!r} lies in folds {in_folds} ({', '.join(members[:4])}"
        f"{', ...' if len(members) > 4 else ''}){more}; {SPLIT_GROUP_FIX}"
    )


def stratum_kind(manifest: Manifest) -> str:
    """What the manifest's folds are stratified by, in a word (``Manifest.strata``)."""
    return "class" if manifest.classes else "tag" if manifest.tags else "quadrant"


def draw_folds(y: np.ndarray, groups: Sequence[str], *, k: int, seed: int) -> np.ndarray:
    """Stratified folds 0..k-1 that keep each group whole, shuffled by ``seed``: shape (n,), int64. A stratum of
    fewer groups than ``k`` (a rare tag's) lies in as many folds as it has groups."""
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(len(y), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, list(groups))):
            folds[test] = fold
    return folds


def iterative_folds(matrix: np.ndarray, groups: Sequence[str], *, k: int, seed: int) -> np.ndarray:
    """Folds 0..k-1 that balance every tag at once and keep each group whole: shape (n,), int64.

    Iterative stratification (Sechidis, Tsoumakas & Vlahavas 2011) over groups: each fold is owed a k-th of every
    tag's clips and of all clips; the tag that the fewest groups left carry goes first, each of those groups (in
    ``seed``'s order) to the fold owed the most of that tag (ties: the most clips, then ``seed``'s order of the
    folds), which is then owed that much less of every tag. Groups without a tag go last, to the folds owed the
    most clips. ``matrix``: which clip carries which tag, (n, n_tags).
    """
    index = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    member = np.array([index[g] for g in groups], dtype=np.int64)
    counts = np.zeros((len(index), matrix.shape[1]))
    np.add.at(counts, member, np.asarray(matrix, dtype=float))
    sizes = np.bincount(member, minlength=len(index)).astype(float)
    rng = np.random.default_rng(seed)
    owed, owed_size = np.tile(counts.sum(axis=0) / k, (k, 1)), np.full(k, len(member) / k)
    tie = rng.permutation(k)
    fold_of = np.full(len(index), -1)
    while (left := np.flatnonzero(fold_of < 0)).size:
        carrying = (counts[left] > 0).sum(axis=0)
        tag = int(np.argmin(np.where(carrying > 0, carrying, np.iinfo(np.int64).max))) if carrying.any() else None
        batch = left if tag is None else left[counts[left, tag] > 0]
        for g in rng.permutation(batch):
            first = owed[:, tag] if tag is not None else owed_size
            fold = int(np.lexsort((tie, -owed_size, -first))[0])
            fold_of[g] = fold
            owed[fold] -= counts[g]
            owed_size[fold] -= sizes[g]
    return fold_of[member].astype(np.int64)


def extend_folds(y: np.ndarray, groups: Sequence[str], folds: np.ndarray, *, k: int, seed: int) -> np.ndarray:
    """Folds for the rows whose fold is -1, every other row's kept: shape (n,), int64.

    A new clip of a group that has a fold joins it, so groups stay disjoint across
    folds. Each new group then goes (largest first, equal sizes in ``seed``'s order)
    to the fold that keeps each class's share per fold the most even: the greedy
    rule of scikit-learn's ``StratifiedGroupKFold``, with the old clips fixed.
    """
    out = np.asarray(folds, dtype=np.int64).copy()
    fold_of = {g: int(f) for g, f in zip(groups, out) if f >= 0}
    for row in np.flatnonzero(out < 0).tolist():
        out[row] = fold_of.get(groups[row], -1)
    new_groups: dict[str, list[int]] = defaultdict(list)
    for row in np.flatnonzero(out < 0).tolist():
        new_groups[groups[row]].append(row)
    n_classes = int(np.max(y)) + 1 if len(y) else 0
    counts = np.zeros((k, n_classes))
    np.add.at(counts, (out[out >= 0], y[out >= 0]), 1)
    per_class = np.maximum(np.bincount(y, minlength=n_classes), 1)
    names = list(new_groups)
    order = np.random.default_rng(seed).permutation(len(names))
    for index in sorted(order, key=lambda i: -len(new_groups[names[i]])):
        rows = new_groups[names[index]]
        added = np.bincount(y[rows], minlength=n_classes)
        costs = []
        for fold in range(k):
            trial = counts.copy()
            trial[fold] += added
            costs.append((np.std(trial / per_class, axis=0).mean(), trial.sum(axis=1).std(), fold))
        best = min(costs)[2]
        counts[best] += added
        out[rows] = best
    return out


def _groups_by(manifest: Manifest, column: str) -> list[str]:
    """Each clip's value of ``column`` as its group; a clip whose value is empty keeps the group it had."""
    values = ["" if v is None else str(v).strip() for v in manifest.column(column)]
    return [value or clip.group for value, clip in zip(values, manifest.clips)]


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
    if len(y) == 0:
        raise ConfigError("no rows to split into inner folds; a fold's training rows hold no clip")
    unique, codes = np.unique(np.asarray(y), return_inverse=True)
    labels = unique.tolist()
    fewest, rarest = fewest_groups(codes, groups)
    if fewest < 2:
        raise TooFewGroups(
            f"{len(codes)} rows: class {labels[rarest]!r} has {fewest} group(s) among them,"
            " and inner folds need at least 2 groups of every class to validate without training on what they validate;"
            " add clips of that class",
            labels[rarest],
        )
    return list(_grouped_splits(codes.astype(np.int64).tobytes(), tuple(groups), min(k, fewest), seed))


@functools.lru_cache(maxsize=32)
def _grouped_splits(
    codes: bytes, groups: tuple[str, ...], k: int, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
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
    """Clips per (fold, stratum), shape (n_folds, n_strata), int64 (``Manifest.strata_names``: the classes, else
    each clip's rarest tag, else the quadrants)."""
    table = np.zeros((manifest.n_folds, len(manifest.strata_names)), dtype=np.int64)
    np.add.at(table, (manifest.folds, manifest.strata), 1)
    return table
