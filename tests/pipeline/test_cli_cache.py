from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.store import CacheWriter
from mvemo.pipeline.cli.main import cli
from tests.cache.helpers import EMB, MEL, first_segment, row_values, stand_in_manifest


def build(tmp_path: Path) -> Path:
    cache = tmp_path / "c.h5"
    manifest = stand_in_manifest(tmp_path / "media", n=6)
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL, EMB])
        for row in range(6):
            writer.write("mel", [row], [row_values(MEL, row)])
        writer.write("emb/net/fold0", [0, 1], [row_values(EMB, 0), row_values(EMB, 1)])
        writer.fail("emb/net/fold0", 2, "cannot decode: broken tail")
    return cache


def test_info_json_follows_the_contract(tmp_path: Path) -> None:
    cache = build(tmp_path)
    result = CliRunner().invoke(cli, ["cache", "info", str(cache), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["clips"] == 6 and info["classes"] == ["calm", "tense"]
    mel = info["feature_sets"]["mel"]
    assert mel["shape"] == [6, 16, 40] and mel["dtype"] == "float32" and mel["done"] == 6
    assert mel["fingerprint"] == MEL.fingerprint and mel["config"] == dict(MEL.config)
    emb = info["feature_sets"]["emb/net/fold0"]
    assert (emb["done"], emb["failed"], emb["dtype"]) == (2, 1, "float16")


def test_info_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["cache", "info", str(build(tmp_path))])
    assert result.exit_code == 0
    assert "6 clips, 2 classes (calm, tense)" in result.output
    assert "emb/net/fold0" in result.output and MEL.fingerprint[:12] in result.output


def test_verify_exit_codes(tmp_path: Path) -> None:
    cache = build(tmp_path)
    result = CliRunner().invoke(cli, ["cache", "verify", str(cache)])
    assert result.exit_code == 0, result.output
    assert "failed (recorded): emb/net/fold0, clip 'c/2': cannot decode: broken tail" in result.output
    with h5py.File(first_segment(cache, "mel"), "r+") as f:
        f["data"][4] = np.full(MEL.row_shape, np.inf, dtype=np.float32)
    result = CliRunner().invoke(cli, ["cache", "verify", str(cache)])
    assert result.exit_code == 3
    assert "mel, clip 'c/4': non-finite values" in result.output


def test_missing_cache_is_an_input_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["cache", "info", str(tmp_path / "none.h5")])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.heavy
def test_bench_cache_json_keys(tmp_path: Path) -> None:
    args = ["bench", "cache", "--clips", "40", "--grow-gb", "0.002", "--tmp-dir", str(tmp_path), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in ("write_s", "embeddings_read_gbps", "random_mel_read_ms", "memcpy_gbps", "read_fraction_of_memcpy"):
        assert figures[key] > 0
    assert figures["add_set_cache_gb"] == [0.002, 0.02]
    assert figures["add_set_bytes_ratio"] >= 1.0 and figures["add_set_time_ratio"] > 0
    assert figures["clips"] == 40


def test_info_states_what_a_clip_of_frames_costs(tmp_path: Path) -> None:
    import re

    from mvemo.extract.frame_sets import FrameConfig, video_feature_specs

    cache = tmp_path / "c.h5"
    with CacheWriter(cache, stand_in_manifest(tmp_path / "media", n=2)) as writer:
        writer.prepare(video_feature_specs(FrameConfig()))
    result = CliRunner().invoke(cli, ["cache", "info", str(cache)])
    assert result.exit_code == 0, result.output
    assert re.search(r"^frames224\s+32x224x224x3\s+uint8\s+0\s+0\s+4\.817\s", result.output, re.M), result.output
    assert re.search(r"^frames112\s+32x112x112x3\s+uint8\s+0\s+0\s+1\.204\s", result.output, re.M), result.output
