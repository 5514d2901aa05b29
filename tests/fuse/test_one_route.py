"""Classes, tags and values go through one loop (``fuse.loop.run_folds``): what it says reaches all three reports."""

from __future__ import annotations

from pathlib import Path

import mvemo.fuse.loop
from mvemo.fuse.stage import run_cv, run_target_cv
from tests.fuse.helpers import embedding_cache
from tests.fuse.test_dimensional import valued
from tests.fuse.test_tagging import tagged


def test_a_note_of_the_loop_reaches_the_class_tag_and_value_reports(tmp_path: Path, monkeypatch) -> None:
    cache = embedding_cache(
        tmp_path / "cache", nets={"a": (8, 2.0)}, n_per_class=8, retarget=lambda m: valued(tagged(m))
    )
    run_notes = mvemo.fuse.loop.run_notes
    monkeypatch.setattr(mvemo.fuse.loop, "run_notes", lambda *args: [*run_notes(*args), "a note of the one loop"])
    reports = {
        "classes": run_cv(cache, tmp_path / "classes", models="a").document,
        "tags": run_target_cv(cache, tmp_path / "tags", "tags", models="a").document,
        "values": run_target_cv(cache, tmp_path / "values", "valence,arousal", models="a").document,
    }
    for kind, document in reports.items():
        assert "a note of the one loop" in document["notes"], kind
        assert "a note of the one loop" in (tmp_path / kind / "report.md").read_text(), kind
        assert document["protocol"] == "leakfree" and document["provenance"], kind
