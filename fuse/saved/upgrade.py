"""Saved models of an earlier format, read as this version's.

Format 2 differs from format 3 in its late records alone: ``"weighted": true|false`` where format 3 has
``"rule": "inner"|"equal"`` and the members a trim dropped (``"dropped"``; none: no format-2 late fusion trimmed). Late
records lie anywhere in a model's tree, the per-tag models of a tag model included; a value model holds none.
"""

from __future__ import annotations

from typing import Any


def from_format_2(document: dict[str, Any]) -> dict[str, Any]:
    """A format-2 ``model.json`` document as format 3 writes it: every late record of every model upgraded
    (``late_record``), nothing else changed. What is not as format 2 wrote it is left as it is, for
    ``fuse.saved.check`` to name."""
    models = document.get("models")
    if not isinstance(models, dict):
        return document | {"format": 3}
    upgraded = {
        name: model | {"model": _record(model["model"])} if isinstance(model, dict) and "model" in model else model
        for name, model in models.items()
    }
    return document | {"format": 3, "models": upgraded}


def _record(record: Any) -> Any:
    """A record of a model's tree with every record below it upgraded: a late or stack record's members, a best
    record's choice, a tag model's per-tag models."""
    if not isinstance(record, dict):
        return record
    upgraded = dict(record)
    if isinstance(record.get("members"), list):
        upgraded["members"] = [_record(member) for member in record["members"]]
    if record.get("kind") == "best" and "chosen" in record:
        upgraded["chosen"] = _record(record["chosen"])
    if isinstance(record.get("per_tag"), list):
        upgraded["per_tag"] = [
            entry | {"model": _record(entry["model"])} if isinstance(entry, dict) and "model" in entry else entry
            for entry in record["per_tag"]
        ]
    return late_record(upgraded) if record.get("kind") == "late" else upgraded


def late_record(record: dict[str, Any]) -> dict[str, Any]:
    """A format-2 late record as format 3's: ``weighted`` true is the ``inner`` rule, false the ``equal`` one, and
    nothing was dropped."""
    if not isinstance(record.get("weighted"), bool):
        return record
    upgraded = {key: value for key, value in record.items() if key != "weighted"}
    return upgraded | {"rule": "inner" if record["weighted"] else "equal", "dropped": {}}
