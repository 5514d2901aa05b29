"""Hostile and broken inputs: pickle payloads never run, bad manifests stop cleanly, readers stay bounded."""

from __future__ import annotations

import json
import pickle
import re
import resource
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.fingerprint import file_sha256
from mvemo.cache.h5file import seal
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.manifests import ConfigError
from mvemo.pipeline.cli.main import cli
from tests.cache.helpers import MEL, first_segment, row_values, stand_in_manifest
from tests.conftest import write_tiny


class Payload:
    """Unpickling this creates a file: the proof that something ran it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_in_a_cache_is_never_run(tmp_path: Path) -> None:
    cache, marker = tmp_path / "c.h5", tmp_path / "ran"
    with CacheWriter(cache, stand_in_manifest(tmp_path / "media", n=4)) as writer:
        writer.prepare([MEL])
        writer.write("mel", [0], [row_values(MEL, 0)])
    blob = np.void(pickle.dumps(Payload(marker)))
    with h5py.File(first_segment(cache, "mel"), "r+") as f:
        f.attrs["payload"] = blob
    commands = (["cache", "info", str(cache)], ["cache", "info", str(cache), "--json"], ["cache", "verify", str(cache)])
    for args in commands:
        assert CliRunner().invoke(cli, args).exit_code == 0
    with Cache(cache) as reader:
        reader.read_matrix("mel", partial=True)
        reader.info()
    with h5py.File(cache / "clips.h5", "r+") as f:  # the clip table is sealed: an edited one is refused unread
        f.attrs["payload"] = blob
        f.create_dataset("pickled", data=np.frombuffer(pickle.dumps(Payload(marker)), dtype=np.uint8))
    for args in commands:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "do not match the sha256 written with it" in result.output, result.output
    seal(cache / "clips.h5")  # sealed again (or a clip table of an earlier version, unsealed): read, never unpickled
    for args in commands:
        assert CliRunner().invoke(cli, args).exit_code == 0
    with Cache(cache) as reader:
        reader.read_matrix("mel", partial=True)
    assert not marker.exists()


def test_a_pickle_payload_in_a_model_s_checkpoint_or_heads_is_never_run(tmp_path: Path) -> None:
    """Even with its sha256 recorded to match (an attacker who edits model.json too), a checkpoint that is not a
    plain state dict is refused, and pickles planted in heads.h5 are never read."""
    from mvemo.extract.finetune.jobs import load_checkpoint
    from mvemo.extract.nets import get_net
    from mvemo.fuse.heads.softmax import LinearSoftmax
    from mvemo.fuse.saved.model import FORMAT, HEADS_H5, MODEL_JSON, load_fusion_model

    marker = tmp_path / "ran"
    checkpoint = tmp_path / "checkpoints" / "twodcnn.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(pickle.dumps({"conv.weight": Payload(marker)}))
    record = {"path": "checkpoints/twodcnn.pt", "sha256": file_sha256(checkpoint)}
    with pytest.raises(ConfigError, match=r"twodcnn.pt' holds more than a state dict of tensors; refused"):
        load_checkpoint(get_net("twodcnn", num_classes=2), record, tmp_path)
    tree = {"kind": "features", "inputs": ["lldstats"], "head": "head0", "chosen": {}}
    lld = {"fingerprint": "0" * 64, "config": {}, "extractor": "mvemo.lld", "weights_sha256": "", "input_configs": {}}
    model = {
        "kind": "unimodal",
        "expression": "lldstats",
        "inputs": ["lldstats"],
        "feature_sets": {"lld": lld},
        "model": tree,
    }
    document = {"format": FORMAT, "classes": ["a", "b"], "default_model": "lldstats", "models": {"lldstats": model}}
    (tmp_path / MODEL_JSON).write_text(json.dumps(document))
    linear = LinearSoftmax(np.array([0, 1]), np.zeros(3), np.ones(3), np.zeros((2, 3)), np.zeros(2))
    with h5py.File(tmp_path / HEADS_H5, "w") as f:
        for key in ("classes", "mean", "scale", "weights", "bias"):
            f[f"head0/{key}"] = getattr(linear, key)
        f.attrs["payload"] = np.void(pickle.dumps(Payload(marker)))
        f["head0"].create_dataset("pickled", data=np.frombuffer(pickle.dumps(Payload(marker)), dtype=np.uint8))
    saved = load_fusion_model(tmp_path)
    np.testing.assert_allclose(saved.predict("lldstats", {"lldstats": np.zeros((1, 3))}), [[0.5, 0.5]])
    assert not marker.exists()


def test_tampered_row_bytes_are_reported(tmp_path: Path) -> None:
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, stand_in_manifest(tmp_path / "media", n=4)) as writer:
        writer.prepare([MEL])
        for row in range(4):
            writer.write("mel", [row], [row_values(MEL, row)])
    with h5py.File(first_segment(cache, "mel"), "r+") as f:
        row = f["data"][1]
        row.reshape(-1).view(np.uint8)[100] ^= 0x40
        f["data"][1] = row
    result = CliRunner().invoke(cli, ["cache", "verify", str(cache)])
    assert result.exit_code == 3 and "clip 'c/1': row bytes do not match their checksum" in result.output


BAD_MANIFESTS = {
    "unknown_label": ("clip_id,label,video,audio\nx,Happy,ok.mp4,\n", r"column 'label' value 'Happy'"),
    "duplicate_id": ("clip_id,label,video,audio\nx,Sad,ok.mp4,\nx,Sad,ok.mp4,\n", r"repeats row 1"),
    "missing_file": ("clip_id,label,video,audio\nx,Sad,gone.mp4,\n", r"file .*gone\.mp4.* does not exist"),
    "fold_gaps": (
        "clip_id,label,video,audio,fold\nx,Sad,ok.mp4,,0\ny,Sad,ok.mp4,,\n",
        r"column 'fold' is empty|not folds 0..k-1 .* --reshuffle",
    ),
    "empty": ("clip_id,label,video,audio\n", r"has no clips"),
    "missing_column": ("clip_id,video,audio\nx,ok.mp4,\n", r"no target column"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_exit_2_with_one_line_and_write_nothing(tmp_path: Path, case: str) -> None:
    body, message = BAD_MANIFESTS[case]
    write_tiny(tmp_path / "ok.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text('# classes: ["Sad"]\n' + body)
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (
        ["extract", str(manifest), "--cache", str(tmp_path / "c.h5")],
        ["manifest", "folds", str(manifest)],
        ["manifest", "check", str(manifest)],
    ):
        result = CliRunner().invoke(cli, args)
        if args[0] == "manifest" and args[1] == "check" and case in ("missing_file",):
            assert result.exit_code == 3  # check lists media problems instead of stopping at the first
            continue
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output
        assert re.search(message, lines[0]), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing written"


@pytest.mark.heavy
def test_reader_memory_stays_flat_over_three_thousand_random_reads(tmp_path: Path) -> None:
    """Each read is 2.9 MB of mel rows: a leak of one read's buffers would show within a few reads."""
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, stand_in_manifest(tmp_path / "media", n=64)) as writer:
        writer.prepare([MEL])
        writer.write("mel", range(64), [row_values(MEL, r) for r in range(64)])
    rng = np.random.default_rng(0)
    with Cache(cache) as reader:
        for _ in range(500):  # warm-up: allocator pools and HDF5 free lists reach their steady size
            reader.read_matrix("mel", rng.integers(0, 64, 4))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(3_000):
            reader.read_matrix("mel", rng.integers(0, 64, 4))
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 20 * 1024, f"peak RSS grew {grown_kib} KiB over 3,000 reads"
