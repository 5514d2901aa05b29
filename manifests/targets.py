"""What a clip is labelled with besides its class: emotion tags and valence/arousal values.

A manifest may carry three kinds of target (DESIGN.md, "Targets"):

- ``label``: one class per clip, from the ``# classes:`` header;
- ``tags``: several emotion tags per clip, separated by ``;``, from a fixed vocabulary stored in a
  ``# tags: [...]`` header line (a file without one takes the sorted set of its tags); a clip may have none;
- ``valence`` and ``arousal``: one number per clip on the scale of a ``# scale: [low, high]`` header line.
  The middle of the scale divides the four quadrants of Russell's circumplex: Q1 (valence and arousal high,
  e.g. happy), Q2 (low valence, high arousal: angry), Q3 (both low: sad), Q4 (high valence, low arousal: calm).
  A clip may also name an ``annotations`` CSV of its values over time (``time_s`` and the value columns, e.g. one
  row per second, as DEAM and PMEmo give them): a window of the clip then takes the mean of the rows within it
  (``window_values``).

Stratified folds follow the first kind a manifest has, in that order (``strata``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.manifests.errors import ManifestError, utf8_text

TAG_SEPARATOR = ";"
ANNOTATIONS_COLUMN = "annotations"  # a clip's CSV of values over time
TIME_COLUMN = "time_s"
VALUE_COLUMNS = ("valence", "arousal")
TARGET_COLUMNS = ("tags", *VALUE_COLUMNS)
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
QUADRANT_MEANING = {
    "Q1": "valence and arousal high",
    "Q2": "valence low, arousal high",
    "Q3": "valence and arousal low",
    "Q4": "valence high, arousal low",
}
SCALE_FIX = "add a header line such as '# scale: [1, 9]' (the low and high end of the valence/arousal scale)"


def parse_tags(text: Any) -> tuple[str, ...]:
    """The tags of a ``tags`` cell, in order, each once: ``"happy; calm"`` gives ``("happy", "calm")``."""
    if isinstance(text, list | tuple):
        parts = [str(t) for t in text]
    else:
        parts = ("" if text is None else str(text)).split(TAG_SEPARATOR)
    return tuple(dict.fromkeys(t.strip() for t in parts if t.strip()))


def parse_value(value: Any, *, column: str, where: str) -> float | None:
    """A ``valence`` or ``arousal`` cell as a float, None where empty; anything else not a finite number is an error."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ManifestError(
            f"{where}: column {column!r} value {text!r} is not a finite number; give a number on the scale"
        )
    return number


def parse_header_list(text: str, *, name: str, where: str) -> list[Any]:
    """A header line's JSON list (``# tags: [...]``, ``# scale: [1, 9]``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{where}: the {name} header {text.strip()!r} is not a JSON list; write it as [...]")
    return value


def parse_scale(value: Any, *, where: str) -> tuple[float, float]:
    """A ``[low, high]`` scale with low < high, both finite."""
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        or not value[0] < value[1]
    ):
        raise ManifestError(f"{where}: the scale {value!r} is not [low, high] with low < high; {SCALE_FIX}")
    return float(value[0]), float(value[1])


def parse_vocabulary(value: Any, *, where: str) -> tuple[str, ...]:
    """A ``# tags:`` vocabulary: distinct non-empty names without the separator."""
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) and t.strip() for t in value):
        raise ManifestError(f'{where}: the tags header {value!r} is not a list of tag names; write it as ["calm", ...]')
    if len(set(value)) != len(value) or any(TAG_SEPARATOR in t for t in value):
        raise ManifestError(
            f"{where}: the tags header {list(value)} repeats a tag or holds {TAG_SEPARATOR!r}; give each tag once"
        )
    return tuple(value)


def check_targets(
    clips: Sequence[Any],
    *,
    classes: Sequence[str],
    tags: Sequence[str],
    scale: tuple[float, float] | None,
    required: bool = True,
) -> None:
    """Every clip's tags in ``tags``, each value column given for every clip or for none, values within ``scale``,
    and, where ``required``, at least one kind of target (``ManifestError`` naming the first clip that breaks a rule,
    and the fix)."""
    known = set(tags)
    for row, clip in enumerate(clips, start=1):
        unknown = [t for t in clip.tags if t not in known]
        if unknown:
            raise ManifestError(
                f"row {row} (clip {clip.clip_id!r}): column 'tags' value {unknown[0]!r} is not a tag of this manifest"
                f" {list(tags)}; fix the tag or add it to the '# tags:' line"
            )
    for column in VALUE_COLUMNS:
        given = [getattr(c, column) is not None for c in clips]
        if any(given) and not all(given):
            row = given.index(False) + 1
            raise ManifestError(
                f"row {row} (clip {clips[row - 1].clip_id!r}): column {column!r} is empty while {sum(given)} other"
                f" clips have values; give every clip a {column} or clear the column"
            )
        if any(given):
            if scale is None:
                raise ManifestError(f"column {column!r} holds values but the manifest states no scale; {SCALE_FIX}")
            for row, clip in enumerate(clips, start=1):
                value = getattr(clip, column)
                if not scale[0] <= value <= scale[1]:
                    raise ManifestError(
                        f"row {row} (clip {clip.clip_id!r}): column {column!r} value {value} lies outside the scale"
                        f" {list(scale)}; fix the value or the '# scale:' line"
                    )
    noted = next((c for c in clips if c.annotations is not None), None)
    if noted is not None and not any(getattr(noted, c) is not None for c in VALUE_COLUMNS):
        raise ManifestError(
            f"clip {noted.clip_id!r} names annotations over time, and the manifest has no 'valence' or 'arousal'"
            " column; give the clips' values (e.g. the mean or static rating) and a '# scale:' line"
        )
    if required and clips and not classes and not tags and all(getattr(clips[0], c) is None for c in VALUE_COLUMNS):
        raise ManifestError(
            "the manifest has no target: no 'label', 'tags', 'valence' or 'arousal' column; add one"
            " (`mvemo manifest scan ROOT --labels LABELS.csv` takes them from a side table)"
        )


