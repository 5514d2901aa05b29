"""Features of your own as a set of the cache (``mvemo cache import``): one vector of named columns per clip, read
from a CSV, fused like any input (``musicnn+NAME``, ``late(...)``, ``integrated``).

A CSV row belongs to the clip whose id its key gives, or whose file stem it gives where no other clip has that stem
(as ``mvemo manifest scan --labels`` matches). Every clip needs a row and every row a clip: an import is whole or
refused, and importing a set again replaces it. The file's sha256 goes into the set's config, so its fingerprint
changes with the file, and every report names the file in its provenance.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from collections import Counter
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mvemo.cache.layout import IMPORTED, FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.manifests.errors import ConfigError, utf8_text

EXTRACTOR = "mvemo.import"
SHOWN = 5  # problems named in a refusal, the rest counted
SET_NAME = re.compile(r"[a-z0-9_]+")  # one word of a cache's set names (cache.layout)
NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)  # a decimal number as a CSV writes it
FLOAT32_MAX = float(np.finfo(np.float32).max)


def import_vectors(
    cache_path: str | os.PathLike[str],
    name: str,
    file: str | os.PathLike[str],
    key: str | None = None,
    *,
    taken: Collection[str] = (),
) -> dict[str, Any]:
    """Write the CSV ``file`` into the cache as the vector set ``name``, its rows matched to clips by the column
    ``key`` (default the first); returns what was imported. ``taken``: names the set may not have (a net's, a
    set extract writes, a named model's), nor a net variant's ``NAME.variant``.

    Raises
    ------
    ConfigError
        Naming the rows and clips at fault: a CSV row of no clip or of a clip already given, a clip without a row, a
        value that is not a finite number, a name that a computed set has or that is ``taken``.
    """
    file = Path(file)
    if name in taken or name.split(".", 1)[0] in taken:
        raise ConfigError(f"--set {name!r}: mvemo names a net, a feature set or a model so; import under another name")
    ids, columns, values = read_vectors(file, key)
    with Cache(cache_path) as cache:
        _check_name(cache, name)
        rows = np.asarray(_match(cache.clip_ids, ids, str(file)))
    order = np.argsort(rows)
    config = {IMPORTED: {"file": file.name, "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "key": key or ""}}
    spec = FeatureSpec(name, (len(columns),), "float32", EXTRACTOR, "1", config, columns=tuple(columns))
    with CacheWriter(cache_path, None) as writer:
        writer.prepare([spec], recompute=[name])  # an import of the set before it is replaced whole
        writer.write(name, rows[order].tolist(), values[order])
    return {
        "set": name,
        "clips": len(rows),
        "columns": len(columns),
        "file": str(file),
        "sha256": config[IMPORTED]["sha256"],
    }


def imported_set_names(cache_path: str | os.PathLike[str]) -> set[str]:
    """The sets of the cache that ``mvemo cache import`` wrote: no ``mvemo extract`` writes them again."""
    with Cache(cache_path) as cache:
        return {name for name in cache.feature_sets() if IMPORTED in cache.config(name)}


def reimport_command(cache: Cache, name: str, *, stale: bool = False) -> str | None:
    """For a set of ``mvemo cache import``, the command that gives every clip its row again: a grown cache leaves
    rows without, and a changed media file (``stale``) rows that only an import after ``mvemo extract`` has recorded
    the new media replaces. None for a set ``mvemo extract`` computes."""
    if IMPORTED not in cache.config(name):
        return None
    key = cache.config(name)[IMPORTED].get("key")
    command = f"`mvemo cache import {cache.path} FILE --set {name}{f' --key {key}' if key else ''}`"
    first = f"run `mvemo extract MANIFEST --cache {cache.path}` (it records the changed media), then " if stale else ""
    return f"{first}{command} again, FILE holding a row for every clip"


NPZ_KEY = "clip_id"  # the default array of an .npz's row keys
NPZ_VALUES = "features"  # its (n_rows, n_columns) values
NPZ_COLUMNS = "columns"  # its columns' names, where it has them


def read_vectors(file: Path, key: str | None) -> tuple[list[str], list[str], np.ndarray]:
    """The keys, the value columns and the (n_rows, n_columns) float32 values of one row per clip: a CSV, or a
    NumPy ``.npz`` (``read_npz``)."""
    ids, columns, values = read_npz(file, key or NPZ_KEY) if file.suffix.lower() == ".npz" else read_csv(file, key)
    twice = sorted(c for c, n in Counter(columns).items() if n > 1)
    if twice:
        raise ConfigError(f"{file}: column name(s) given twice ({', '.join(map(repr, twice[:SHOWN]))}); name each once")
    return ids, columns, values


def read_csv(file: Path, key: str | None) -> tuple[list[str], list[str], np.ndarray]:
    """``read_vectors`` of a CSV: a header of the key column and the value columns."""
    where = str(file)
    reader = csv.reader(io.StringIO(utf8_text(file, where)))
    header = next(reader, None)
    if header and len(header) == 1 and (other := next((d for d in ";\t|" if d in header[0]), None)):
        raise ConfigError(
            f"{where}: its header is one field that holds {other!r}: mvemo reads comma-separated values; save the file"
            " with commas between fields (and '.' for decimals)"
        )
    if not header or len(header) < 2:
        raise ConfigError(f"{where}: expected a header of a key column and one column or more of values")
    key = key or header[0]
    if key not in header:
        raise ConfigError(f"{where}: no column {key!r} (it has {header[:SHOWN]}...); name the key column with --key")
    at = header.index(key)
    columns = [c for i, c in enumerate(header) if i != at]
    ids, values, bad = [], [], []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ConfigError(f"{where}, line {line}: {len(row)} fields, the header has {len(header)}")
        ids.append(row[at].strip())
        numbers = []
        for i, text in enumerate(row):
            if i == at:
                continue
            number = (
                float(text) if NUMBER.fullmatch(text) else math.nan
            )  # not Python's float(): it reads 1_000 and '١٢'
            if not math.isfinite(number) or abs(number) > FLOAT32_MAX:  # stored as float32, where 1e300 is inf
                bad.append(f"line {line} ({row[at]!r}), column {header[i]!r}: {text!r}")
            numbers.append(number)
        values.append(numbers)
    if bad:
        raise ConfigError(
            f"{where}: {len(bad)} value(s) not finite float32 numbers ({'; '.join(bad[:SHOWN])}); fix or drop them"
        )
    if not ids:
        raise ConfigError(f"{where}: no rows under the header")
    return ids, columns, np.asarray(values, dtype=np.float32)


def read_npz(file: Path, key: str) -> tuple[list[str], list[str], np.ndarray]:
    """An ``.npz`` of the rows' keys (array ``key``), their values (``features``, 2-D, numbers) and optionally the
    columns' names (``columns``; default ``f0``, ``f1``, ...)."""
    found = npz_arrays(file)
    fix = f"save it with np.savez(..., {key}=ids, {NPZ_VALUES}=matrix[, {NPZ_COLUMNS}=names])"
    if key not in found or NPZ_VALUES not in found:
        raise ConfigError(f"{file}: needs arrays {key!r} and {NPZ_VALUES!r} (it has {sorted(found)}); {fix}")
    ids, values = found[key], found[NPZ_VALUES]
    if (
        values.ndim != 2
        or values.dtype.kind not in "iuf"
        or ids.ndim != 1
        or len(ids) != len(values)
        or not values.size
    ):
        raise ConfigError(
            f"{file}: {NPZ_VALUES!r} must be a 2-D array of numbers with a row per entry of {key!r}"
            f" (shapes {values.shape} and {ids.shape}); {fix}"
        )
    columns = _texts(np.atleast_1d(found.get(NPZ_COLUMNS, np.array([f"f{j}" for j in range(values.shape[1])]))))
    if len(columns) != values.shape[1]:
        raise ConfigError(f"{file}: {len(columns)} {NPZ_COLUMNS} for {values.shape[1]} columns of {NPZ_VALUES!r}")
    with np.errstate(over="ignore"):
        stored = values.astype(np.float32)
    bad = [f"row {i} ({str(ids[i])!r}), column {columns[j]!r}" for i, j in np.argwhere(~np.isfinite(stored))]
    if bad:
        raise ConfigError(
            f"{file}: {len(bad)} value(s) not finite float32 numbers ({'; '.join(bad[:SHOWN])}); fix or drop them"
        )
    return [i.strip() for i in _texts(ids)], columns, stored


def _texts(array: np.ndarray) -> list[str]:
    """Each entry as text: bytes (an array of dtype ``S``, as Python 2 or h5py write names) decoded as UTF-8."""
    return [i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i) for i in array.tolist()]


