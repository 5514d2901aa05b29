from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.lock import CacheLock, lock_state
from mvemo.cache.read import Cache, read_matrix
from mvemo.cache.store import CacheWriter
from mvemo.cache.verify import verify_cache
from mvemo.manifests import CacheError, Manifest
from tests.cache.helpers import EMB, MEL, first_segment, row_values, stand_in_manifest


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return stand_in_manifest(tmp_path / "media")


def fill(writer: CacheWriter, spec: FeatureSpec, rows=None) -> None:
    for row in writer.todo(spec.name) if rows is None else rows:
        writer.write(spec.name, [row], [row_values(spec, int(row))])


@pytest.mark.parametrize(
    "dtype, row_shape",
    [
        ("float32", (3, 5)),
        ("float16", (7,)),
        ("float64", (2, 2, 2)),
        ("int8", (4,)),
        ("int64", (3,)),
        ("uint8", (2, 6, 6, 3)),
        ("bool", (5,)),
        ("float32", ()),
    ],
)
def test_round_trip_of_every_dtype_and_shape(tmp_path: Path, manifest: Manifest, dtype: str, row_shape) -> None:
    spec = FeatureSpec("feat", row_shape, dtype, "test", "1")
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([spec])
        fill(writer, spec)
    expected = np.stack([row_values(spec, r) for r in range(len(manifest))])
    with Cache(cache) as reader:
        assert reader.done("feat").all()
        got = reader.read_matrix("feat")
        assert got.dtype == np.dtype(dtype) and got.shape == (len(manifest), *row_shape)
        np.testing.assert_array_equal(got, expected)
        rows = [7, 2, 3, 3, 11, 0]
        np.testing.assert_array_equal(reader.read_matrix("feat", rows), expected[rows])
        assert reader.read_matrix("feat", []).shape == (0, *row_shape)
    np.testing.assert_array_equal(read_matrix(cache, "feat", [5]), expected[[5]])


def test_clip_table_is_stored_once_in_manifest_order(tmp_path: Path, manifest: Manifest) -> None:
    with CacheWriter(tmp_path / "c.h5", manifest):
        pass
    with Cache(tmp_path / "c.h5") as reader:
        assert reader.clip_ids == manifest.clip_ids
        assert reader.y.tolist() == manifest.y.tolist()
        assert reader.folds.tolist() == manifest.folds.tolist()
        assert reader.groups == manifest.groups, "a clip without a group is a group of its own, as in the manifest"
        assert reader.classes == manifest.classes
        assert all(len(h) == 64 for h in reader.media_hash)


def test_variable_length_rows_store_their_valid_length(tmp_path: Path, manifest: Manifest) -> None:
    spec = FeatureSpec("lld", (10, 3), "float32", "lld", "1", columns=("a", "b", "c"), variable_length=True)
    with CacheWriter(tmp_path / "c.h5", manifest) as writer:
        writer.prepare([spec])
        writer.write("lld", [0, 1, 2], [np.ones((4, 3)), np.ones((10, 3)), np.ones((13, 3))])
    with Cache(tmp_path / "c.h5") as reader:
        assert reader.valid_lengths("lld")[:3].tolist() == [4, 10, 10]
        assert reader.columns("lld") == ["a", "b", "c"]
        rows = reader.read_matrix("lld", [0])
        assert rows[0, :4].sum() == 12 and not rows[0, 4:].any()


def test_rerun_skips_done_rows_and_keeps_their_values(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL, EMB])
        fill(writer, MEL, rows=range(5))
        assert writer.todo("mel").tolist() == list(range(5, 12))
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL, EMB])
        assert writer.todo("mel").tolist() == list(range(5, 12))
        fill(writer, MEL)
        assert writer.todo("mel").size == 0 and writer.todo("emb/net/fold0").size == 12
    np.testing.assert_array_equal(read_matrix(cache, "mel", [3]), row_values(MEL, 3)[None])


