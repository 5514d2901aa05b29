"""``mvemo demo``: the whole tool on a synthetic set of music videos, nothing downloaded."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mvemo.extract.run import FeatureConfigs, FeatureRunSummary, compute_feature_sets
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.schema import Manifest, write_manifest
from mvemo.manifests.synthetic import SyntheticConfig, write_synthetic_set

DEMO_FEATURES = ("mel", "lld", "waveform", "frames112")
DEMO_NETS = ("onedcnn", "twodcnn", "crnn", "c3d", "i3d")
DEMO_FRAMES = 16  # C3D's smallest clip: half of paper 001's 32, half the CPU time
# The demo's videos are 160 x 120: I3D reads C3D's 112 px crops, pooled globally (its reference pooling needs 193 px).
DEMO_NET_OPTIONS = {"i3d": {"pool": "global", "frames": "frames112"}}

Progress = Callable[[str, str], Callable[[Iterable[Any], int], Iterable[Any]] | None]


@dataclass(frozen=True)
class DemoResult:
    manifest_path: Path
    manifest: Manifest
    features: FeatureRunSummary
    report: dict[str, Any]
    out: Path


def build_demo_manifest(
    data: Path, config: SyntheticConfig, *, k: int, progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None
) -> Manifest:
    """Generate the synthetic set into ``data``, scan it, keep each clip's drawn cues as extra columns, assign folds."""
    cues = {Path(row.pop("path")).resolve(): row for row in write_synthetic_set(data, config, progress=progress)}
    scanned = scan_tree(data)
    clips = tuple(
        replace(c, extra={k: v for k, v in cues[c.video.resolve()].items() if k != "label"}) for c in scanned.clips if c.video
    )
    return assign_folds(Manifest(scanned.classes, clips), k=k, seed=config.seed)


def run_demo(
    out: str | os.PathLike[str],
    config: SyntheticConfig | None = None,
    *,
    k: int = 6,
    configs: FeatureConfigs | None = None,
    executor: Any = None,
    progress: Progress = lambda description, unit: None,
) -> DemoResult:
    """Data, manifest with folds, stage one into ``out/cache.h5``, stage two into ``out`` (report, PNGs, ``model/``).

    ``progress(description, unit)`` gives each stage's progress callable (None: silent)."""
    from mvemo.extract.embed import export_embeddings
    from mvemo.fuse.run import fuse_cache

    config = config or SyntheticConfig()
    out = Path(out)
    manifest = build_demo_manifest(out / "data", config, k=k, progress=progress("synthetic videos", "clip"))
    path = write_manifest(manifest, out / "manifest.csv")
    cache = out / "cache.h5"
    summary = compute_feature_sets(
        manifest, cache, DEMO_FEATURES, configs=configs, executor=executor, progress=progress("features", "clip")
    )
    export_embeddings(
        manifest,
        cache,
        DEMO_NETS,
        net_options=DEMO_NET_OPTIONS,
        progress=lambda net: progress(f"embeddings of {net}", "batch"),
    )
    report, _ = fuse_cache(cache, out, executor=executor, progress=progress("fusion heads", "fit"))
    return DemoResult(path, manifest, summary, report, out)