def npz_arrays(file: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, loaded without pickle."""
    try:
        with np.load(file, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except Exception as err:  # numpy raises what the bytes provoke: OSError, ValueError, EOFError, BadZipFile...
        raise ConfigError(f"{file}: not a NumPy .npz of plain arrays ({type(err).__name__}: {err})") from None


def _check_name(cache: Cache, name: str) -> None:
    if not SET_NAME.fullmatch(name):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "panda_top100"
        raise ConfigError(
            f"--set {name!r}: a set's name is one word of lowercase letters, digits and '_'; e.g. {suggestion!r}"
        )
    if name in cache.feature_sets() and IMPORTED not in cache.config(name):
        raise ConfigError(f"--set {name!r}: the cache's computed set has that name; import under another")


def match_keys(clip_ids: list[str], ids: list[str]) -> tuple[list[int | None], list[str], list[str]]:
    """The clip row each of the keys ``ids`` names: by clip id, else by a file stem that one clip alone has (None: no
    clip); the keys of no clip, and the keys of a clip an earlier key named (its id and then its stem, say)."""
    stems = Counter(PurePosixPath(c).stem for c in clip_ids)
    by_key = {PurePosixPath(c).stem: row for row, c in enumerate(clip_ids) if stems[PurePosixPath(c).stem] == 1}
    by_key |= {c: row for row, c in enumerate(clip_ids)}  # a clip's own id wins over another clip's stem
    rows: list[int | None] = []
    unknown, twice, seen = [], [], set()
    for text in ids:
        row = by_key.get(text)
        if row is None:
            unknown.append(text)
        elif row in seen:
            twice.append(text)
        seen.add(row)
        rows.append(row)
    return rows, unknown, twice


def given_twice(keys: list[str]) -> str:
    """What a file that gives a clip two rows is told, by ``mvemo cache import`` and ``mvemo predict --features``."""
    return f"{len(keys)} row(s) of a clip already given ({', '.join(map(repr, keys[:SHOWN]))})"


ONE_ROW = "one row, keyed by its clip id or file stem"


def _match(clip_ids: list[str], ids: list[str], where: str) -> list[int]:
    """The cache row of each CSV row: by clip id, else by a file stem that one clip alone has."""
    rows, unknown, twice = match_keys(clip_ids, ids)
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} row(s) of no clip of the cache ({', '.join(map(repr, unknown[:SHOWN]))})")
    if twice:
        problems.append(given_twice(twice))
    missing = [clip_ids[row] for row in sorted(set(range(len(clip_ids))) - set(rows))]
    if missing:
        problems.append(f"{len(missing)} clip(s) without a row ({', '.join(map(repr, missing[:SHOWN]))})")
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}; every clip of the cache needs {ONE_ROW}")
    return rows  # type: ignore[return-value]
