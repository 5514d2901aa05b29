"""``predict --csv``: a catalogue's run resumes. A rerun skips the clips labelled, retries once those that failed,
drops a row a kill cut, and ends with the rows of a run never stopped; killed at random moments (slow), the same."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.manifests import Clip, read_manifest, write_manifest
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.predict import predictor

MVEMO = Path(sys.executable).parent / "mvemo"


def catalogue(demo: Path, folder: Path, n_clips: int) -> Path:
    """A manifest of the demo's first ``n_clips`` clips and one that does not exist, at ``folder / m.csv``."""
    manifest = read_manifest(demo / "manifest.csv")
    gone = folder / "gone.mp4"
    missing = Clip("gone", manifest.clips[0].label, gone, gone, fold=0, valence=0.0, arousal=0.0)
    return write_manifest(replace(manifest, clips=(*manifest.clips[:n_clips], missing)), folder / "m.csv")


def predicted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The clips the serial executor computes from here on (predict runs them in this process)."""
    computed: list[str] = []
    compute = predictor.predict_clip

    def counted(saved, name, clip, *args):  # type: ignore[no-untyped-def]
        computed.append(clip.clip_id)
        return compute(saved, name, clip, *args)

    monkeypatch.setattr(predictor, "predict_clip", counted)
    return computed


def test_a_rerun_skips_the_clips_labelled_retries_those_that_failed_and_drops_a_cut_row(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = catalogue(tiny_demo, tmp_path, 4)
    clip_ids = [c.clip_id for c in read_manifest(manifest, check_files=False).clips]
    command = ["predict", str(tiny_demo / "model"), "--manifest", str(manifest), "--model", "lldstats", "--csv"]
    whole = tmp_path / "whole.csv"
    first = CliRunner().invoke(cli, [*command, str(whole)])
    assert first.exit_code == 3 and "resuming" not in first.output, first.output
    lines = whole.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + len(clip_ids) and "does not exist" in lines[-1]

    stopped = tmp_path / "stopped.csv"  # as a kill leaves it: two rows whole, the third cut
    Path(f"{stopped}.partial").write_text("".join(lines[:3]) + lines[3][:25])
    computed = predicted(monkeypatch)
    rerun = CliRunner().invoke(cli, [*command, str(stopped)])
    assert rerun.exit_code == 3, rerun.output
    assert computed == clip_ids[2:], "the clips of the whole rows skipped, the cut one labelled again"
    assert f"resuming {stopped}: 2 of 5 clips labelled before; 0 that failed retried" in rerun.stderr
    assert stopped.read_text() == whole.read_text() and not Path(f"{stopped}.partial").exists()
    assert "model: lldstats; 4 of 5 clips labelled" in rerun.stdout, "the summary counts the clips skipped too"
    assert "warning: 4 of 5 clips were in the model's training set" in rerun.stderr, "the clips skipped too"
    with open(whole, newline="") as f:
        assert [row["in_training"] for row in csv.DictReader(f)] == ["true"] * 4 + [""], "the demo's own clips"

    computed.clear()
    again = CliRunner().invoke(cli, [*command, str(stopped)])
    assert computed == ["gone"], "a finished run's failure retried, nothing else"
    assert again.exit_code == 3 and "4 of 5 clips labelled before; 1 that failed retried" in again.stderr
    assert stopped.read_text() == whole.read_text()


def test_a_csv_of_the_version_before_in_training_resumes_and_ends_in_this_versions_columns(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = catalogue(tiny_demo, tmp_path, 2)
    command = ["predict", str(tiny_demo / "model"), "--manifest", str(manifest), "--model", "lldstats", "--csv"]
    out = tmp_path / "r.csv"
    assert CliRunner().invoke(cli, [*command, str(out)]).exit_code == 3
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c != "in_training"]
    with open(out, "w", newline="") as f:  # as the version before wrote it
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    computed = predicted(monkeypatch)
    rerun = CliRunner().invoke(cli, [*command, str(out)])
    assert rerun.exit_code == 3 and "2 of 3 clips labelled before; 1 that failed retried" in rerun.stderr, rerun.output
    assert computed == ["gone"]
    with open(out, newline="") as f:
        resumed = list(csv.DictReader(f))
    assert [r["in_training"] for r in resumed] == ["", "", ""], "the earlier rows do not say; a failure has none"
    assert [{k: r[k] for k in columns} for r in resumed] == [{k: r[k] for k in columns} for r in rows]


def test_a_csv_of_another_model_is_refused_in_one_line(tiny_demo: Path, tmp_path: Path) -> None:
    manifest = catalogue(tiny_demo, tmp_path, 2)
    out = tmp_path / "r.csv"
    command = ["predict", str(tiny_demo / "model"), "--manifest", str(manifest), "--csv", str(out)]
    assert CliRunner().invoke(cli, [*command, "--model", "lldstats"]).exit_code == 3
    other = CliRunner().invoke(cli, [*command, "--model", "descriptors"])
    assert other.exit_code == 2 and len(other.stderr.strip().splitlines()) == 1, other.output
    assert "labelled by model 'lldstats' of saved model " in other.stderr and ", not 'descriptors' of " in other.stderr
    assert f"remove {out}" in other.stderr
    tags = CliRunner().invoke(
        cli, ["predict", str(tiny_demo / "tags" / "model"), "--manifest", str(manifest), "--csv", str(out)]
    )
    assert tags.exit_code == 2 and "holds the columns" in tags.stderr, tags.output
    retrained = shutil.copytree(tiny_demo / "model", tmp_path / "retrained")  # the same names, other bytes
    (retrained / "model.json").write_text(json.dumps(json.loads((retrained / "model.json").read_text()), indent=3))
    again = ["predict", str(retrained), "--manifest", str(manifest), "--csv", str(out), "--model", "lldstats"]
    other = CliRunner().invoke(cli, again)
    assert other.exit_code == 2 and "labelled by model 'lldstats' of saved model " in other.stderr, other.output


def test_a_blank_line_added_to_a_finished_csv_is_no_row(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = catalogue(tiny_demo, tmp_path, 2)
    out = tmp_path / "r.csv"
    command = [
        "predict",
        str(tiny_demo / "model"),
        "--manifest",
        str(manifest),
        "--csv",
        str(out),
        "--model",
        "lldstats",
    ]
    assert CliRunner().invoke(cli, command).exit_code == 3
    finished = out.read_text()
    out.write_text(finished + "\n")
    computed = predicted(monkeypatch)
    rerun = CliRunner().invoke(cli, command)
    assert rerun.exit_code == 3 and computed == ["gone"] and out.read_text() == finished, rerun.output


@pytest.mark.slow(reason="predict over a catalogue killed (SIGKILL) at random moments, rerun each time to its end")
def test_killed_at_random_moments_and_rerun_predict_writes_the_rows_of_an_uninterrupted_run(
    tiny_demo: Path, tmp_path: Path
) -> None:
    manifest = catalogue(tiny_demo, tmp_path, 12)
    command = [str(MVEMO), "predict", str(tiny_demo / "model"), "--manifest", str(manifest), "--model", "lldstats"]
    start = time.monotonic()
    subprocess.run([*command, "--csv", str(tmp_path / "whole.csv")], capture_output=True, check=False)
    duration = time.monotonic() - start
    out = tmp_path / "killed.csv"
    rng = np.random.default_rng(0)
    kills = 0
    while kills < 4:
        run = subprocess.Popen([*command, "--csv", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, duration))
        if run.poll() is not None:
            break  # it finished first: what is left runs to its end
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        kills += 1
    finished = subprocess.run([*command, "--csv", str(out)], capture_output=True, text=True, check=False)
    assert finished.returncode == 3, finished.stderr
    assert kills >= 2, f"only {kills} runs were still going when killed"
    assert out.read_text() == (tmp_path / "whole.csv").read_text(), "each clip once, as the uninterrupted run wrote it"
