from __future__ import annotations

from pathlib import Path

import pytest

from mvemo.manifests import ManifestError, read_manifest, write_manifest
from mvemo.manifests.scan import scan_tree
from tests.conftest import write_tiny


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data set"
    write_tiny(root / "Sad" / "10.mp4")
    write_tiny(root / "Sad" / "song (live)-1-of-3.mp4")
    write_tiny(root / "Sad" / "song (live)-2-of-3.mp4")
    write_tiny(root / "Sad" / "sub dir" / "ünïcode clip.mkv")
    write_tiny(root / "Fear" / "10.mp4")
    write_tiny(root / "Fear" / "pair.mp4", audio=False)
    write_tiny(root / "Fear" / "pair.wav", video=False)
    write_tiny(root / "Fear" / "only audio.flac", video=False)
    write_tiny(root / "Fear" / "voice.opus", video=False)
    (root / "Fear" / "notes.txt").write_text("not media")
    (root / ".hidden").mkdir()
    write_tiny(root / ".hidden" / "x.mp4")
    return root


def test_scan_builds_one_clip_per_file_keyed_by_path(tree: Path) -> None:
    manifest = scan_tree(tree)
    assert manifest.classes == ("Fear", "Sad")
    by_id = {c.clip_id: c for c in manifest.clips}
    assert set(by_id) == {
        "Fear/10.mp4",
        "Fear/pair.mp4",
        "Fear/only audio.flac",
        "Fear/voice.opus",
        "Sad/10.mp4",
        "Sad/song (live)-1-of-3.mp4",
        "Sad/song (live)-2-of-3.mp4",
        "Sad/sub dir/ünïcode clip.mkv",
    }
    assert by_id["Sad/10.mp4"].video == by_id["Sad/10.mp4"].audio == tree.absolute() / "Sad" / "10.mp4"
    assert by_id["Fear/pair.mp4"].audio == tree.absolute() / "Fear" / "pair.wav", "same stem: one clip, both files"
    assert by_id["Fear/only audio.flac"].video is None
    assert by_id["Fear/10.mp4"].label == "Fear"


def test_scan_groups_segments_of_one_video(tree: Path) -> None:
    groups = {c.clip_id: c.group for c in scan_tree(tree).clips}
    assert groups["Sad/song (live)-1-of-3.mp4"] == groups["Sad/song (live)-2-of-3.mp4"] == "Sad/song (live)"
    assert groups["Sad/10.mp4"] != groups["Fear/10.mp4"], "same names in other folders stay apart"
    custom = {c.clip_id: c.group for c in scan_tree(tree, group_regex=r"\(live\).*$").clips}
    assert custom["Sad/song (live)-1-of-3.mp4"] == "Sad/song "


def test_scan_written_anywhere_reads_back_the_same_files(tree: Path, tmp_path: Path) -> None:
    manifest = scan_tree(tree)
    for where in (tmp_path / "m.csv", tree / "m.csv", tmp_path / "a" / "b" / "m.jsonl"):
        where.parent.mkdir(parents=True, exist_ok=True)
        write_manifest(manifest, where)
        again = read_manifest(where)
        assert [(c.video, c.audio, c.group) for c in again.clips] == [
            (c.video, c.audio, c.group) for c in manifest.clips
        ]
        assert "/" + tmp_path.name + "/" not in where.read_text(encoding="utf-8")


def test_scan_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"is not a folder"):
        scan_tree(tmp_path / "nope")
    (tmp_path / "Sad").mkdir()
    with pytest.raises(ManifestError, match=r"no media files under .*put each class's files in a folder"):
        scan_tree(tmp_path)
    with pytest.raises(ManifestError, match=r"--group-regex '\(' does not compile"):
        scan_tree(tmp_path, group_regex="(")
