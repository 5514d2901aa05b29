"""Converting a single-file cache of earlier versions, and removing sets no longer used."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.fingerprint import canonical_json
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.cache.verify import verify_cache
from mvemo.manifests import CacheError, Manifest, write_manifest
from mvemo.pipeline.cli.main import cli
from tests.cache.helpers import EMB, MEL, row_values, stand_in_manifest


def write_single_file_cache(path: Path, manifest: Manifest) -> None:
    """A cache as earlier mvemo versions wrote it: one HDF5 file, a clip table and a group per set."""
    from mvemo.cache.fingerprint import media_hash
    from mvemo.cache.h5file import row_checksum
    from mvemo.cache.sets import segment_attrs

    n = len(manifest)
    hashes = [media_hash([c.video, c.audio]).encode() for c in manifest.clips]
    with h5py.File(path, "w") as f:
        f.attrs.update(
            {"schema_version": 1, "mvemo_version": "0.1.0", "classes": canonical_json(list(manifest.classes))}
        )
        text = h5py.string_dtype()
        f["clips/clip_id"] = np.array(manifest.clip_ids, dtype=text)
        f["clips/group"] = np.array([c.group for c in manifest.clips], dtype=text)
        f["clips/video"] = np.array([str(c.video) for c in manifest.clips], dtype=text)
        f["clips/audio"] = np.array([str(c.audio) for c in manifest.clips], dtype=text)
        f["clips/label"] = manifest.y.astype(np.int32)
        f["clips/fold"] = manifest.folds.astype(np.int32)
        f["clips/media_hash"] = np.array(hashes, dtype="S64")
        f["clips/media_stat"] = np.array([b""] * n, dtype="S64")
        for spec, failed in ((MEL, 3), (EMB, None)):
            group = f.create_group(f"features/{spec.name}")
            rows = np.stack([row_values(spec, r) for r in range(n)])
            group["data"] = rows
            status = np.ones(n, dtype=np.uint8)
            error = np.zeros(n, dtype="S240")
            if failed is not None:
                status[failed], error[failed] = 2, b"cannot decode: moov atom not found"
            group["status"] = status
            group["error"] = error
            group["checksum"] = np.array([row_checksum(r) for r in rows], dtype=np.uint32)
            group["valid_length"] = np.full(n, spec.row_shape[0], dtype=np.int32)
            group["media_hash"] = np.array(hashes, dtype="S64")
            group.attrs.update(segment_attrs(spec))


def test_migrate_keeps_every_row_fingerprint_and_failure(tmp_path: Path) -> None:
    manifest = stand_in_manifest(tmp_path / "media")
    old = tmp_path / "c.h5"
    write_single_file_cache(old, manifest)
    with pytest.raises(CacheError, match=r"one HDF5 file, the layout of earlier mvemo versions.*`mvemo cache migrate"):
        CacheWriter(old, manifest)
    manifest_path = write_manifest(manifest, tmp_path / "m.csv")
    result = CliRunner().invoke(cli, ["extract", str(manifest_path), "--cache", str(old), "--features", "mel"])
    assert result.exit_code == 2 and f"run `mvemo cache migrate {old}` once" in result.output, result.output
    windows = tmp_path / "windows.toml"
    windows.write_text("[clip]\nwindows = true\n")
    result = CliRunner().invoke(cli, ["extract", str(manifest_path), "--cache", str(old), "--config", str(windows)])
    assert result.exit_code == 2 and f"run `mvemo cache migrate {old}` once" in result.output, result.output
    result = CliRunner().invoke(cli, ["cache", "migrate", str(old)])
    assert result.exit_code == 0, result.output
    assert old.is_dir() and (tmp_path / "c.h5.single-file.h5").is_file()
    with Cache(old) as cache:
        assert cache.clip_ids == manifest.clip_ids and cache.folds.tolist() == manifest.folds.tolist()
        assert cache.fingerprint("mel") == MEL.fingerprint and cache.fingerprint("emb/net/fold0") == EMB.fingerprint
        done = cache.done("mel")
        assert done.sum() == len(manifest) - 1 and not done[3]
        np.testing.assert_array_equal(
            cache.read_matrix("emb/net/fold0"), np.stack([row_values(EMB, r) for r in range(12)])
        )
        assert cache.failures() == [
            {"feature_set": "mel", "clip_id": "c/3", "reason": "cannot decode: moov atom not found"}
        ]
    assert verify_cache(old).ok
    with CacheWriter(old, manifest) as writer:
        writer.prepare([MEL, EMB])
        assert writer.todo("mel").size == 0 and writer.todo("emb/net/fold0").size == 0, "nothing is computed again"


def test_gc_removes_unreferenced_sets_and_leftovers_and_reports_bytes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    manifest = stand_in_manifest(tmp_path / "media")
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL, EMB])
        for row in range(len(manifest)):
            writer.write("mel", [row], [row_values(MEL, row)])
    (cache / "sets" / "mel" / ".rows-000000000-000000012.h5.tmp").write_bytes(b"x" * 100)  # a killed writer's file
    (cache / "sets" / "emb" / "net" / "fold0" / "rows-000000020-000000022.h5").write_bytes(b"y" * 50)  # off the chain
    emb_bytes = sum(p.stat().st_size for p in (cache / "sets" / "emb").rglob("*.h5"))
    dry = CliRunner().invoke(cli, ["cache", "gc", str(cache), "--features", "mel", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["removed"] == {"emb/net/fold0": emb_bytes} and report["freed_bytes"] == emb_bytes + 100
    with Cache(cache) as reader:
        assert reader.feature_sets() == ["emb/net/fold0", "mel"], "a dry run removes nothing"
    result = CliRunner().invoke(cli, ["cache", "gc", str(cache), "--features", "mel"])
    assert result.exit_code == 0 and "removed set emb/net/fold0" in result.output, result.output
    with Cache(cache) as reader:
        assert reader.feature_sets() == ["mel"] and reader.done("mel").all()
    assert not (cache / "sets" / "emb").exists() and not list(cache.rglob("*.tmp"))
    kept = CliRunner().invoke(cli, ["cache", "gc", str(cache), "--features", "mel", "--json"])
    assert json.loads(kept.stdout)["freed_bytes"] == 0
