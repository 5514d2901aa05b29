"""Fixtures of the pipeline tests that several test files read: the tiny demo run, built once; a headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mvemo.pipeline.cli.main import cli
from tests.built import built_once

TINY_DEMO = ["--clips-per-class", "4", "--duration-s", "2", "--workers", "1"]


def run_tiny_demo(folder: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--out", str(folder / "demo"), *TINY_DEMO])
    assert result.exit_code == 0, result.output
    assert "lldstats" in result.output and "final model:" in result.output
    assert "ran from seeded random weights" in result.output, "the demo's figures are not taken for the published nets'"


@pytest.fixture(scope="session")
def tiny_demo() -> Path:
    """``mvemo demo`` on 24 clips of 2 s in 2 folds: its data, manifest, cache, reports and saved models (classes,
    tags, valence/arousal). Built once (``tests.built``); tests read it and write elsewhere."""
    return built_once("tiny-demo", run_tiny_demo, code=[__file__]) / "demo"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium session for one test file's pages, or a skip saying what is missing."""
    from tests.pipeline.browser import chromium

    yield from chromium()
