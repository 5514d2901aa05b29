"""``predict --csv OUT``: a catalogue's results, a row per clip, that a rerun resumes.

Each row is appended to ``OUT.partial`` as its clip finishes, written whole and flushed; a rerun reads the rows of
``OUT`` and ``OUT.partial`` (the last line dropped where a kill cut it), skips every clip labelled there, retries once
each clip that failed, and labels the clips new to the manifest. Once every clip is in, ``OUT`` is written in the
manifest's order (rows of clips the manifest no longer lists after them) and ``OUT.partial`` removed, so a run
stopped any number of times ends with the rows of a run never stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mvemo.fuse.saved.model import SavedFusionModel
from mvemo.manifests.errors import ConfigError


def output_columns(saved: SavedFusionModel) -> list[str]:
    """The results CSV's score columns: ``p_<class>``, ``p_<tag>``, or the value names."""
    return saved.outputs if saved.target not in ("label", "tags") else [f"p_{c}" for c in saved.outputs]


def csv_header(saved: SavedFusionModel, labelled: bool) -> list[str]:
    """The results CSV's columns: the clip, its file, the manifest's label (where it labels clips), the model, what it
    predicted, its scores (``output_columns``), whether the model trained on the clip (``IN_TRAINING``), the error of a
    clip that failed and the saved model's digest (``saved_digest``), which a rerun checks."""
    scores = output_columns(saved)
    return [
        "clip_id",
        "file",
        *(["manifest_label"] if labelled else []),
        "model",
        "predicted",
        *scores,
        "in_training",
        "error",
        "saved_model",
    ]


# A result's ``in_training`` as its CSV cell: empty for a model of imported sets alone, which cannot tell
IN_TRAINING = {True: "true", False: "false", None: ""}


def saved_digest(saved: SavedFusionModel) -> str:
    """The saved model's files (``model.json``, its heads) as 12 hex digits of their sha256: a model trained again
    under the same name is another model."""
    digest = hashlib.sha256()
    for file in sorted(saved.folder.iterdir()):
        if file.is_file() and file.suffix in (".json", ".h5"):
            digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()[:12]


