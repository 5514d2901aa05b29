from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvemo.manifests import Clip, ConfigError, Manifest, ManifestError
from mvemo.manifests.folds import (
    assign_folds,
    draw_folds,
    fold_table,
    inner_split,
    inner_splits,
    iterative_folds,
    split_groups,
)
from mvemo.manifests.targets import rarest_tag

MEDIA = Path("/nonexistent/clip.mp4")  # folds never open media


def make_manifest(group_sizes_per_class: list[list[int]]) -> Manifest:
    classes = tuple(f"class{c}" for c in range(len(group_sizes_per_class)))
    clips = []
    for c, sizes in enumerate(group_sizes_per_class):
        for g, size in enumerate(sizes):
            for i in range(size):
                clips.append(Clip(f"{c}/{g}-{i}", classes[c], video=MEDIA, group=f"{c}/{g}" if size > 1 else ""))
    return Manifest(classes, tuple(clips))


group_layouts = st.lists(
    st.lists(st.integers(min_value=1, max_value=4), min_size=6, max_size=12), min_size=2, max_size=5
)


@pytest.mark.heavy
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=group_layouts, k=st.integers(min_value=2, max_value=6), seed=st.integers(0, 2**16))
def test_folds_keep_groups_cover_every_class_and_repeat_for_a_seed(layout, k, seed) -> None:
    manifest = make_manifest(layout)
    split = assign_folds(manifest, k=k, seed=seed)
    folds = split.folds
    assert sorted(set(folds.tolist())) == list(range(k))
    by_group: dict[str, set[int]] = {}
    for group, fold in zip(split.groups, folds):
        by_group.setdefault(group, set()).add(int(fold))
    assert all(len(f) == 1 for f in by_group.values()), "a group was split across folds"
    assert (fold_table(split) > 0).all(), "some class is missing from some fold"
    assert assign_folds(manifest, k=k, seed=seed).folds.tolist() == folds.tolist()


def test_different_seeds_give_different_folds() -> None:
    manifest = make_manifest([[1] * 12, [1] * 12, [2] * 6])
    assert assign_folds(manifest, k=3, seed=0).folds.tolist() != assign_folds(manifest, k=3, seed=1).folds.tolist()


def test_folds_are_balanced_per_class() -> None:
    manifest = make_manifest([[1] * 30, [1] * 18, [1] * 24])
    table = fold_table(assign_folds(manifest, k=6, seed=3))
    assert (table.max(axis=0) - table.min(axis=0) <= 1).all()


def test_k_larger_than_the_groups_of_the_smallest_class_is_refused() -> None:
    manifest = make_manifest([[1] * 10, [3, 3, 3]])
    with pytest.raises(ManifestError, match=r"--k 4 is larger than the 3 groups of class 'class1'.*--k 3 or fewer"):
        assign_folds(manifest, k=4)
    with pytest.raises(ManifestError, match=r"at least 2 folds"):
        assign_folds(manifest, k=1)


def test_group_by_an_extra_column() -> None:
    clips = tuple(
        Clip(f"c{i}", f"class{i % 2}", video=MEDIA, group=f"ignored{i}", extra={"artist": f"a{i // 4}"})
        for i in range(24)
    )
    split = assign_folds(Manifest(("class0", "class1"), clips), k=3, seed=0, group_by="artist")
    artist_folds: dict[str, set[int]] = {}
    for clip in split.clips:
        artist_folds.setdefault(clip.extra["artist"], set()).add(clip.fold)
    assert all(len(f) == 1 for f in artist_folds.values())
    with pytest.raises(ManifestError, match=r"no column 'singer'"):
        assign_folds(split, k=3, group_by="singer")


def test_clips_without_group_stand_alone() -> None:
    manifest = make_manifest([[1] * 6, [1] * 6])
    split = assign_folds(manifest, k=6, seed=0)
    assert np.bincount(split.folds).tolist() == [2] * 6


