"""Every --out, --csv and --cache a command writes is checked before any work: a path that cannot be created fails
at once with one line and exit 2 (a `NotADirectoryError` came after a whole cross-validation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mvemo.pipeline.cli.main import cli, cv

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def refused(command: object, args: list[str], option: str) -> str:
    result = CliRunner().invoke(command, args, prog_name="mvemo")  # type: ignore[arg-type]
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"error: {option} " in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


def test_mvemo_cv_refuses_an_out_inside_a_file(tiny_demo: Path, a_file: Path) -> None:
    line = refused(cv, ["--cache", str(tiny_demo / "cache"), "--out", str(a_file / "sub")], "--out")
    assert f"{a_file} is a file" in line


def test_fuse_refuses_an_out_inside_a_file(tiny_demo: Path, a_file: Path) -> None:
    refused(cli, ["fuse", str(tiny_demo / "cache"), "--out", str(a_file / "sub" / "deeper")], "--out")


def test_predict_refuses_a_timeline_out_and_a_csv_it_cannot_write(
    tiny_demo: Path, a_file: Path, tmp_path: Path
) -> None:
    video = next((tiny_demo / "data").rglob("*.mp4"))
    model = str(tiny_demo / "model")
    refused(cli, ["predict", model, str(video), "--timeline", "--out", str(a_file / "sub")], "--out")
    refused(cli, ["predict", model, str(video), "--csv", str(a_file / "r.csv")], "--csv")
    line = refused(cli, ["predict", model, str(video), "--csv", str(tmp_path)], "--csv")
    assert "is a folder" in line


def test_extract_and_demo_refuse_a_cache_and_an_out_inside_a_file(tiny_demo: Path, a_file: Path) -> None:
    refused(
        cli,
        ["extract", str(tiny_demo / "manifest.csv"), "--cache", str(a_file / "cache"), "--features", "mel"],
        "--cache",
    )
    refused(cli, ["demo", "--out", str(a_file / "demo")], "--out")
    assert a_file.read_text() == "not a folder"
