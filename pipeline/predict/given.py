"""The rows of imported sets (``mvemo cache import``) for new clips: ``mvemo predict --features FILE.csv``.

A model over an imported set cannot compute it from media: the user gives the same columns for the new clips, one
row per clip in a CSV, keyed by clip id or file stem as the import was. The columns are taken by name, in the order
the model was trained on; a clip without a row fails alone, the other clips are labelled.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mvemo.cache.imported import ONE_ROW, SHOWN, given_twice, match_keys, npz_arrays, read_vectors
from mvemo.cache.layout import IMPORTED
from mvemo.fuse.saved.model import SavedFusionModel
from mvemo.manifests.errors import ConfigError, utf8_text
from mvemo.manifests.schema import Clip


def imported_sets(saved: SavedFusionModel, name: str) -> dict[str, dict]:
    """The imported sets model ``name`` reads, by set name: each one's import record and columns.

    Raises
    ------
    ConfigError
        The model was saved before its imported sets' columns were recorded.
    """
    sets = {}
    for set_name, described in saved.feature_sets(name).items():
        if IMPORTED not in described["config"]:
            continue
        if "columns" not in described:
            raise ConfigError(
                f"model {name!r} reads {set_name}, imported, and was saved before mvemo recorded an imported set's"
                " columns: save it again with `mvemo fuse`"
            )
        sets[set_name] = {"imported": described["config"][IMPORTED], "columns": described["columns"]}
    return sets


class GivenFeatures:
    """The rows of ``files`` (CSVs of a key column and named value columns) for each imported set of a model.

    Raises
    ------
    ConfigError
        The model reads an imported set and no file is given, or no file holds every column of a set, or a file
        is malformed (as ``mvemo cache import`` refuses it) or gives a clip two rows.
    """

    def __init__(self, saved: SavedFusionModel, name: str, files: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.sets = imported_sets(saved, name)
        paths = [Path(f) for f in files]
        if self.sets and not paths:
            first, record = next(iter(self.sets.items()))
            raise ConfigError(
                f"model {name!r} reads {first}, imported with `mvemo cache import` from {record['imported']['file']}:"
                " give its columns for the new clips with --features FILE.csv (a row per clip, keyed by clip id or"
                " file stem), or choose a --model of computed inputs"
            )
        if paths and not self.sets:
            raise ConfigError(f"--features: model {name!r} reads no imported set; leave --features out")
        tables = [_table(path, _key_column(path, self._keys())) for path in paths]
        # set -> (file, its keys, their rows of the set's columns)
        self.rows: dict[str, tuple[str, list[str], np.ndarray]] = {}
        for set_name, described in self.sets.items():
            self.rows[set_name] = _columns_of(set_name, described["columns"], tables)
        self._refuse_shared_names()

    def _refuse_shared_names(self) -> None:
        """Two sets read from one file through columns of the same names would read the same values."""
        names = list(self.sets)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                shared = [c for c in self.sets[first]["columns"] if c in self.sets[second]["columns"]]
                if shared and self.rows[first][0] == self.rows[second][0]:
                    raise ConfigError(
                        f"--features: {first} and {second} would both read {self.rows[first][0]}, whose columns"
                        f" {', '.join(map(repr, shared[:SHOWN]))} both sets were imported with: import them again"
                        " with columns named apart (an .npz's columns array), and give those names for the new clips"
                    )

    def _keys(self) -> list[str]:
        return [d["imported"].get("key", "") for d in self.sets.values()]

    def of(self, clips: list[Clip]) -> list[dict[str, np.ndarray | str]]:
        """Each clip's row of each imported set, or where its file has none, the reason (its job fails with it). A
        row belongs to the clip its key names by clip id, or by a file stem that no other of ``clips`` has, as
        ``mvemo cache import`` matches rows, and a file that gives a clip two rows is refused as the import refuses it.
        """
        clip_ids = [clip.clip_id for clip in clips]
        given: list[dict[str, np.ndarray | str]] = [{} for _ in clips]
        for set_name, (file, keys, values) in self.rows.items():
            rows, _, twice = match_keys(clip_ids, keys)
            if twice:
                raise ConfigError(f"{file}: {given_twice(twice)}; every clip needs {ONE_ROW}")
            at = {row: i for i, row in enumerate(rows) if row is not None}
            for row, clip_id in enumerate(clip_ids):
                given[row][set_name] = (
                    values[at[row]]
                    if row in at
                    else f"clip {clip_id!r}: {file} has no row for it (by clip id, or by a file stem no other clip"
                    f" has), and the model reads {set_name} from it; add the clip's row to --features"
                )
        return given


def _key_column(file: Path, preferred: list[str]) -> str:
    """The column of ``file`` that keys its rows: the key the set was imported by where the file has it, else its
    first column (an ``.npz``: its ``clip_id`` array, unless it holds the set's key)."""
    if file.suffix.lower() == ".npz":
        arrays = npz_arrays(file)
        return next((key for key in preferred if key and key in arrays), "")
    header = next(csv.reader([utf8_text(file, str(file)).partition("\n")[0]]), [])
    return next((key for key in preferred if key and key in header), header[0] if header else "")


def _table(file: Path, key: str) -> tuple[Path, list[str], dict[str, np.ndarray]]:
    """``file``'s keys and its value columns by name, each a value per key."""
    ids, columns, values = read_vectors(file, key or None)
    return file, ids, {column: values[:, j] for j, column in enumerate(columns)}


def _columns_of(
    set_name: str, columns: list[str], tables: list[tuple[Path, list[str], dict[str, np.ndarray]]]
) -> tuple[str, list[str], np.ndarray]:
    """The one file that holds every column of the set: its keys and their rows, in the set's column order."""
    holding = [table for table in tables if all(c in table[2] for c in columns)]
    if len(holding) > 1:
        raise ConfigError(
            f"--features: {holding[0][0]} and {holding[1][0]} both hold every column of {set_name}; give its columns"
            " in one file, or name the columns of each set apart"
        )
    if holding:
        file, keys, by_column = holding[0]
        return str(file), keys, np.column_stack([by_column[c] for c in columns]).astype(np.float32)
    closest = min(tables, key=lambda table: sum(c not in table[2] for c in columns))
    missing = [c for c in columns if c not in closest[2]]
    raise ConfigError(
        f"--features: no file holds every column of {set_name} ({len(columns)} columns, as imported); {closest[0]}"
        f" lacks {len(missing)} ({', '.join(map(repr, missing[:SHOWN]))}); give a file with all of them"
    )
