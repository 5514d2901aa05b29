"""One group definition everywhere: ``--group-by`` writes the groups every split keeps whole, and folds that split a
group are refused by every command that reads them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mvemo.fuse.fitting
import mvemo.fuse.heads.linear
from mvemo.cache.read import Cache
from mvemo.fuse.cv import cross_validate
from mvemo.manifests import Clip, Manifest, read_manifest, write_manifest
from mvemo.manifests.folds import inner_splits
from mvemo.pipeline.cli.main import cli
from tests.fuse.helpers import CLASSES, embedding_cache

N_CLIPS = 72


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="mvemo")


def artist_of(i: int) -> str:
    """Four clips per artist, of different classes: an artist is not a class."""
    return f"artist{i // 4}"


def artist_manifest(tmp_path: Path, folds: list[int] | None = None) -> Path:
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    clips = []
    for i in range(N_CLIPS):
        (media / f"{i}.wav").write_bytes(b"RIFF")
        fold = None if folds is None else folds[i]
        clips.append(
            Clip(
                f"c{i}",
                CLASSES[i % 3],
                audio=media / f"{i}.wav",
                group=f"song{i}",
                fold=fold,
                extra={"artist": artist_of(i)},
            )
        )
    return write_manifest(Manifest(CLASSES, tuple(clips)), tmp_path / "m.csv")


@pytest.mark.heavy
def test_group_by_writes_the_groups_that_every_repeat_and_inner_split_keeps_whole(tmp_path: Path, monkeypatch) -> None:
    path = artist_manifest(tmp_path)
    result = run("manifest", "folds", str(path), "--k", "3", "--group-by", "artist")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(path)
    assert manifest.groups == [artist_of(i) for i in range(N_CLIPS)], "the artist became each clip's group"
    with path.open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert [row["group"] for row in rows] == [artist_of(i) for i in range(N_CLIPS)]

    seen: list[tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]] = []

    def spy(y, groups, **kwargs):
        splits = inner_splits(y, groups, **kwargs)
        seen.append((list(groups), splits))
        return splits

    monkeypatch.setattr(mvemo.fuse.fitting, "inner_splits", spy)
    monkeypatch.setattr(mvemo.fuse.heads.linear, "inner_splits", spy)
    cache = embedding_cache(
        tmp_path / "cache",
        nets={"musicnn": (6, 1.0), "i3d": (4, 1.0)},
        n_per_class=N_CLIPS // 3,
        folds=manifest.folds.tolist(),
        groups=manifest.groups,
    )
    cv = cross_validate(cache, models="musicnn,best(musicnn,i3d+musicnn)", repeats=5)
    assert len(cv.repeat_folds) == 5
    for r, folds in enumerate(cv.repeat_folds):
        for artist in {artist_of(i) for i in range(N_CLIPS)}:
            rows = [i for i in range(N_CLIPS) if artist_of(i) == artist]
            assert len(set(folds[rows].tolist())) == 1, f"repeat {r}: {artist} straddles an outer split"
    assert seen, "inner folds were drawn"
    artists = {artist_of(i) for i in range(N_CLIPS)}
    for groups, splits in seen:
        assert set(groups) <= artists, "inner folds are drawn by artist"
        for train, val in splits:
            assert not {groups[i] for i in train} & {groups[i] for i in val}, "an artist straddles an inner split"


@pytest.fixture
def split_artist(tmp_path: Path) -> Path:
    """A manifest whose hand-made folds put artist0's clips in folds 0, 1 and 2."""
    path = artist_manifest(tmp_path, folds=[i % 3 for i in range(N_CLIPS)])
    manifest = read_manifest(path)
    return write_manifest(manifest.with_groups([artist_of(i) for i in range(N_CLIPS)]), path)


def test_every_command_refuses_folds_that_split_a_group(split_artist: Path, tmp_path: Path) -> None:
    expected = "group 'artist0' lies in folds [0, 1, 2]"
    for args in (
        ("manifest", "check", str(split_artist)),
        ("manifest", "folds", str(split_artist)),
        ("extract", str(split_artist), "--cache", str(tmp_path / "new-cache"), "--features", "mel"),
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "--reshuffle" in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "new-cache" / "clips.h5").exists(), "nothing was written"
    manifest = read_manifest(split_artist)
    cache = embedding_cache(
        tmp_path / "cache",
        nets={"musicnn": (4, 1.0)},
        n_per_class=N_CLIPS // 3,
        folds=manifest.folds.tolist(),
        groups=manifest.groups,
    )
    result = CliRunner().invoke(cli, ["cv", "--cache", str(cache), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and expected in result.output, result.output
    redrawn = run("manifest", "folds", str(split_artist), "--reshuffle", "--k", "3")
    assert redrawn.exit_code == 0, redrawn.output
    assert run("manifest", "folds", str(split_artist)).exit_code == 0


def test_groups_follow_the_manifest_into_an_existing_cache(tmp_path: Path) -> None:
    path = artist_manifest(tmp_path)
    assert run("manifest", "folds", str(path), "--k", "3").exit_code == 0
    cache = tmp_path / "cache"
    assert run("extract", str(path), "--cache", str(cache), "--features", "waveform").exit_code == 3, "no clip decodes"
    manifest = read_manifest(path)
    regrouped = [f"fold{fold}-{i % 2}" for i, fold in enumerate(manifest.folds.tolist())]
    write_manifest(manifest.with_groups(regrouped), path)
    assert run("extract", str(path), "--cache", str(cache), "--features", "waveform").exit_code == 3
    with Cache(cache) as reader:
        assert reader.groups == regrouped, "the cache took the manifest's new groups"
