"""Every HDF5 file of a cache damaged in turn (cut short, a block zeroed, an array replaced by a group or by text):
`mvemo cache verify` lists it and exits 3 (or 2 where the clip table itself is lost), `mvemo-cv` and `mvemo fuse`
stop with one line and exit 2. Never a traceback."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.h5file import SEAL, seal
from mvemo.manifests import Manifest
from mvemo.pipeline.cli.main import cli
from tests.fuse.helpers import embedding_cache

DAMAGES = ("truncate", "zero", "group", "text")


def damage(path: Path, how: str) -> None:
    """Cut the file in half, zero 4 KiB in its middle, or put a group or text where its first array is: an edit of a
    sealed file is sealed again, as if made on purpose, so that the checks behind the seal are what is tested."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero":
        middle = len(data) // 3
        path.write_bytes(data[:middle] + bytes(4096) + data[middle + 4096 :])
    else:
        with h5py.File(path, "r+") as f:
            datasets: list[str] = []
            f.visititems(lambda key, item: datasets.append(key) if isinstance(item, h5py.Dataset) else None)
            name = datasets[0]
            shape = f[name].shape
            del f[name]
            f.create_group(name) if how == "group" else f.create_dataset(name, data=np.full(shape, b"x", dtype="S1"))
        if data.startswith(SEAL):
            seal(path)


def tagged(manifest: Manifest) -> Manifest:
    clips = tuple(replace(c, tags=("loud",) if i % 2 else ()) for i, c in enumerate(manifest.clips))
    return replace(manifest, clips=clips, tags=("loud",))


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cache of an embedding and a descriptor set, with tags (so a targets.h5 too)."""
    folder = tmp_path_factory.mktemp("intact")
    nets, vectors = {"a": (4, 2.0)}, {"descriptors": (5, 1.0)}
    return embedding_cache(folder / "cache", nets=nets, vectors=vectors, n_per_class=6, k=2, retarget=tagged)


def one_line(result) -> str:
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


# What each damage is found as (the sealed files' cuts and zeroed blocks by their sha256)
FOUND = {"group": "is a group where an array belongs", "text": "holds |S1 where"}


@pytest.mark.parametrize("how", DAMAGES)
def test_each_damaged_file_of_a_cache_is_one_line_and_exit_2_or_3(intact: Path, tmp_path: Path, how: str) -> None:
    """The clip table and the targets, read when a cache opens: exit 2 from every command. A segment of a set:
    `cache verify` lists it among the problems and exits 3; `mvemo-cv` and `fuse` exit 2."""
    files = sorted(p.relative_to(intact) for p in intact.rglob("*.h5"))
    assert len(files) == 5, files  # clips.h5, targets.h5, a segment of each set: the logmel a read, a, descriptors
    for file in files:
        cache = tmp_path / str(file).replace("/", "_") / "cache"
        shutil.copytree(intact, cache)
        damage(cache / file, how)
        runner = CliRunner()
        verify = runner.invoke(cli, ["cache", "verify", str(cache)])
        assert verify.exit_code == (3 if file.parts[0] == "sets" else 2), (file, how, verify.output)
        assert "Traceback" not in verify.output and not isinstance(verify.exception, (KeyError, OSError, TypeError))
        assert any(file.name in line for line in verify.stderr.splitlines()), (file, verify.stderr)
        for command in (["cv", "--cache", str(cache)], ["fuse", str(cache), "--out", str(tmp_path / "out")]):
            result = runner.invoke(cli, command)
            assert result.exit_code == 2, (file, how, command[0], result.output)
            line = one_line(result)
            assert file.name in line and ("mvemo extract" in line or "restore" in line), line
            assert how not in FOUND or FOUND[how] in line, line
