"""``mvemo weights list|fetch|verify``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mvemo.extract.weights.registry import KNOWN
from mvemo.pipeline.cli.main import cli
from tests.conftest import SHARED

WEIGHTS = SHARED / "weights"
CHOI = "choi_compact_cnn_msd.h5"


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["weights", *args], prog_name="mvemo")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MVEMO_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def shared() -> Path:
    if not (WEIGHTS / CHOI).is_file():
        pytest.skip(f"{WEIGHTS / CHOI} is absent (a clone without ../shared)")
    return WEIGHTS


def test_list_shows_each_file_its_sha256_source_and_where_it_looked(tmp_path: Path, shared: Path) -> None:
    result = invoke("list", "--weights-dir", str(shared))
    assert result.exit_code == 0, result.output
    assert f"{shared} (--weights-dir)" in result.output and ".cache/mvemo/weights (default)" in result.output
    assert f"found: {shared / CHOI}" in result.output and KNOWN[CHOI].sha256 in result.output
    assert "c3d.pickle  [c3d]  missing" in result.output and "(none published)" in result.output
    for known in KNOWN.values():
        assert known.url in result.output


def test_list_json(tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MVEMO_WEIGHTS", str(shared))
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["search_dirs"][0] == str(shared)
    entries = {w["name"]: w for w in document["weights"]}
    assert set(entries) == set(KNOWN)
    assert entries[CHOI]["path"] == str(shared / CHOI) and entries[CHOI]["expected_sha256"] == KNOWN[CHOI].sha256
    assert entries["c3d.pickle"]["status"] == "missing" and entries["c3d.pickle"]["pinned"] == "none"


def test_verify_passes_on_good_files_and_exits_3_on_a_corrupt_one(tmp_path: Path, shared: Path) -> None:
    result = invoke("verify", "--weights-dir", str(shared))
    assert result.exit_code == 0, result.output
    assert f"ok        {shared / CHOI}: sha256 {KNOWN[CHOI].sha256}" in result.output
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / CHOI).write_bytes(b"truncated")
    result = invoke("verify", "--weights-dir", str(tmp_path / "w"))
    assert result.exit_code == 3
    assert (
        f"MISMATCH  {tmp_path / 'w' / CHOI}" in result.stderr
        and "mvemo weights fetch choi_compact_cnn_msd.h5" in result.stderr
    )
    document = json.loads(invoke("verify", "--weights-dir", str(tmp_path / "w"), "--json").stdout)
    assert document["ok"] is False


def test_fetch_from_a_path_and_errors_are_one_line(tmp_path: Path, shared: Path) -> None:
    result = invoke("fetch", CHOI, "--from", str(shared / CHOI), "--weights-dir", str(tmp_path / "w"))
    assert result.exit_code == 0, result.output
    assert (
        f"{CHOI}: {tmp_path / 'w' / CHOI}" in result.output and "checked against the published sha256" in result.output
    )
    result = invoke("fetch", CHOI, "--from", str(shared / "msd50_tags.txt"), "--weights-dir", str(tmp_path / "w2"))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("mvemo: error: ") and "nothing was written" in result.stderr
    result = invoke("fetch", "vggish.h5")
    assert result.exit_code == 2 and "not a known file; choose one of choi_compact_cnn_msd.h5" in result.stderr


def test_fetch_json_and_the_note_for_a_file_without_published_sha256(tmp_path: Path) -> None:
    source = tmp_path / "c3d.pickle"
    source.write_bytes(b"a state dict")
    result = invoke("fetch", "c3d.pickle", "--from", str(source), "--weights-dir", str(tmp_path / "w"), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["path"] == str(tmp_path / "w" / "c3d.pickle") and document["checked"].startswith("nothing")
    assert "no sha256 is published for c3d.pickle" in result.stderr
