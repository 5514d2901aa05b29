"""A manifest of small synthetic music videos of some of the demo classes, for tests that train and save models."""

from __future__ import annotations

from pathlib import Path

from mvemo.manifests import Manifest, write_manifest
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.synthetic import SyntheticConfig, write_synthetic_set


def synthetic_manifest(
    root: Path, classes: tuple[str, ...], *, clips_per_class: int, duration_s: float, k: int = 2
) -> Path:
    """``root/m.csv``: synthetic clips (32x32 pictures at 5 fps, to stay small) of ``classes``, in ``k`` folds."""
    write_synthetic_set(
        root / "data",
        SyntheticConfig(clips_per_class=clips_per_class, duration_s=duration_s, width=32, height=32, fps=5),
    )
    scanned = scan_tree(root / "data")
    kept = Manifest(classes, tuple(c for c in scanned.clips if c.label in classes))
    return write_manifest(assign_folds(kept, k=k, seed=0), root / "m.csv")
