"""Tags and valence/arousal in manifests: io, validation, the labelled scan and the folds they stratify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvemo.manifests import Clip, Manifest, ManifestError, read_manifest, write_manifest
from mvemo.manifests.folds import assign_folds, fold_table, require_whole_groups
from mvemo.manifests.scan import scan_labelled
from mvemo.manifests.targets import quadrants, rarest_tag, read_annotations, window_values

TAGS = ("calm", "dark", "happy")


def tagged_manifest(folder: Path, n: int = 24) -> Manifest:
    rng = np.random.default_rng(0)
    clips = []
    for i in range(n):
        (folder / f"{i}.wav").write_bytes(b"x")
        tags = tuple(t for t in TAGS if rng.random() < 0.4)
        clips.append(
            Clip(
                f"{i}.wav",
                "",
                audio=folder / f"{i}.wav",
                group=f"song{i // 2}",
                tags=tags,
                valence=float(rng.uniform(1, 9)),
                arousal=float(rng.uniform(1, 9)),
            )
        )
    return Manifest((), tuple(clips), tags=TAGS, scale=(1.0, 9.0))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip_keeps_tags_values_vocabulary_and_scale(tmp_path: Path, suffix: str) -> None:
    original = tagged_manifest(tmp_path)
    path = write_manifest(original, tmp_path / f"m{suffix}")
    again = read_manifest(path)
    assert (again.classes, again.tags, again.scale, again.value_names) == ((), TAGS, (1.0, 9.0), ("valence", "arousal"))
    assert [c.tags for c in again.clips] == [c.tags for c in original.clips]
    np.testing.assert_allclose(again.values, original.values)
    assert np.array_equal(again.tag_matrix, original.tag_matrix)
    if suffix == ".csv":
        assert path.read_text().splitlines()[:2] == ['# tags: ["calm", "dark", "happy"]', "# scale: [1.0, 9.0]"]
        assert "label" not in path.read_text().splitlines()[2].split(","), "no label column without classes"


def write_csv(tmp_path: Path, body: str) -> Path:
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "b.wav").write_bytes(b"x")
    path = tmp_path / "m.csv"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "body, message",
    [
        ('# tags: ["calm"]\nclip_id,audio,tags\na,a.wav,calm\nb,b.wav,calm;angry\n', r"clip 'b'.*'angry' is not a tag"),
        ("# scale: [1, 9]\nclip_id,audio,valence\na,a.wav,5\nb,b.wav,nan\n", r"clip 'b'.*'nan' is not a finite number"),
        (
            "# scale: [1, 9]\nclip_id,audio,valence\na,a.wav,5\nb,b.wav,\n",
            r"clip 'b'.*'valence' is empty while 1 other",
        ),
        ("# scale: [1, 9]\nclip_id,audio,arousal\na,a.wav,5\nb,b.wav,12\n", r"clip 'b'.*outside the scale"),
        ("clip_id,audio,valence\na,a.wav,5\nb,b.wav,4\n", r"states no scale.*# scale: \[1, 9\]"),
        ("clip_id,audio,group\na,a.wav,x\n", r"no target column"),
        ("# scale: [9, 1]\nclip_id,audio,valence\na,a.wav,5\n", r"not \[low, high\]"),
    ],
)
def test_bad_targets_name_the_clip_and_the_fix(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        read_manifest(write_csv(tmp_path, body))


def test_tags_without_a_vocabulary_take_the_sorted_set(tmp_path: Path) -> None:
    manifest = read_manifest(write_csv(tmp_path, "clip_id,audio,tags\na,a.wav, sad ; calm;sad\nb,b.wav,\n"))
    assert manifest.tags == ("calm", "sad")
    assert manifest.clips[0].tags == ("sad", "calm"), "stripped, each once, in order"
    assert manifest.clips[1].tags == (), "a clip may carry no tag"


def test_labelled_scan_matches_ids_or_stems_and_validates(tmp_path: Path) -> None:
    root = tmp_path / "audio"
    (root / "sub").mkdir(parents=True)
    for name in ("sub/one.wav", "two.mp3"):
        (root / name).write_bytes(b"x")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        '# tags: ["calm", "sad"]\nsong,tags,valence,arousal\none,sad,2,3\ntwo.mp3,calm,7,2.5\nthree,sad,1,1\n'
    )
    manifest = scan_labelled(root, labels, key="song", scale=(1, 9))
    assert manifest.clip_ids == ["sub/one.wav", "two.mp3"]
    assert [c.tags for c in manifest.clips] == [("sad",), ("calm",)]
    np.testing.assert_allclose(manifest.values, [[2, 3], [7, 2.5]])
    assert manifest.scale == (1.0, 9.0) and manifest.classes == ()
    labels.write_text("song,valence\none,2\n")
    with pytest.raises(ManifestError, match=r"clip 'two.mp3': no row of --labels"):
        scan_labelled(root, labels, key="song", scale=(1, 9))
    labels.write_text("song,valence\none,2\ntwo,\n")
    with pytest.raises(ManifestError, match=r"clip 'two.mp3'.*'valence' is empty"):
        scan_labelled(root, labels, key="song", scale=(1, 9))
    with pytest.raises(ManifestError, match=r"no column 'id'"):
        scan_labelled(root, labels, key="id")


def test_quadrants_and_rarest_tag() -> None:
    values = np.array([[8, 8], [2, 8], [2, 2], [8, 2], [5, 5]])
    assert quadrants(values, (1, 9)).tolist() == [0, 1, 2, 3, 0], "Q1..Q4; the middle counts as high"
    assert quadrants(values[:, :1], (1, 9)).tolist() == [0, 1, 1, 0, 0], "one dimension: its half"
    matrix = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1]], dtype=np.uint8)
    assert rarest_tag(matrix).tolist() == [1, 0, 3, 2]


def test_folds_of_tagged_and_valued_manifests_keep_groups_and_spread_strata(tmp_path: Path) -> None:
    manifest = tagged_manifest(tmp_path, n=48)
    split = assign_folds(manifest, k=3, seed=0)
    require_whole_groups(split.folds, split.groups, split.clip_ids)
    table = fold_table(split)
    assert table.shape == (3, len(TAGS) + 1) and table.sum() == 48
    assert (table[:, table.sum(axis=0) >= 6] > 0).all(), "every frequent enough rarest-tag stratum in every fold"
    valued = Manifest(
        (),
        tuple(
            Clip(c.clip_id, "", audio=c.audio, group=c.group, valence=c.valence, arousal=c.arousal)
            for c in manifest.clips
        ),
        scale=(1.0, 9.0),
    )
    table = fold_table(assign_folds(valued, k=3, seed=0))
    assert table.shape == (3, 4) and (table[:, table.sum(axis=0) >= 6] > 0).all(), "quadrants spread over the folds"


def test_jsonl_header_holds_every_target_header(tmp_path: Path) -> None:
    path = write_manifest(tagged_manifest(tmp_path), tmp_path / "m.jsonl")
    assert json.loads(path.read_text().splitlines()[0]) == {"tags": list(TAGS), "scale": [1.0, 9.0]}


def test_annotations_round_trip_and_give_a_window_its_mean(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.csv").write_text("time_s,valence,arousal\n0,2,3\n1,4,5\n2,6,7\n")
    path = write_csv(
        tmp_path, "# scale: [1, 9]\nclip_id,audio,valence,arousal,annotations\na,a.wav,4,5,notes/a.csv\nb,b.wav,5,5,\n"
    )
    manifest = read_manifest(path)
    assert manifest.clips[0].annotations == notes / "a.csv" and manifest.clips[1].annotations is None
    again = read_manifest(write_manifest(manifest, tmp_path / "out" / "m.csv"))
    assert again.clips[0].annotations == notes / "a.csv", "written relative to the new manifest's folder"
    times, values = read_annotations(notes / "a.csv", clip_id="a", names=("valence", "arousal"), scale=(1, 9))
    np.testing.assert_allclose(window_values(times, values, 0.5, 2.5, clip_id="a"), [5, 6])
    with pytest.raises(ManifestError, match=r"clip 'a': its annotations \(0-2 s\) hold no time in its window 3-5 s"):
        window_values(times, values, 3, 5, clip_id="a")


@pytest.mark.parametrize(
    "body, message",
    [
        ("time_s,valence\n0,2\n", r"has no column 'arousal'"),
        ("time_s,valence,arousal\n0,2,3\n1,nan,3\n", r"row 2: column 'valence' value 'nan' is not a finite number"),
        ("time_s,valence,arousal\n1,2,3\n0,2,3\n", r"times go back at row 2"),
        ("time_s,valence,arousal\n0,2,3\n1,2,30\n", r"row 2: a value lies outside the scale"),
        ("time_s,valence,arousal\n", r"no row"),
        (
            "time_s,valence,arousal\n0,2,3 \xe9t\xe9\n".encode("latin-1"),
            r"is not UTF-8 text \(invalid continuation byte",
        ),
        ("time_s,valence,arousal\n0," + "2" * 200_000 + ",3\n", r"not a CSV table \(field larger than field limit"),
    ],
)
def test_bad_annotations_name_the_clip_file_and_row(tmp_path: Path, body: str | bytes, message: str) -> None:
    (tmp_path / "a.csv").write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(ManifestError, match=rf"clip 'a': annotations .*a\.csv.*{message}"):
        read_annotations(tmp_path / "a.csv", clip_id="a", names=("valence", "arousal"), scale=(1, 9))


def test_annotations_need_value_columns_and_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"clip 'a' names annotations over time, and the manifest has no 'valence'"):
        read_manifest(write_csv(tmp_path, '# tags: ["x"]\nclip_id,audio,tags,annotations\na,a.wav,x,a.csv\n'))
    with pytest.raises(ManifestError, match=r"column 'annotations' file .*gone.csv' does not exist"):
        read_manifest(write_csv(tmp_path, "# scale: [1, 9]\nclip_id,audio,valence,annotations\na,a.wav,4,gone.csv\n"))


def test_labelled_scan_pairs_stems_keeps_extras_and_groups_and_refuses_ambiguity(tmp_path: Path) -> None:
    root = tmp_path / "media"
    for name in ("x/song.mp4", "x/song.wav", "y/other.wav", "z/other.wav"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,valence,artist,group\nx/song.mp4,2,ann,\ny/other.wav,3,bob,g1\nz/other.wav,4,bob,g1\n")
    manifest = scan_labelled(root, labels, key="id", scale=(1, 9))
    song = manifest.clips[0]
    assert len(manifest) == 3 and (song.video, song.audio) == (root / "x/song.mp4", root / "x/song.wav"), "one clip"
    assert [c.extra["artist"] for c in manifest.clips] == ["ann", "bob", "bob"]
    assert [c.group for c in manifest.clips] == ["x/song", "g1", "g1"], "a group column replaces the path's"
    labels.write_text("id,valence\nx/song.mp4,2\nother,3\n")
    with pytest.raises(ManifestError, match=r"its stem 'other' names files in 2 folders"):
        scan_labelled(root, labels, key="id", scale=(1, 9))
    labels.write_text("id,valence\nx/song.mp4,2\nx/song.mp4,3\n")
    with pytest.raises(ManifestError, match=r"rows 1 and 2 both have id 'x/song.mp4'"):
        scan_labelled(root, labels, key="id", scale=(1, 9))


def test_values_on_the_unit_scale_are_clipped_to_the_planes_edge() -> None:
    """A prediction stretched beyond the scale's end is shown at the edge of the plane, never off it."""
    from mvemo.manifests.targets import on_unit_scale

    shown = on_unit_scale(np.array([[-10.0, 0.0], [5.0, 12.5], [-14.0, 10.0]]), (-10.0, 10.0))
    np.testing.assert_allclose(shown, [[-1.0, 0.0], [0.5, 1.0], [-1.0, 1.0]])
