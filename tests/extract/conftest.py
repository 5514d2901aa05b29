"""Fixtures of the stage-one tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvemo.manifests import Clip, Manifest
from tests.conftest import write_tiny


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    """Four tiny clips of two classes in two folds, and a fifth without sound."""
    clips = [
        Clip(f"c{i}", "ab"[i % 2], video=p, audio=p, fold=i % 2)
        for i, p in enumerate(write_tiny(tmp_path / f"{i}.mp4") for i in range(4))
    ]
    silent = write_tiny(tmp_path / "silent.mp4", audio=False)
    clips.append(Clip("mute", "a", video=silent, fold=0))
    return Manifest(("a", "b"), tuple(clips))
