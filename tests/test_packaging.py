"""The package layout: one import name, mvemo, whose subpackages are the design card's top-level folders."""

from __future__ import annotations

import configparser
import importlib
import subprocess
import sys
from pathlib import Path

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
