"""The clip table: schema, CSV/JSONL io, validation, folder scans, folds and media probing."""

from mvemo.manifests.errors import CacheError, ConfigError, ManifestError, MediaError, MvemoError
from mvemo.manifests.io import read_manifest, write_manifest
from mvemo.manifests.schema import Clip, Manifest

__all__ = [
    "CacheError",
    "Clip",
    "ConfigError",
    "Manifest",
    "ManifestError",
    "MediaError",
    "MvemoError",
    "read_manifest",
    "write_manifest",
]