def tag_matrix(clip_tags: Sequence[Sequence[str]], tags: Sequence[str]) -> np.ndarray:
    """Which clip carries which tag: shape (n_clips, n_tags), uint8."""
    index = {t: i for i, t in enumerate(tags)}
    matrix = np.zeros((len(clip_tags), len(tags)), dtype=np.uint8)
    for row, names in enumerate(clip_tags):
        matrix[row, [index[t] for t in names]] = 1
    return matrix


HALVES = ("high", "low")


def value_categories(n_values: int) -> tuple[str, ...]:
    """What ``quadrants`` names a row of ``n_values`` values by: Q1..Q4 for valence and arousal, else the halves
    of one value's scale."""
    return QUADRANTS if n_values == 2 else HALVES


def quadrants(values: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """The quadrant index (0..3 for Q1..Q4) of each (valence, arousal) row, shape (n,), int64; a value at the
    middle of the scale counts as high. With one column (valence or arousal alone), its half: 0 high, 1 low."""
    high = np.asarray(values, dtype=float) >= (scale[0] + scale[1]) / 2
    if high.ndim == 1 or high.shape[1] == 1:
        return (~high.reshape(len(high), -1)[:, 0]).astype(np.int64)
    valence, arousal = high[:, 0], high[:, 1]
    return np.select([valence & arousal, ~valence & arousal, ~valence & ~arousal], [0, 1, 2], default=3).astype(
        np.int64
    )


def on_unit_scale(values: np.ndarray | list[float], scale: tuple[float, float]) -> np.ndarray:
    """``values`` on ``scale`` moved onto [-1, 1] (the scale's middle at 0) and clipped to it: the plane's coordinates
    for display. A value mapped onto the ratings' spread may lie beyond the scale's ends; it is shown at the edge,
    and the raw value stays in the JSON and CSV."""
    low, high = scale
    return np.clip((np.asarray(values, dtype=float) - (low + high) / 2) / ((high - low) / 2), -1.0, 1.0)


def rarest_tag(matrix: np.ndarray) -> np.ndarray:
    """Each clip's least frequent tag (the stratum of multi-label folds), ``n_tags`` for a clip without tags:
    stratifying by it spreads every clip of a rare tag over the folds, which the frequent tags need less."""
    counts = matrix.sum(axis=0)
    order = np.where(matrix.astype(bool), counts[None, :], np.iinfo(np.int64).max)
    return np.where(matrix.any(axis=1), np.argmin(order, axis=1), matrix.shape[1]).astype(np.int64)


def read_annotations(
    path: Path, *, clip_id: str, names: Sequence[str], scale: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """A clip's values over time: the times (n,) in seconds, increasing, and the values of ``names`` (n, len(names)),
    each finite and on ``scale``.

    Raises
    ------
    ManifestError
        Naming the clip, the file and the row: a missing file or column, no row, a value that is not a finite number
        or lies off the scale, times that go back.
    """
    where = f"clip {clip_id!r}: annotations {str(path)!r}"
    if not path.is_file():
        raise ManifestError(f"{where} does not exist; fix the 'annotations' path (relative to the manifest's folder)")
    reader = csv.DictReader(utf8_text(path, where).splitlines())
    try:
        columns, table_rows = reader.fieldnames or [], list(reader)
    except csv.Error as err:
        raise ManifestError(f"{where}: not a CSV table ({err}); save it as plain comma-separated text") from None
    missing = [c for c in (TIME_COLUMN, *names) if c not in columns]
    if missing:
        raise ManifestError(f"{where} has no column {missing[0]!r} (columns {columns}); add it")
    rows = [
        [parse_value(row[c], column=c, where=f"{where} row {n}") for c in (TIME_COLUMN, *names)]
        for n, row in enumerate(table_rows, start=1)
    ]
    table = np.array(rows, dtype=float).reshape(len(rows), 1 + len(names))
    if not len(table) or np.isnan(table).any():
        row = int(np.argwhere(np.isnan(table))[0, 0]) + 1 if len(table) else 0
        raise ManifestError(
            f"{where} row {row} has an empty cell, or the file no row; give every row a time and values"
        )
    if np.any(np.diff(table[:, 0]) < 0):
        raise ManifestError(
            f"{where}: its times go back at row {int(np.argmax(np.diff(table[:, 0]) < 0)) + 2}; sort it by time_s"
        )
    off = np.flatnonzero(((table[:, 1:] < scale[0]) | (table[:, 1:] > scale[1])).any(axis=1))
    if off.size:
        raise ManifestError(
            f"{where} row {off[0] + 1}: a value lies outside the scale {list(scale)}; fix the value or the scale"
        )
    return table[:, 0], table[:, 1:]


def window_values(times: np.ndarray, values: np.ndarray, start_s: float, end_s: float, *, clip_id: str) -> np.ndarray:
    """The mean of the annotated values at times in [start_s, end_s): shape (n_values,).

    Raises
    ------
    ManifestError
        When no annotated time lies in the window (an annotation file shorter than its clip).
    """
    inside = (times >= start_s) & (times < end_s)
    if not inside.any():
        raise ManifestError(
            f"clip {clip_id!r}: its annotations ({times[0]:g}-{times[-1]:g} s) hold no time in its window"
            f" {start_s:g}-{end_s:g} s;"
            " annotate the whole clip or shorten its windows ([clip] hop_s, [audio] duration_s)"
        )
    return values[inside].mean(axis=0)
