from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mvemo.extract.stage import recomputed_sets
from mvemo.manifests import read_manifest
from mvemo.manifests.folds import fold_table
from mvemo.pipeline.cli.main import cli, cv
from tests.conftest import write_tiny

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), prog_name="mvemo")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "clips"
    for label in ("Sad", "Fear", "Calm"):
        for i in range(4):
            write_tiny(root / label / f"{i}.mp4")
    write_tiny(root / "Calm" / "muted.mp4", audio=False)
    return root


def test_scan_folds_check(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    result = run("manifest", "scan", str(tree), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "13 clips, 3 classes (Calm 5, Fear 4, Sad 4)" in result.output
    result = run("manifest", "folds", str(out), "--k", "4", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "every stratum in every fold (class)" in result.output
    manifest = read_manifest(out)
    assert (fold_table(manifest) > 0).all() and manifest.n_folds == 4
    result = run("manifest", "check", str(out))
    assert result.exit_code == 3, "the muted video promises audio it lacks"
    assert "Calm/muted.mp4" in result.output and "has no audio stream" in result.output
    assert "13 clips (3 classes (Calm 5, Fear 4, Sad 4)): 12 ok, 1 with problems" in result.output


def test_check_json_is_one_document(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    assert run("manifest", "scan", str(tree), "-o", str(out)).exit_code == 0
    result = run("manifest", "check", str(out), "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert document["clips"] == 13 and document["problems"] == 1
    muted = next(r for r in document["reports"] if r["clip_id"] == "Calm/muted.mp4")
    assert muted["ok"] is False and muted["video"]["codec"] == "h264" and muted["audio"] is None


def test_input_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("clip_id,label,video,audio\nx,Sad,missing.mp4,\n")
    for args in (
        ("manifest", "folds", str(bad)),
        ("manifest", "scan", str(tmp_path / "nope"), "-o", str(tmp_path / "m.csv")),
        ("manifest", "folds", str(tmp_path / "nope.csv")),
    ):
        result = run(*args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mvemo: error: ")
        assert "Traceback" not in result.output


def test_folds_refuses_too_many_and_leaves_the_manifest_untouched(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    run("manifest", "scan", str(tree), "-o", str(out))
    before = out.read_text()
    result = run("manifest", "folds", str(out), "--k", "5")
    assert result.exit_code == 2 and "--k 5 is larger than the 4 groups" in result.output
    assert out.read_text() == before


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("manifest",),
        ("manifest", "scan"),
        ("manifest", "folds"),
        ("manifest", "check"),
        ("cv",),
        ("fuse",),
        ("extract",),
        ("demo",),
        ("cache",),
        ("cache", "info"),
        ("cache", "verify"),
        ("cache", "gc"),
        ("cache", "migrate"),
        ("bench",),
    ],
)
def test_every_command_has_help_with_defaults(args: tuple[str, ...]) -> None:
    result = run(*args, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output
    if args == ("manifest", "folds"):
        assert "[default: the manifest's, else 6]" in " ".join(result.output.split())
    if args == ("cv",):
        text = " ".join(result.output.split())
        assert "[default: the cache's own]" in text and "late(a,b)" in text and "stack(a,b)" in text


def test_version_and_entry_points() -> None:
    bin_dir = Path(sys.executable).parent
    version = subprocess.run([bin_dir / "mvemo", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("mvemo, version ")
    cv_help = subprocess.run([bin_dir / "mvemo-cv", "--help"], capture_output=True, text=True, check=True)
    assert "--folds" in cv_help.stdout


def test_cv_on_a_missing_cache_names_extract(tmp_path: Path) -> None:
    result = CliRunner().invoke(cv, ["--cache", str(tmp_path / "c.h5")], prog_name="mvemo-cv")
    assert result.exit_code == 2 and "does not exist; build it with `mvemo extract" in result.output


def test_mved_sample_scan_folds_check(mved_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    assert run("manifest", "scan", str(mved_sample), "-o", str(out)).exit_code == 0
    assert run("manifest", "folds", str(out), "--k", "6").exit_code == 0
    manifest = read_manifest(out)
    assert len(manifest) == 136 and len(manifest.classes) == 6
    assert (fold_table(manifest) > 0).all(), "every class in every fold"
    segment_folds: dict[str, set[int]] = {}
    for clip in manifest.clips:
        segment_folds.setdefault(clip.group, set()).add(clip.fold)
    assert all(len(f) == 1 for f in segment_folds.values())
    assert len(set(manifest.groups)) < 136, "segments of one video share a group"
    result = run("manifest", "check", str(out))
    assert result.exit_code == 0, result.output
    assert ": 136 ok, 0 with problems" in result.output and "136 clips (6 classes (" in result.output


def test_recompute_takes_a_comma_list_and_refuses_a_set_the_run_does_not_write(tmp_path: Path) -> None:
    for label in ("Sad", "Calm"):
        for i in range(3):
            write_tiny(tmp_path / "clips" / label / f"{i}.mp4")
    manifest, cache = str(tmp_path / "m.csv"), str(tmp_path / "c")
    assert run("manifest", "scan", str(tmp_path / "clips"), "-o", manifest).exit_code == 0
    first = run("extract", manifest, "--cache", cache, "--features", "mel,lld")
    assert first.exit_code == 0 and "12 rows computed" in first.output, first.output
    again = run("extract", manifest, "--cache", cache, "--features", "mel,lld")
    assert again.exit_code == 0 and "0 rows computed" in again.output, again.output
    both = run("extract", manifest, "--cache", cache, "--features", "mel,lld", "--recompute", "mel,lld")
    assert both.exit_code == 0 and "12 rows computed" in both.output, "both sets start over, not one named 'mel,lld'"
    assert recomputed_sets(["frames"], ("mel", "frames224", "frames112"), ()) == ("frames224", "frames112")
    assert recomputed_sets("frames", ("frames112",), ("c3d",)) == ("frames112",), "c3d's run writes one of the two"
    assert recomputed_sets(["emb/musicnn.max/all"], ("logmel",), ("musicnn.max",)) == ("emb/musicnn.max/all",)
    unknown = run("extract", manifest, "--cache", cache, "--features", "mel", "--recompute", "lld")
    assert (
        unknown.exit_code == 2
        and "--recompute lld: this run writes no set of that name; it writes mel" in unknown.output
    )
