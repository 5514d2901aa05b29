"""Every bench of ``mvemo bench`` runs at its smallest size (``--smallest``) and prints each key its JSON promises: a
bench that breaks (a renamed model, a changed set) fails here, not in a user's run. Figures are never asserted: they
measure nothing at this size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mvemo.pipeline.bench.registry import BENCHES
from mvemo.pipeline.cli.main import cli
from tests.conftest import SHARED

pytestmark = pytest.mark.heavy

WEIGHTS = SHARED / "weights"
# the benches of more than 15 s at their smallest (nets through stage one on a CPU, servers, subprocesses)
LONGER = {"extract", "timeline", "memory", "predict", "catalogue"}
# what a bench may lack on a machine, and say so instead of its figures
MAY_LACK = {"timeline", "pages", "faces", "predict", "catalogue"}


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in LONGER else name for name in BENCHES]
)
def test_every_bench_runs_at_its_smallest_size_and_prints_the_keys_it_promises(name: str, tmp_path: Path) -> None:
    weights = ["--weights-dir", str(WEIGHTS)] if WEIGHTS.is_dir() else []
    command = ["bench", name, "--smallest", "--json", "--tmp-dir", str(tmp_path), *weights]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    if "skipped" in document and name in MAY_LACK:
        pytest.skip(f"bench {name}: {document['skipped']}")
    assert set(document) >= BENCHES[name].keys, f"missing: {sorted(BENCHES[name].keys - set(document))}"
    for model, figures in document.items() if name == "catalogue" else ():
        assert "skipped" in figures or {"extract clips/s", "predict clips/s"} <= set(figures), model