def test_changed_config_raises_naming_fingerprints_keys_and_recompute(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    changed = replace(MEL, config={"n_mels": 16, "hop_length": 512})
    with CacheWriter(cache, manifest) as writer:
        with pytest.raises(
            CacheError,
            match=rf"{MEL.fingerprint[:12]}.*{changed.fingerprint[:12]}.*differing: config\.hop_length"
            r".*--recompute mel",
        ):
            writer.prepare([changed])
        with pytest.raises(CacheError, match=r"differing: layout\.dtype, weights_sha256"):
            writer.prepare([replace(MEL, dtype="float16", weights_sha256="cd" * 32)])
        writer.prepare([changed], recompute=["mel"])
        assert writer.todo("mel").size == len(manifest)
    with Cache(cache) as reader:
        assert reader.fingerprint("mel") == changed.fingerprint
        assert reader.config("mel") == {"n_mels": 16, "hop_length": 512}


def test_non_finite_rows_are_refused_and_recorded(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        bad = row_values(MEL, 1)
        bad[0, 0] = np.nan
        refused = writer.write("mel", [0, 1, 2], [row_values(MEL, 0), bad, np.full(MEL.row_shape, np.inf)])
        assert refused == [1, 2]
        writer.fail("mel", 3, "cannot decode: moov atom not found")
        assert 1 not in writer.todo("mel") and 3 not in writer.todo("mel")
    with Cache(cache) as reader:
        assert reader.done("mel")[:4].tolist() == [True, False, False, False]
        failures = {f["clip_id"]: f["reason"] for f in reader.failures()}
        assert failures == {
            "c/1": "the extractor produced NaN or inf values",
            "c/2": "the extractor produced NaN or inf values",
            "c/3": "cannot decode: moov atom not found",
        }
    report = verify_cache(cache)
    assert report.ok and len(report.failures) == 3


def test_changed_media_makes_only_its_rows_stale(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    touched = manifest.clips[4].video
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))
    with CacheWriter(cache, manifest) as writer:
        assert writer.todo("mel").size == 0, "a touch that keeps the bytes is not a change"
    changed = manifest.clips[6].video
    changed.write_bytes(b"re-encoded" * 70)
    report = verify_cache(cache)
    assert report.stale == {"mel": ["c/6"]} and not report.ok
    with CacheWriter(cache, manifest) as writer:
        assert writer.todo("mel").tolist() == [6]
        with Cache(cache) as reader:
            assert not reader.done("mel")[6] and reader.done("mel").sum() == 11


def test_new_clips_are_appended_and_old_rows_kept(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    bigger = stand_in_manifest(tmp_path / "media", n=15)
    with CacheWriter(cache, bigger) as writer:
        writer.prepare([MEL])
        assert writer.todo("mel").tolist() == [12, 13, 14]
        fill(writer, MEL)
    with Cache(cache) as reader:
        assert reader.clip_ids == bigger.clip_ids and reader.done("mel").all()
        np.testing.assert_array_equal(
            reader.read_matrix("mel", [2, 13]), np.stack([row_values(MEL, 2), row_values(MEL, 13)])
        )
    segments = sorted(p.name for p in (cache / "sets" / "mel").glob("rows-*.h5"))
    assert segments == ["rows-000000000-000000012.h5", "rows-000000012-000000015.h5"], (
        "the new clips got a segment of their own"
    )


def test_adding_a_set_or_clips_rewrites_no_existing_set(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    mel = first_segment(cache, "mel")
    before = (mel.stat().st_ino, mel.stat().st_mtime_ns, mel.read_bytes())
    with CacheWriter(cache, stand_in_manifest(tmp_path / "media", n=14)) as writer:
        writer.prepare([MEL, EMB])
        fill(writer, EMB)
        fill(writer, MEL)
    assert (mel.stat().st_ino, mel.stat().st_mtime_ns, mel.read_bytes()) == before, "the old segment was not touched"
    with Cache(cache) as reader:
        assert reader.done("mel").all() and reader.done("emb/net/fold0").all()


def test_a_removed_clip_is_hidden_and_comes_back_without_recomputing(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    fewer = Manifest(manifest.classes, tuple(c for c in manifest.clips if c.clip_id != "c/4"))
    with CacheWriter(cache, fewer) as writer:
        writer.prepare([MEL])
        assert writer.todo("mel").size == 0, "removing a clip recomputes nothing"
        assert writer.row_of("c/5") == 4
    with Cache(cache) as reader:
        assert reader.clip_ids == fewer.clip_ids and len(reader) == 11
        expected = np.stack([row_values(MEL, r) for r in range(12) if r != 4])
        np.testing.assert_array_equal(reader.read_matrix("mel"), expected)
        np.testing.assert_array_equal(reader.read_matrix("mel", [4]), row_values(MEL, 5)[None])
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        assert writer.todo("mel").size == 0, "a clip listed again brings its rows back"
    with Cache(cache) as reader:
        assert reader.clip_ids == manifest.clip_ids and reader.done("mel").all()


def test_labels_and_folds_freeze_once_embeddings_exist(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    refolded = manifest.with_folds([(f + 1) % 3 for f in manifest.folds])
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
    with CacheWriter(cache, refolded):
        pass
    with Cache(cache) as reader:
        assert reader.folds.tolist() == refolded.folds.tolist(), "features alone do not depend on folds"
    with CacheWriter(cache, refolded) as writer:
        writer.prepare([EMB])
    with pytest.raises(CacheError, match=r"clip 'c/0': its label or fold .* differs .* embeddings"):
        CacheWriter(cache, manifest)
    assert lock_state(cache) == "free", "a refused writer releases its lock"


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest):
        with pytest.raises(
            CacheError, match=rf"being written by another process \(pid {os.getpid()} on host .*, started "
        ):
            CacheWriter(cache, manifest)
        assert lock_state(cache).startswith(f"held by pid {os.getpid()}")
    with CacheWriter(cache, manifest):
        pass


def test_a_killed_holder_s_lock_is_taken_over(tmp_path: Path) -> None:
    cache = tmp_path / "c.h5"
    code = (
        "import sys, time; from mvemo.cache.lock import CacheLock; CacheLock(sys.argv[1]).acquire();"
        " print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(cache)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(CacheError, match=rf"pid {holder.pid}"):
        CacheLock(cache).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = CacheLock(cache).acquire()
    assert lock.previous["pid"] == holder.pid
    lock.release()
    assert not lock.path.exists(), "a writer that finishes leaves no lock file"


def test_a_lock_whose_file_was_replaced_locks_the_new_file(tmp_path: Path) -> None:
    first = CacheLock(tmp_path / "c.h5").acquire()
    stale = os.open(first.path, os.O_RDWR)  # a writer that opened the file just before the holder released it
    first.release()
    second = CacheLock(tmp_path / "c.h5").acquire()
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the stale writer's lock succeeds, on a file no longer named
    assert os.fstat(stale).st_ino != os.stat(second.path).st_ino
    with pytest.raises(CacheError, match="being written by another process"):
        CacheLock(tmp_path / "c.h5").acquire()
    os.close(stale)
    second.release()


def test_verify_finds_a_planted_nan_and_flipped_bytes(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL, EMB])
        fill(writer, MEL)
        fill(writer, EMB)
    assert verify_cache(cache).ok
    with h5py.File(first_segment(cache, "mel"), "r+") as f:
        row = f["data"][2]
        row[3, 3] = np.nan
        f["data"][2] = row
    with h5py.File(first_segment(cache, "emb/net/fold0"), "r+") as f:
        flipped = f["data"][5].view(np.uint16) ^ np.uint16(0x0100)
        f["data"][5] = flipped.view(np.float16)
    report = verify_cache(cache)
    assert not report.ok
    assert any("mel, clip 'c/2': non-finite" in p for p in report.problems)
    assert any("emb/net/fold0, clip 'c/5': row bytes do not match their checksum" in p for p in report.problems)
    with h5py.File(first_segment(cache, "emb/net/fold0"), "r+") as f:
        f["data"][:] = -f["data"][:]
    with (
        CacheWriter(cache, manifest) as writer,
        pytest.raises(CacheError, match=r"emb/net/fold0', clip .*: stored row does not match its checksum"),
    ):
        writer.prepare([EMB])


def test_readers_refuse_what_is_not_a_cache_saying_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=r"does not exist; build it with `mvemo extract"):
        Cache(tmp_path / "none")
    (tmp_path / "old.h5").write_bytes(b"a single file")
    with pytest.raises(
        CacheError, match=r"one HDF5 file, the layout of earlier mvemo versions.*`mvemo cache migrate .*old.h5`"
    ):
        Cache(tmp_path / "old.h5")
    (tmp_path / "begun").mkdir()
    (tmp_path / "begun" / ".clips.h5.tmp").write_bytes(b"half")  # a writer killed while creating the cache
    with pytest.raises(CacheError, match=r"does not exist; build it with `mvemo extract"):
        Cache(tmp_path / "begun")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x").write_text("x")
    with pytest.raises(CacheError, match=r"not an mvemo cache"):
        Cache(tmp_path / "folder")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "clips.h5").write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match=r"not a readable HDF5 file"):
        Cache(tmp_path / "broken")


def test_a_reader_reads_while_the_writer_adds_rows_sets_and_clips(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL, rows=range(6))
    with Cache(cache) as reader, CacheWriter(cache, stand_in_manifest(tmp_path / "media", n=14)) as writer:
        writer.prepare([MEL, EMB])
        fill(writer, MEL)
        fill(writer, EMB)
        assert len(reader) == 12 and reader.feature_sets() == ["mel"], "a reader keeps the cache it opened"
        done = reader.done("mel")
        assert done[:6].all() and done[6:].sum() in range(7), "rows written since show up done, or not yet"
        rows = np.flatnonzero(done)
        np.testing.assert_array_equal(reader.read_matrix("mel", rows), np.stack([row_values(MEL, r) for r in rows]))
        with Cache(cache) as later:
            assert len(later) == 14 and later.done("emb/net/fold0").all() and later.done("mel").all()


def test_a_kill_while_a_stale_row_is_rewritten_leaves_it_to_do(tmp_path: Path, manifest: Manifest, monkeypatch) -> None:
    from mvemo.cache.sets import OpenSet

    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    manifest.clips[6].video.write_bytes(b"re-encoded" * 70)
    marking = OpenSet.set_rows

    def killed_before_done(self, index, rows, **columns):
        if columns.get("status") == 1:
            raise KeyboardInterrupt  # as a kill between the new bytes and their checksum
        marking(self, index, rows, **columns)

    with CacheWriter(cache, manifest) as writer:
        monkeypatch.setattr(OpenSet, "set_rows", killed_before_done)
        with pytest.raises(KeyboardInterrupt):
            writer.write("mel", [6], [row_values(MEL, 60)])
    monkeypatch.undo()
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])  # no checksum error: the half-rewritten row is to do, not done
        assert writer.todo("mel").tolist() == [6]
    assert verify_cache(cache).ok


