from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from manifests import read_manifest
from manifests.folds import fold_table
from manifests.synthetic import DEMO_CLASSES
from pipeline.cli import cli


def test_demo_writes_checked_media_and_a_split_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--clips-per-class", "2", "--duration-s", "0.5"])
    assert result.exit_code == 0, result.output
    assert "12 clips in 6 classes, 12 decodable" in result.output
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert manifest.classes == DEMO_CLASSES
    assert (fold_table(manifest) == 1).all()
    assert all(c.video == c.audio and c.video.suffix == ".mp4" for c in manifest.clips)


@pytest.mark.slow
def test_default_demo_through_the_installed_entry_point(tmp_path: Path) -> None:
    mvemo = Path(sys.executable).parent / "mvemo"
    done = subprocess.run([mvemo, "demo", "--out", str(tmp_path / "demo")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "24 clips in 6 classes, 24 decodable" in done.stdout
    assert len(list((tmp_path / "demo" / "data").glob("*/*.mp4"))) == 24
