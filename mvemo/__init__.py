"""mvemo: the emotion of music videos, or of music alone, from their sound and pictures.

The public functions, for notebooks and cluster jobs (the command line calls the same)::

    import mvemo

    manifest = mvemo.read_manifest("manifest.csv")           # clip_id, label, video, audio, group, fold
    mvemo.extract_features(manifest, "cache", features=("mel", "lld"), nets=("twodcnn",))
    result = mvemo.cross_validate("cache")                  # every model x every fold of the cache
    print(result.metrics["twodcnn"]["accuracy"]["mean"])

The subpackages follow the stages: ``mvemo.manifests`` (the clip table), ``mvemo.cache`` (the
HDF5 feature store), ``mvemo.extract`` (stage one), ``mvemo.fuse`` (stage two) and
``mvemo.pipeline`` (the command line, executors, predict and the demo). Names below are
imported on first use, so ``import mvemo`` stays light (no torch) until a stage is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_PUBLIC = {
    "read_manifest": "mvemo.manifests.io",
    "write_manifest": "mvemo.manifests.io",
    "scan_tree": "mvemo.manifests.scan",
    "assign_folds": "mvemo.manifests.folds",
    "MvemoError": "mvemo.manifests.errors",
    "Cache": "mvemo.cache.read",
    "read_matrix": "mvemo.cache.read",
    "FeatureConfigs": "mvemo.extract.features",
    "extract_features": "mvemo.extract.stage",
    "cross_validate": "mvemo.fuse.cv",
    "run_cv": "mvemo.fuse.stage",
    "fuse_cache": "mvemo.fuse.stage",
    "build_executor": "mvemo.pipeline.executors",
    "Predictor": "mvemo.pipeline.predict.predictor",
}

__all__ = [
    "Cache",
    "FeatureConfigs",
    "MvemoError",
    "Predictor",
    "assign_folds",
    "build_executor",
    "cross_validate",
    "extract_features",
    "fuse_cache",
    "read_manifest",
    "read_matrix",
    "run_cv",
    "scan_tree",
    "write_manifest",
]

if TYPE_CHECKING:
    from mvemo.cache.read import Cache, read_matrix
    from mvemo.extract.features import FeatureConfigs
    from mvemo.extract.stage import extract_features
    from mvemo.fuse.cv import cross_validate
    from mvemo.fuse.stage import fuse_cache, run_cv
    from mvemo.manifests.errors import MvemoError
    from mvemo.manifests.folds import assign_folds
    from mvemo.manifests.io import read_manifest, write_manifest
    from mvemo.manifests.scan import scan_tree
    from mvemo.pipeline.executors import build_executor
    from mvemo.pipeline.predict.predictor import Predictor


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mvemo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
