"""``mvemo demo``: the tool at work on a synthetic set of music videos, nothing downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from manifests.folds import assign_folds
from manifests.probe import ClipReport, check_manifest
from manifests.scan import scan_tree
from manifests.schema import Manifest, write_manifest
from manifests.synthetic import SyntheticConfig, write_synthetic_set


@dataclass(frozen=True)
class DemoResult:
    manifest_path: Path
    manifest: Manifest
    reports: list[ClipReport]


def build_demo_manifest(data: Path, config: SyntheticConfig, *, k: int) -> Manifest:
    """Generate the synthetic set into ``data``, scan it, keep each clip's drawn cues as extra columns, assign folds."""
    cues = {Path(row.pop("path")).resolve(): row for row in write_synthetic_set(data, config)}
    scanned = scan_tree(data)
    clips = tuple(
        replace(c, extra={k: v for k, v in cues[c.video.resolve()].items() if k != "label"}) for c in scanned.clips if c.video
    )
    return assign_folds(Manifest(scanned.classes, clips), k=k, seed=config.seed)


def run_demo(out: str | os.PathLike[str], config: SyntheticConfig | None = None, *, k: int = 4) -> DemoResult:
    """The demo in ``out``: data/, manifest.csv with folds, every file checked."""
    config = config or SyntheticConfig()
    manifest = build_demo_manifest(Path(out) / "data", config, k=k)
    path = write_manifest(manifest, Path(out) / "manifest.csv")
    return DemoResult(path, manifest, check_manifest(manifest))
