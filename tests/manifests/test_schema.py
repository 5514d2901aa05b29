from __future__ import annotations

import json
from pathlib import Path

import pytest

from mvemo.manifests import Clip, Manifest, ManifestError, read_manifest, write_manifest
from mvemo.manifests.schema import group_id


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media dir (ünï)"
    folder.mkdir()
    for name in ("a clip (1).mp4", "b.wav", "c.mp4"):
        (folder / name).write_bytes(b"x")
    return folder


def make_manifest(media: Path, folds: tuple[int | None, ...] = (None, None, None)) -> Manifest:
    clips = (
        Clip(
            "A/a clip (1).mp4",
            "Sad",
            video=media / "a clip (1).mp4",
            audio=media / "a clip (1).mp4",
            group="A/a clip",
            fold=folds[0],
            extra={"source": "yt", "note": "ü, with comma"},
        ),
        Clip("B/b.wav", "Fear", audio=media / "b.wav", fold=folds[1], extra={"source": "cd"}),
        Clip("C/c.mp4", "Sad", video=media / "c.mp4", group="g", fold=folds[2]),
    )
    return Manifest(("Sad", "Fear"), clips)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("folds", [(None, None, None), (0, 1, 0)])
def test_round_trip_keeps_rows_classes_extras_and_paths(media: Path, tmp_path: Path, suffix: str, folds) -> None:
    original = make_manifest(media, folds)
    elsewhere = tmp_path / "sub" / "deeper"  # made by write_manifest, as `manifest scan -o new/m.csv` needs
    path = write_manifest(original, elsewhere / f"m{suffix}")
    again = read_manifest(path)
    assert again.classes == ("Sad", "Fear")
    assert again.clip_ids == original.clip_ids
    for a, b in zip(original.clips, again.clips):
        assert (a.label, a.video, a.audio, a.group, a.fold) == (b.label, b.video, b.audio, b.group, b.fold)
        assert {k: str(v) for k, v in a.extra.items()} == {k: str(v) for k, v in b.extra.items() if v != ""}
    assert "media dir (ünï)" in path.read_text(encoding="utf-8")
    assert str(tmp_path) not in path.read_text(encoding="utf-8"), "paths are written relative to the manifest"


