"""A full disk (simulated with RLIMIT_FSIZE) mid-write: a clean error, a cache that opens, a rerun that completes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from tests.cache.helpers import row_values, stand_in_manifest

BIG = FeatureSpec("mel", (256, 300), "float32", "mel", "1")  # 300 KiB rows
REPO = Path(__file__).resolve().parents[2]
CHILD = """
import resource, sys
from pathlib import Path
from mvemo.cache.store import CacheWriter
from mvemo.manifests import CacheError
from tests.cache.test_disk_full import BIG as MEL
from tests.cache.helpers import first_segment, row_values, stand_in_manifest
manifest = stand_in_manifest(Path(sys.argv[2]), 40)
with CacheWriter(sys.argv[1], manifest) as writer:
    writer.prepare([MEL])
    # past a third of the (sparse) file, writes fail as on a full disk
    limit = first_segment(Path(sys.argv[1]), 'mel').stat().st_size // 3
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        for row in writer.todo("mel"):
            writer.write("mel", [row], [row_values(MEL, int(row))])
    except CacheError as err:
        print(err)
        sys.exit(2)
"""


def test_a_full_disk_fails_cleanly_and_a_rerun_completes(tmp_path: Path) -> None:
    cache, media = tmp_path / "c.h5", tmp_path / "media"
    manifest = stand_in_manifest(media, 40)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache), str(media)], env=env, capture_output=True, text=True
    )
    assert child.returncode == 2, child.stderr
    assert "free disk space (or raise the file size limit) and run again: rows already done are kept" in child.stdout
    with Cache(cache) as reader:
        done = reader.done("mel")
        assert 0 < done.sum() < 40
        expected = np.stack([row_values(BIG, r) for r in np.flatnonzero(done)])
        np.testing.assert_array_equal(reader.read_matrix("mel", np.flatnonzero(done)), expected)
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([BIG])
        for row in writer.todo("mel"):
            writer.write("mel", [row], [row_values(BIG, int(row))])
    with Cache(cache) as reader:
        assert reader.done("mel").all()
        np.testing.assert_array_equal(reader.read_matrix("mel"), np.stack([row_values(BIG, r) for r in range(40)]))