def in_progress(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def earlier_rows(path: str | os.PathLike[str], header: list[str], model: str, digest: str) -> dict[str, dict[str, str]]:
    """The rows earlier runs wrote into ``path`` (a finished run) and ``path.partial`` (a stopped one), by clip id, the
    stopped run's last; a file of other columns (but ``header`` without ``in_training``, an earlier version's, whose
    rows then do not say it), or whose rows another model (``model`` of the saved model of ``digest``) labelled, is
    refused (``ConfigError``), and so is a row cut other than at the end."""
    rows: dict[str, dict[str, str]] = {}
    for file in (Path(path), in_progress(Path(path))):
        if not file.is_file():
            continue
        text = file.read_bytes().decode("utf-8", errors="replace")
        records = list(csv.reader(io.StringIO(text, newline="")))
        if records and not text.endswith("\n"):
            records.pop()  # the row a kill cut
        fix = f"give another --csv, or remove {file} to label every clip again"
        columns = records[0] if records else header
        if columns not in (header, [c for c in header if c != "in_training"]):  # an earlier version's: no in_training
            raise ConfigError(
                f"--csv {path}: {file.name} holds the columns {records[0]}, not {header}"
                f" (this model's, with the manifest's labels where it gives them); {fix}"
            )
        for line, record in enumerate(records[1:], start=2):
            if not record:
                continue  # a blank line
            if len(record) != len(columns):
                raise ConfigError(
                    f"--csv {path}: {file.name}'s record {line} has {len(record)} fields, not {len(columns)}; {fix}"
                )
            row = {"in_training": ""} | dict(zip(columns, record))
            if (row["model"], row["saved_model"]) not in (("", digest), (model, digest)):
                raise ConfigError(
                    f"--csv {path}: {file.name} holds clips labelled by model {row['model']!r} of saved model"
                    f" {row['saved_model']}, not {model!r} of {digest}; {fix}"
                )
            rows[row["clip_id"]] = row
    return rows


def labelled(rows: dict[str, dict[str, str]]) -> set[str]:
    """The clips an earlier run labelled (a row with a label and no error): a rerun skips them."""
    return {clip_id for clip_id, row in rows.items() if row["model"] and not row["error"]}


def result_of_row(row: dict[str, str], saved: SavedFusionModel) -> dict[str, Any]:
    """An earlier run's row as ``Predictor.predict``'s result: its label, scores and whether the model trained on the
    clip."""
    if not row["model"]:
        return {"clip_id": row["clip_id"], "file": row["file"], "error": row["error"]}
    key = "probabilities" if saved.target in ("label", "tags") else "values"
    scores = {name: float(row[column]) for name, column in zip(saved.outputs, output_columns(saved))}
    return {
        "clip_id": row["clip_id"],
        "file": row["file"],
        "model": row["model"],
        "label": row["predicted"],
        key: scores,
        "in_training": {cell: seen for seen, cell in IN_TRAINING.items()}.get(row["in_training"]),
    }


def row_of_result(result: dict[str, Any], header: list[str], labels: dict[str, str], digest: str) -> dict[str, str]:
    """A result as its CSV row: the label and scores, or the error; the manifest's label where the header has it."""
    row = {
        "clip_id": result["clip_id"],
        "file": result["file"],
        "error": result.get("error", ""),
        "saved_model": digest,
    }
    if "manifest_label" in header:
        row["manifest_label"] = labels.get(result["clip_id"], "")
    if "label" in result:
        scores = result.get("probabilities") or result["values"]
        row |= {
            "model": result["model"],
            "predicted": result["label"],
            "in_training": IN_TRAINING[result["in_training"]],
        }
        scored = header[header.index("predicted") + 1 : header.index("in_training")]
        row |= {column: f"{p:.6f}" for column, p in zip(scored, scores.values())}
    return row


def write_results_csv(
    results: Iterable[dict[str, Any]],
    path: str | os.PathLike[str],
    header: list[str],
    order: list[str],
    earlier: dict[str, dict[str, str]],
    labels: dict[str, str],
    digest: str,
) -> Iterator[dict[str, Any]]:
    """Stream ``results`` into ``path.partial`` after the ``earlier`` rows (``earlier_rows``), a row as each clip
    finishes, passing each result on; once every result is in, ``path`` holds every row, those of ``order``'s clips
    first in that order, and ``path.partial`` is removed. Only each row's CSV line is kept until then (about 200 bytes
    a clip), not the results."""
    path = Path(path)
    partial = in_progress(path)
    lines = {clip_id: csv_line(header, row) for clip_id, row in earlier.items()}
    del earlier  # a resumed catalogue's rows as dicts: five times their lines, let go before the run
    _replace(partial, header, lines.values())
    with partial.open("a", newline="", encoding="utf-8") as f:
        for result in results:
            line = lines[result["clip_id"]] = csv_line(header, row_of_result(result, header, labels, digest))
            f.write(line)
            f.flush()
            yield result
    listed = set(order)
    ordered = [lines[clip_id] for clip_id in order if clip_id in lines]
    _replace(path, header, ordered + [line for clip_id, line in lines.items() if clip_id not in listed])
    partial.unlink()


def csv_line(header: list[str], row: dict[str, str]) -> str:
    """One row as its CSV record (its line end included), the columns it lacks empty."""
    text = io.StringIO(newline="")
    csv.DictWriter(text, fieldnames=header, extrasaction="raise", restval="").writerow(row)
    return text.getvalue()


def _replace(path: Path, header: list[str], lines: Iterable[str]) -> None:
    """``path`` holding ``header`` and the CSV ``lines``, written beside it and renamed, so a kill leaves the old file
    or the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(header)
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