def test_relative_paths_are_taken_from_the_manifest_folder(media: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("clip_id,label,video,audio\nx,Sad,media dir (ünï)/c.mp4,\n", encoding="utf-8")
    manifest = read_manifest(path)
    assert manifest.clips[0].video == media / "c.mp4"
    assert manifest.clips[0].audio is None
    assert manifest.classes == ("Sad",), "without a classes line the labels give the classes"
    assert not manifest.has_folds


def test_y_groups_and_folds(media: Path) -> None:
    manifest = make_manifest(media, (1, 0, 1))
    assert manifest.y.tolist() == [0, 1, 0]
    assert manifest.groups == ["A/a clip", "B/b.wav", "g"]
    assert manifest.folds.tolist() == [1, 0, 1]
    assert manifest.n_folds == 2


def test_a_clip_without_a_group_is_a_group_of_its_own() -> None:
    assert group_id("song 1", "A/a.mp4") == "song 1"
    assert group_id("", "A/a.mp4") == "A/a.mp4", "the clip's own id, as the manifest documents"


def write_csv(tmp_path: Path, body: str, classes: str = '["Sad", "Fear"]') -> Path:
    (tmp_path / "c.mp4").write_bytes(b"x")
    (tmp_path / "d.mp4").write_bytes(b"x")
    path = tmp_path / "bad.csv"
    path.write_text(f"# classes: {classes}\n" + body, encoding="utf-8")
    return path


BAD_CSV = [
    (
        "clip_id,label,video,audio\nx,Sad,missing.mp4,\n",
        r"row 1 \(clip 'x'\): column 'video' file .*missing\.mp4.* does not exist",
    ),
    ("clip_id,label,video,audio\nx,Happy,c.mp4,\n", r"row 1 \(clip 'x'\): column 'label' value 'Happy' is not a class"),
    (
        "clip_id,label,video,audio\nx,Sad,c.mp4,\nx,Fear,d.mp4,\n",
        r"row 2 \(clip 'x'\): column 'clip_id' value 'x' repeats row 1",
    ),
    ("clip_id,label,video,audio\nx,Sad,,\n", r"row 1 \(clip 'x'\): columns 'video' and 'audio' are both empty"),
    (
        "clip_id,label,video,audio,fold\nx,Sad,c.mp4,,zero\n",
        r"row 1 \(clip 'x'\): column 'fold' value 'zero' is not a fold number",
    ),
    ("clip_id,label,video,audio,fold\nx,Sad,c.mp4,,-1\n", r"column 'fold' value '-1' is not a fold number"),
    ("clip_id,label,video,audio,fold\nx,Sad,c.mp4,,1.5\n", r"column 'fold' value '1.5' is not a fold number"),
    (
        "clip_id,label,video,audio,fold\nx,Sad,c.mp4,,0\ny,Fear,d.mp4,,\n",
        r"row 2 \(clip 'y'\): column 'fold' is empty while other rows",
    ),
    (
        "clip_id,label,video,audio,fold\nx,Sad,c.mp4,,0\ny,Fear,d.mp4,,2\n",
        r"column 'fold' holds \[0, 2\].*missing \[1\].*mvemo manifest folds",
    ),
    ("clip_id,label,video,audio,fold\nx,Sad,c.mp4,,0\ny,Fear,d.mp4,,0\n", r"column 'fold' holds \[0\]"),
    ("clip_id,video,audio\nx,c.mp4,\n", r"no target column"),
    ("label,video,audio\nSad,c.mp4,\n", r"column 'clip_id' is missing"),
    ("clip_id,label\nx,Sad\n", r"neither a 'video' nor an 'audio' column"),
    ("clip_id,label,video,audio\n", r"has no clips"),
    ("clip_id,label,video,audio\nx,Sad,c.mp4,,extra\n", r"row 1: 5 values for 4 columns"),
]


@pytest.mark.parametrize("body, message", BAD_CSV)
def test_bad_manifest_names_row_column_value_and_fix(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        read_manifest(write_csv(tmp_path, body))


def test_bad_classes_line(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"classes header .* is not a JSON list"):
        read_manifest(write_csv(tmp_path, "clip_id,label,video,audio\nx,Sad,c.mp4,\n", classes="Sad,Fear"))


def test_missing_manifest_names_scan(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"does not exist; build one with `mvemo manifest scan"):
        read_manifest(tmp_path / "nope.csv")


def test_missing_files_are_all_listed_without_raising(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "clip_id,label,video,audio\nx,Sad,gone1.mp4,\ny,Fear,gone2.mp4,gone3.wav\n")
    manifest = read_manifest(path, check_files=False)
    problems = manifest.missing_files()
    assert len(problems) == 3
    with pytest.raises(ManifestError, match=r"gone1\.mp4.*and 2 more missing files"):
        manifest.require_files()


def test_jsonl_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"classes": ["Sad"]}\n{"clip_id": "x", "label": "Sad", "video": "c.mp4"\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"line 2: not JSON"):
        read_manifest(path)
    path.write_text('{"classes": ["Sad"]}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"line 2: .* is not a JSON object"):
        read_manifest(path)


def test_jsonl_keeps_typed_extras(media: Path, tmp_path: Path) -> None:
    manifest = Manifest(("Sad",), (Clip("x", "Sad", video=media / "c.mp4", extra={"bpm": 120, "moods": ["a"]}),))
    path = write_manifest(manifest, tmp_path / "m.jsonl")
    again = read_manifest(path)
    assert again.clips[0].extra == {"bpm": 120, "moods": ["a"]}
    assert json.loads(path.read_text().splitlines()[0]) == {"classes": ["Sad"]}


def test_with_folds_and_column(media: Path) -> None:
    manifest = make_manifest(media).with_folds([0, 1, 1])
    assert manifest.folds.tolist() == [0, 1, 1]
    assert manifest.column("source") == ["yt", "cd", ""]
    with pytest.raises(ManifestError, match=r"no column 'artist'"):
        manifest.column("artist")
    with pytest.raises(ManifestError, match=r"has no folds"):
        _ = make_manifest(media).folds


@pytest.mark.parametrize(
    ("text", "suffix"),
    [
        ("clip_id,video,audio\nx,c.mp4,\ny,,d.wav\n", ".csv"),
        ("clip_id,label,video,audio\nx,,c.mp4,\ny,,,d.wav\n", ".csv"),
        ('{"clip_id": "x", "video": "c.mp4"}\n{"clip_id": "y", "audio": "d.wav"}\n', ".jsonl"),
    ],
)
def test_new_files_to_label_need_no_target(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"new{suffix}"
    path.write_text(text)
    with pytest.raises(ManifestError, match="no target"):
        read_manifest(path, check_files=False)
    manifest = read_manifest(path, check_files=False, unlabelled=True)
    assert [(c.clip_id, c.label) for c in manifest.clips] == [("x", ""), ("y", "")]
    assert manifest.clips[1].video is None and manifest.clips[1].audio == tmp_path / "d.wav"


def test_new_files_to_label_may_keep_the_classes_line_and_labelled_ones_need_a_label(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text('# classes: ["Sad", "Fear"]\nclip_id,video,audio\nx,c.mp4,\ny,,d.wav\n')
    manifest = read_manifest(path, check_files=False, unlabelled=True)
    assert manifest.classes == ("Sad", "Fear") and [c.label for c in manifest.clips] == ["", ""]
    path.write_text('# classes: ["Sad", "Fear"]\nclip_id,label,video,audio\nx,Sad,c.mp4,\ny,,,d.wav\n')
    assert [c.label for c in read_manifest(path, check_files=False, unlabelled=True).clips] == ["Sad", ""]
    with pytest.raises(ManifestError, match=r"row 2 \(clip 'y'\): no label \(column 'label' empty or absent\)"):
        read_manifest(path, check_files=False)


def test_without_an_audio_file_a_clip_has_no_sound(tmp_path: Path) -> None:
    """A silent video's row: an empty or absent audio column (``manifest scan`` writes a video's path in both)."""
    for text in ("clip_id,label,video,audio\nx,Sad,c.mp4,\n", "clip_id,label,video\nx,Sad,c.mp4\n"):
        (tmp_path / "m.csv").write_text(text)
        (clip,) = read_manifest(tmp_path / "m.csv", check_files=False).clips
        assert clip.audio is None and clip.modalities == ("video",)


def test_a_missing_video_that_gives_the_sound_too_is_named_once(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("clip_id,label,video,audio\nx,Sad,gone.mp4,gone.mp4\n")
    with pytest.raises(ManifestError) as raised:
        read_manifest(path)
    message = str(raised.value)
    assert message.startswith("row 1 (clip 'x'): columns 'video' and 'audio' file ") and "more missing" not in message
