"""``mvemo demo``: the tool at work on a synthetic set of music videos, nothing downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from manifests.folds import assign_folds
from manifests.probe import ClipReport, check_manifest
from manifests.scan import scan_tree
from manifests.schema import Manifest, write_manifest
from manifests.synthetic import write_demo_set


@dataclass(frozen=True)
class DemoResult:
    manifest_path: Path
    manifest: Manifest
    reports: list[ClipReport]


def run_demo(
    out: str | os.PathLike[str], *, clips_per_class: int = 4, duration_s: float = 2.0, k: int = 4, seed: int = 0
) -> DemoResult:
    """Generate the synthetic set into ``out/data``, scan it, assign ``k`` folds and check every file."""
    data = Path(out) / "data"
    write_demo_set(data, clips_per_class=clips_per_class, duration_s=duration_s, seed=seed)
    manifest = assign_folds(scan_tree(data), k=k, seed=seed)
    path = write_manifest(manifest, Path(out) / "manifest.csv")
    return DemoResult(path, manifest, check_manifest(manifest))
