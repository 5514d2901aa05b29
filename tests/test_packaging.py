"""The package layout: one import name, mvemo, whose subpackages are the design card's top-level folders."""

from __future__ import annotations

import configparser
import contextlib
import importlib
import io
import itertools
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from mvemo.manifests import Clip, Manifest, write_manifest
from tests.conftest import SHARED, write_tiny

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("manifests", "cache", "extract", "fuse", "pipeline")


def options() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config["options"]


def listed(key: str) -> list[str]:
    return [line.strip() for line in options()[key].strip().splitlines()]


def test_every_folder_with_python_is_a_listed_subpackage_of_mvemo() -> None:
    on_disk = {"mvemo"} | {
        "mvemo." + ".".join(init.parent.relative_to(REPO).parts)
        for folder in FOLDERS
        for init in (REPO / folder).rglob("__init__.py")
    }
    assert set(listed("packages")) == on_disk, "list a new subpackage under [options] packages in setup.cfg"
    mapping = dict(line.replace(" ", "").split("=") for line in listed("package_dir"))
    assert mapping == {"mvemo": "mvemo", **{f"mvemo.{folder}": folder for folder in FOLDERS}}


def test_the_public_api_names_resolve_lazily() -> None:
    probe = "import sys, mvemo; print('torch' in sys.modules, 'mvemo.extract' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert light.stdout.split() == ["False", "False"], "import mvemo alone must not load torch or a stage"
    mvemo = importlib.import_module("mvemo")
    for name in mvemo.__all__:
        assert callable(getattr(mvemo, name)), name
    assert sorted(mvemo.__all__) == sorted(set(mvemo.__all__))


def test_the_example_of_the_public_api_runs(tmp_path: Path, monkeypatch) -> None:
    mvemo = importlib.import_module("mvemo")
    assert mvemo.__doc__ is not None
    after = mvemo.__doc__.split("::\n", 1)[1].splitlines()
    block = itertools.takewhile(lambda line: not line or line.startswith("    "), after)
    example = textwrap.dedent("\n".join(block))
    clips = [Clip(f"c{i}", "ab"[i % 2], video=write_tiny(tmp_path / f"{i}.mp4"), fold=i % 3) for i in range(6)]
    write_manifest(Manifest(("a", "b"), tuple(replace(c, audio=c.video) for c in clips)), tmp_path / "manifest.csv")
    monkeypatch.chdir(tmp_path)
    weights = SHARED / "weights"  # the example's 2D CNN runs with its published weights, as a user's would
    if not (weights / "choi_compact_cnn_msd.h5").is_file():
        pytest.skip(f"{weights} is absent (a clone without ../shared): the example needs the MSD weights")
    monkeypatch.setenv("MVEMO_WEIGHTS", str(weights))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(example, {})
    assert 0.0 <= float(printed.getvalue()) <= 1.0
    with mvemo.Cache(tmp_path / "cache") as cache:
        assert cache.done("emb/twodcnn/all").all()


def test_the_license_file_matches_the_metadata_and_ships_with_the_package() -> None:
    metadata = configparser.ConfigParser()
    metadata.read(REPO / "setup.cfg")
    assert metadata["metadata"]["license"] == "MIT"
    assert metadata["metadata"]["license_files"].split() == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