def test_the_inner_split_keeps_groups_whole_and_every_class_on_both_sides() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    groups = [f"song{i // 2}" for i in range(60)]  # two clips of each song
    order = rng.permutation(60)
    y, groups = y[order], [groups[i] for i in order]
    train, val = inner_split(y, groups, share=0.2, seed=3)
    assert sorted([*train, *val]) == list(range(60)) and not set(train) & set(val)
    assert not {groups[i] for i in train} & {groups[i] for i in val}, "no song on both sides"
    assert set(y[val]) == set(y[train]) == {0, 1, 2}
    assert 8 <= len(val) <= 16
    again = inner_split(y, groups, share=0.2, seed=3)
    assert [a.tolist() for a in again] == [train.tolist(), val.tolist()]


def test_the_inner_split_needs_two_groups_of_every_class() -> None:
    assert [len(part) for part in inner_split(np.array([0, 1, 0, 1]), ["a", "a", "b", "b"], share=0.2, seed=0)] == [
        2,
        2,
    ]
    with pytest.raises(ConfigError, match="4 rows: class 0 has 1 group"):
        inner_split(np.array([0, 1, 0, 1]), ["a"] * 4, share=0.2, seed=0)
    with pytest.raises(ConfigError, match="class 2 has 1 group"):
        inner_splits(np.array([0, 1, 0, 1, 2]), ["a", "b", "c", "d", "e"], k=5, seed=0)
    with pytest.raises(ConfigError, match="class 0 has 1 group"):  # every class a single member: no sklearn ValueError
        inner_split(np.array([0, 1, 2]), ["a", "b", "c"], share=0.2, seed=0)
    with pytest.raises(ConfigError, match="no rows to split"):
        inner_splits(np.array([], dtype=np.int64), [], k=5, seed=0)


def test_inner_folds_shrink_to_the_groups_of_the_rarest_class_and_cover_every_row_once() -> None:
    y = np.array([0] * 12 + [1] * 3)
    groups = [f"g{i // 2}" for i in range(12)] + ["x", "y", "z"]
    splits = inner_splits(y, groups, k=5, seed=1)
    assert len(splits) == 3, "class 1 has three groups: three folds, each validating one of them"
    assert sorted(np.concatenate([val for _, val in splits]).tolist()) == list(range(15))
    for train, val in splits:
        assert set(y[val]) == set(y[train]) == {0, 1}
        assert not {groups[i] for i in train} & {groups[i] for i in val}
    assert [v.tolist() for _, v in inner_splits(y, groups, k=5, seed=1)] == [v.tolist() for _, v in splits]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=group_layouts, more=group_layouts, k=st.integers(min_value=2, max_value=5), seed=st.integers(0, 2**16))
def test_new_clips_are_folded_in_without_moving_an_old_one(layout, more, k, seed) -> None:
    old = assign_folds(make_manifest(layout), k=k, seed=seed)
    # new clips: fresh groups, plus one clip joining each of a few existing groups
    joining = [Clip(f"join-{i}", c.label, video=MEDIA, group=c.group) for i, c in enumerate(old.clips[:5]) if c.group]
    fresh = [
        Clip(f"new-{c.clip_id}", c.label, video=MEDIA, group=f"new-{c.group}" if c.group else "")
        for c in make_manifest(more).clips
        if c.label in old.classes
    ]
    grown = Manifest(old.classes, (*old.clips, *joining, *fresh), partial_folds=True)
    split = assign_folds(grown, seed=seed)
    folds = split.folds
    assert folds[: len(old)].tolist() == old.folds.tolist(), "an old clip moved"
    assert split.n_folds == k
    by_group: dict[str, set[int]] = {}
    for group, fold in zip(split.groups, folds):
        by_group.setdefault(group, set()).add(int(fold))
    assert all(len(f) == 1 for f in by_group.values()), "a group was split across folds"


def test_new_clips_keep_the_class_balance_close() -> None:
    old = assign_folds(make_manifest([[1] * 30, [1] * 30]), k=3, seed=0)
    fresh = [Clip(f"new{i}", old.classes[i % 2], video=MEDIA) for i in range(60)]
    split = assign_folds(Manifest(old.classes, (*old.clips, *fresh), partial_folds=True), seed=0)
    table = fold_table(split)
    assert table.max() - table.min() <= 1, table
    with pytest.raises(ManifestError, match=r"--k 4: the manifest has 3 folds .* --reshuffle"):
        assign_folds(Manifest(old.classes, (*old.clips, *fresh), partial_folds=True), k=4)
    redrawn = assign_folds(Manifest(old.classes, (*old.clips, *fresh), partial_folds=True), k=4, keep=False)
    assert redrawn.n_folds == 4


