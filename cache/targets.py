"""The clips' tags and valence/arousal values in a cache: ``CACHE/targets.h5``, beside the clip table.

They are kept apart from ``clips.h5`` because no feature set depends on them: the writer rewrites the small
file whole whenever the manifest's tags, values, vocabulary or scale change, and stage two reads it for
``--target tags`` and ``--target valence,arousal``. A cache without it (written before, or from a manifest
without such targets) has neither.

::

    CACHE/targets.h5    attrs: tags (JSON), value_names (JSON), scale (JSON or "null")
                        tags (n_stored, n_tags) uint8, values (n_stored, n_values) float64, by clip-table row
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mvemo.cache.h5file import allocated, checked, open_h5, write_whole
from mvemo.cache.layout import TARGETS_FILE
from mvemo.manifests.errors import CacheError
from mvemo.manifests.schema import Manifest


@dataclass(frozen=True)
class Targets:
    """Tags and values of a cache's rows.

    Attributes
    ----------
    tags : tuple of str
        The tag vocabulary (empty: no tags).
    tag_matrix : ndarray, shape (n_rows, n_tags), uint8
    value_names : tuple of str
        ``("valence", "arousal")``, one of them, or none.
    values : ndarray, shape (n_rows, n_values), float64
    scale : (float, float) or None
        The values' scale; its middle divides the quadrants.
    """

    tags: tuple[str, ...] = ()
    tag_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint8))
    value_names: tuple[str, ...] = ()
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    scale: tuple[float, float] | None = None

    def rows(self, keep: np.ndarray) -> Targets:
        """These targets at the rows ``keep`` (a cache's visible rows of its stored ones)."""
        if not self.tags and not self.value_names:
            n = len(keep)
            return Targets(tag_matrix=np.zeros((n, 0), dtype=np.uint8), values=np.zeros((n, 0)))
        return Targets(self.tags, self.tag_matrix[keep], self.value_names, self.values[keep], self.scale)

    def same(self, other: Targets) -> bool:
        """Whether ``other`` holds the same vocabulary, value names, scale and values (NaN equal to NaN)."""
        return (
            (self.tags, self.value_names, self.scale) == (other.tags, other.value_names, other.scale)
            and np.array_equal(self.tag_matrix, other.tag_matrix)
            and np.array_equal(self.values, other.values, equal_nan=True)
        )


def manifest_targets(manifest: Manifest, rows: np.ndarray, n_stored: int) -> Targets:
    """The manifest's targets placed at clip-table ``rows`` of ``n_stored`` (rows no clip lists: no tag, NaN)."""
    tag_matrix = np.zeros((n_stored, len(manifest.tags)), dtype=np.uint8)
    tag_matrix[rows] = manifest.tag_matrix
    values = np.full((n_stored, len(manifest.value_names)), np.nan)
    values[rows] = manifest.values
    return Targets(manifest.tags, tag_matrix, manifest.value_names, values, manifest.scale)


def write_targets(root: Path, targets: Targets) -> None:
    """Write ``root/targets.h5`` whole, or remove it where there are no targets."""
    path = root / TARGETS_FILE
    if not targets.tags and not targets.value_names:
        path.unlink(missing_ok=True)
        return

    def fill(f: h5py.File) -> None:
        f.attrs["tags"] = json.dumps(list(targets.tags))
        f.attrs["value_names"] = json.dumps(list(targets.value_names))
        f.attrs["scale"] = json.dumps(None if targets.scale is None else list(targets.scale))
        allocated(f, "tags", targets.tag_matrix.shape, np.uint8, fill=targets.tag_matrix)
        allocated(f, "values", targets.values.shape, np.float64, fill=targets.values)

    write_whole(path, fill, sealed=True)


def read_targets(root: Path, n_stored: int) -> Targets:
    """The targets of every clip-table row; none where the cache has no ``targets.h5``."""
    path = root / TARGETS_FILE
    if not path.is_file():
        return Targets(tag_matrix=np.zeros((n_stored, 0), dtype=np.uint8), values=np.zeros((n_stored, 0)))
    try:
        with open_h5(path, "r") as f:
            scale = json.loads(f.attrs["scale"])
            targets = Targets(
                tuple(json.loads(f.attrs["tags"])),
                checked(f, "tags", np.uint8, n_stored)[:],
                tuple(json.loads(f.attrs["value_names"])),
                checked(f, "values", np.float64, n_stored)[:],
                None if scale is None else (float(scale[0]), float(scale[1])),
            )
    except (OSError, KeyError, ValueError, TypeError, IndexError) as err:
        raise CacheError(
            f"{str(path)!r} is not a readable targets file ({err}); run `mvemo extract` again to rewrite it"
        ) from None
    if targets.tag_matrix.shape != (n_stored, len(targets.tags)) or targets.values.shape != (
        n_stored,
        len(targets.value_names),
    ):
        raise CacheError(
            f"{str(path)!r} does not fit the clip table's {n_stored} rows; run `mvemo extract` again to rewrite it"
        )
    return targets
