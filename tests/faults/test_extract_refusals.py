"""Through the `mvemo extract` command: a second writer is refused, a full disk stops the run cleanly and a rerun
completes it to the cache of a run that never stopped. (A disk that fills up between rows:
``tests/cache/test_disk_full.py``.)"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.manifests import CacheError, Clip, Manifest, read_manifest, write_manifest
from mvemo.pipeline.cli.main import cli
from tests.cache.helpers import first_segment
from tests.conftest import write_tiny

REPO = Path(__file__).resolve().parents[2]
HOLD_THE_LOCK = (
    "import sys, time; from mvemo.cache.lock import CacheLock; CacheLock(sys.argv[1]).acquire();"
    " print('held', flush=True); time.sleep(120)"
)


def manifest_of(folder: Path, n: int) -> Path:
    clips = [Clip(f"c{i}", "ab"[i % 2], audio=write_tiny(folder / f"{i}.wav", video=False)) for i in range(n)]
    return write_manifest(Manifest(("a", "b"), tuple(clips)), folder / "m.csv")


def test_a_second_extract_on_the_same_cache_is_refused_naming_the_first(tmp_path: Path) -> None:
    manifest, cache = manifest_of(tmp_path, 2), tmp_path / "c.h5"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(cache)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(cli, ["extract", str(manifest), "--cache", str(cache), "--features", "mel"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    assert f"is being written by another process (pid {holder.pid} on host" in result.output
    assert "Traceback" not in result.output and not cache.exists()


@pytest.mark.heavy
def test_extract_on_a_full_disk_stops_cleanly_and_a_rerun_completes(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path / "media", 40)
    mvemo = Path(sys.executable).parent / "mvemo"

    def extract(cache: Path, limit: int | None = None) -> subprocess.CompletedProcess:
        def cap() -> None:  # as a disk that fills up: writes past `limit` bytes fail
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        command = [str(mvemo), "extract", str(manifest), "--cache", str(cache), "--features", "mel"]
        return subprocess.run(command, capture_output=True, text=True, preexec_fn=cap, timeout=600)

    assert extract(tmp_path / "reference.h5").returncode == 0
    full = extract(tmp_path / "c.h5", limit=first_segment(tmp_path / "reference.h5", "mel").stat().st_size // 3)
    assert full.returncode == 2, full.stderr
    assert "free disk space (or raise the file size limit) and run again: rows already done are kept" in full.stderr
    assert "Traceback" not in full.stderr
    with Cache(tmp_path / "c.h5") as partial:  # the new set is made under a temporary name, renamed only when whole
        assert partial.feature_sets() == [] and len(partial) == 40
    assert not list((tmp_path / "c.h5").rglob("*.tmp"))
    assert extract(tmp_path / "c.h5").returncode == 0
    with Cache(tmp_path / "c.h5") as resumed, Cache(tmp_path / "reference.h5") as reference:
        assert resumed.done("mel").all()
        np.testing.assert_array_equal(resumed.read_matrix("mel"), reference.read_matrix("mel"))


def test_a_cache_is_never_written_into_a_folder_that_holds_other_things(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 2)
    source = tmp_path / "cache"  # a source folder named as the README's first cache was
    source.mkdir()
    (source / "__init__.py").write_text("")
    (source / "store.py").write_text("")
    result = CliRunner().invoke(
        cli, ["extract", str(manifest), "--cache", str(source), "--features", "mel"], prog_name="mvemo"
    )
    assert result.exit_code == 2, result.output
    assert (
        f"{str(source)!r} is a folder that holds other things (__init__.py, store.py) and no mvemo cache"
        in result.output
    )
    assert sorted(p.name for p in source.iterdir()) == ["__init__.py", "store.py"], "nothing written into it"
    assert not (tmp_path / "cache.lock").exists()
    with pytest.raises(CacheError, match="holds other things"):
        CacheWriter(source, read_manifest(manifest))
    empty = tmp_path / "empty"
    empty.mkdir()
    for cache in (empty, empty, tmp_path / "new"):  # an empty folder, then that cache again, a new folder
        result = CliRunner().invoke(cli, ["extract", str(manifest), "--cache", str(cache), "--features", "mel"])
        assert result.exit_code == 0, result.output