def test_one_cache_has_one_lock_however_its_path_is_spelt(tmp_path: Path, manifest: Manifest) -> None:
    with (
        CacheWriter(tmp_path / "c", manifest),
        pytest.raises(CacheError, match=r"'.*c' is being written by another process"),
    ):
        CacheLock(f"{tmp_path / 'c'}/").acquire()


def test_a_damaged_later_segment_is_named(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    with CacheWriter(cache, stand_in_manifest(tmp_path / "media", n=15)) as writer:
        writer.prepare([MEL])
        fill(writer, MEL)
    second = cache / "sets" / "mel" / "rows-000000012-000000015.h5"
    second.write_bytes(second.read_bytes()[:1000])
    with (
        Cache(cache) as reader,
        pytest.raises(CacheError, match=r"feature set 'mel': .*rows-000000012-000000015\.h5: not a"),
    ):
        reader.read_matrix("mel")


def test_a_recorded_path_is_read_only_inside_its_folder(tmp_path: Path) -> None:
    from mvemo.cache.layout import inside

    (tmp_path / "model" / "checkpoints").mkdir(parents=True)
    (tmp_path / "model" / "out").symlink_to(tmp_path)
    assert (
        inside(tmp_path / "model", "checkpoints/musicnn.pt")
        == (tmp_path / "model" / "checkpoints" / "musicnn.pt").resolve()
    )
    for leaving in ("/etc/hostname", "../secret", "checkpoints/../../secret", "out/secret"):
        assert inside(tmp_path / "model", leaving) is None, leaving


def test_read_matrix_never_hands_out_a_row_that_is_not_done(tmp_path: Path, manifest: Manifest) -> None:
    """A script reading a set while extract still writes it: rows not done raise, naming the set and how many; with
    partial=True they come masked, NaN, never the bytes allocated where they will be written."""
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([MEL])
        writer.write("mel", [0, 1, 2], [row_values(MEL, r) for r in (0, 1, 2)])
    with Cache(cache) as reader:
        with pytest.raises(
            CacheError, match=r"feature set 'mel': 9 of the 12 rows asked for are not done \(first: clip "
        ):
            reader.read_matrix("mel")
        np.testing.assert_array_equal(
            reader.read_matrix("mel", [2, 0]), np.stack([row_values(MEL, 2), row_values(MEL, 0)])
        )
        masked = reader.read_matrix("mel", partial=True)
        assert masked.mask[:3].sum() == 0 and masked.mask[3:].all()
        assert np.isnan(masked.data[3:]).all() and np.array_equal(masked.data[1], row_values(MEL, 1))
    with pytest.raises(CacheError, match="not done"):
        read_matrix(cache, "mel")