def test_a_manifest_with_some_folds_missing_names_the_command_that_folds_them_in() -> None:
    old = assign_folds(make_manifest([[1] * 6, [1] * 6]), k=3, seed=0)
    with pytest.raises(
        ManifestError, match=r"column 'fold' is empty .* `mvemo manifest folds MANIFEST`: .* moves no other"
    ):
        Manifest(old.classes, (*old.clips, Clip("new", old.classes[0], video=MEDIA)))


def test_group_by_refuses_kept_folds_its_groups_would_split() -> None:
    clips = tuple(Clip(f"c{i}", f"class{i % 2}", video=MEDIA, extra={"artist": f"a{i // 4}"}) for i in range(24))
    drawn = assign_folds(Manifest(("class0", "class1"), clips), k=3, seed=0)  # each clip its own group
    assert len({drawn.folds[i] for i in range(4)}) > 1, "artist a0's clips lie in several folds"
    with pytest.raises(ManifestError, match=r"group 'a0' lies in folds \[.*--reshuffle"):
        assign_folds(drawn, group_by="artist")
    regrouped = assign_folds(drawn, group_by="artist", keep=False)
    assert all(len({regrouped.folds[i] for i in range(4 * a, 4 * a + 4)}) == 1 for a in range(6))


def test_iterative_folds_balance_every_tag_and_keep_groups_whole() -> None:
    rng = np.random.default_rng(0)
    n_groups, k = 60, 5
    group_tags = (rng.random((n_groups, 6)) < np.array([0.5, 0.3, 0.2, 0.1, 0.08, 0.05])).astype(np.uint8)
    sizes = rng.integers(1, 4, n_groups)
    groups = [f"g{g}" for g in range(n_groups) for _ in range(sizes[g])]
    matrix = np.repeat(group_tags, sizes, axis=0)
    folds = iterative_folds(matrix, groups, k=k, seed=0)
    assert sorted(set(folds.tolist())) == list(range(k)) and not split_groups(folds, groups)
    assert np.array_equal(folds, iterative_folds(matrix, groups, k=k, seed=0)), "the same seed, the same folds"
    for t in range(matrix.shape[1]):
        carriers = {g for g, on in zip(groups, matrix[:, t]) if on}
        if len(carriers) >= k:
            assert set(folds[matrix[:, t] == 1].tolist()) == set(range(k)), f"tag {t} in every fold"

    def spread(f: np.ndarray) -> float:
        """Mean over tags of the standard deviation over folds of the fold's share of the tag's clips."""
        shares = np.array([[matrix[f == i, t].sum() / max(matrix[:, t].sum(), 1) for i in range(k)] for t in range(6)])
        return float(shares.std(axis=1).mean())

    iterative = np.mean([spread(iterative_folds(matrix, groups, k=k, seed=s)) for s in range(5)])
    rarest = np.mean([spread(draw_folds(rarest_tag(matrix), groups, k=k, seed=s)) for s in range(5)])
    assert iterative < rarest, (iterative, rarest)


@pytest.mark.parametrize("kind", ["values", "tags"])
def test_more_folds_than_groups_is_refused_saying_how_many_there_can_be(kind: str) -> None:
    """A manifest of valence/arousal or of tags alone, three artists: never sklearn's error, never advice to run the
    command that was just run."""
    clips = tuple(
        Clip(
            f"c{i}",
            "",
            audio=Path(f"{i}.wav"),
            group=f"artist{i % 3}",
            **({"valence": 0.2 * i, "arousal": 0.5} if kind == "values" else {"tags": ("calm",) if i % 2 else ()}),
        )
        for i in range(9)
    )
    manifest = Manifest((), clips, **({"scale": (0.0, 2.0)} if kind == "values" else {"tags": ("calm",)}))
    with pytest.raises(ManifestError, match=r"--k 6: the manifest's 9 clips form 3 groups .* use --k 3 or fewer"):
        assign_folds(manifest, k=6)
    assert set(assign_folds(manifest, k=3).folds.tolist()) == {0, 1, 2}
