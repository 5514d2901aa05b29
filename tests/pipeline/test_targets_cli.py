"""The command line of tags and valence/arousal: a labelled scan, its refusals (exit 2, the clip named) and
``mvemo-cv --target``."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.manifests import Manifest, read_manifest
from mvemo.pipeline.cli.main import cli
from tests.conftest import write_tiny
from tests.fuse.helpers import embedding_cache

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), prog_name="mvemo")


@pytest.fixture
def audio_root(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    root.mkdir()
    for i in range(4):
        (root / f"s{i}.wav").write_bytes(b"x")
    return root


def scan_with_labels(root: Path, tmp_path: Path, body: str) -> object:
    """``mvemo manifest scan ROOT --labels`` of a side table holding ``body``, ids in column ``id``, scale 1-9."""
    labels = tmp_path / "labels.csv"
    labels.write_text(body)
    return run(
        "manifest",
        "scan",
        str(root),
        "-o",
        str(tmp_path / "m.csv"),
        "--labels",
        str(labels),
        "--key",
        "id",
        "--scale",
        "1,9",
    )


def test_scan_with_labels_writes_tags_values_and_scale(audio_root: Path, tmp_path: Path) -> None:
    result = scan_with_labels(
        audio_root,
        tmp_path,
        '# tags: ["calm", "dark"]\nid,tags,valence,arousal\ns0,calm,2,3\ns1,,4,5\ns2,dark;calm,6,7\ns3,dark,8,9\n',
    )
    assert result.exit_code == 0, result.output
    assert "2 tags (calm 2, dark 2); valence and arousal on the scale [1.0, 9.0]" in result.output
    manifest = read_manifest(tmp_path / "m.csv")
    assert manifest.tags == ("calm", "dark") and manifest.clips[2].tags == ("dark", "calm")


@pytest.mark.parametrize(
    "body, message",
    [
        ('# tags: ["calm"]\nid,tags\ns0,calm\ns1,calm\ns2,angry\ns3,\n', "clip 's2.wav'.*'angry' is not a tag"),
        ("id,valence\ns0,2\ns1,NaN\ns2,3\ns3,4\n", "clip 's1.wav'.*'NaN' is not a finite number"),
        ("id,valence,arousal\ns0,2,3\ns1,4,\ns2,3,3\ns3,4,4\n", "clip 's1.wav'.*'arousal' is empty while 3 other"),
        ("id,valence\ns0,2\ns1,3\n", "clip 's2.wav': no row of --labels"),
    ],
)
def test_bad_label_input_exits_2_naming_the_clip(audio_root: Path, tmp_path: Path, body: str, message: str) -> None:
    result = scan_with_labels(audio_root, tmp_path, body)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "m.csv").exists(), "nothing written"


def targets(manifest: Manifest) -> Manifest:
    rng = np.random.default_rng(1)
    clips = tuple(
        replace(
            c, tags=("low",) if y == 0 else (), valence=float(y) + 0.1 * rng.standard_normal(), arousal=float(2 - y)
        )
        for c, y in zip(manifest.clips, manifest.y)
    )
    return replace(manifest, clips=clips, tags=("low",), scale=(-1.0, 3.0))


@pytest.mark.parametrize("target, figure", [("tags", "tag_ap.png"), ("valence,arousal", "scatter_a.png")])
def test_cv_target_writes_its_report(tmp_path: Path, target: str, figure: str) -> None:
    cache = embedding_cache(tmp_path / "cache", nets={"a": (6, 2.0)}, n_per_class=10, retarget=targets)
    out = tmp_path / "r"
    result = run("cv", "--cache", str(cache), "--out", str(out), "--target", target, "--models", "a", "--repeats", "2")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "report.json").read_text())
    assert document["target"] == target and (out / figure).is_file() and (out / "report.md").is_file()
    assert "data:image/png;base64," in (out / "report.html").read_text(), "the page inlines its plots"
    assert "| a | weights sha256 a-weights-sha256 | none | leakfree |" in (out / "report.md").read_text(), (
        "each net's weights"
    )
    if target == "tags":
        assert document["metrics"]["a"]["per_tag"]["low"]["roc_auc"]["mean"] > 0.9
    else:
        assert document["metrics"]["a"]["valence"]["ccc"] > 0.8 and document["metrics"]["a"]["arousal"]["ccc"] > 0.8
    refused = run("cv", "--cache", str(cache), "--out", str(out), "--target", "mood")
    assert refused.exit_code == 2 and "--target 'mood'" in refused.output


def test_manifest_check_lists_a_bad_annotation_file_as_its_clips_problem(tmp_path: Path) -> None:
    write_tiny(tmp_path / "a.mp4")
    write_tiny(tmp_path / "b.mp4")
    (tmp_path / "a.csv").write_text("time_s,valence\n0,0.2\n1,0.3\n")
    (tmp_path / "b.csv").write_text("time_s,valence\n0,0.2\n1,7\n")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "# scale: [-1, 1]\nclip_id,video,audio,valence,annotations\na,a.mp4,a.mp4,0.2,a.csv\nb,b.mp4,b.mp4,0.1,b.csv\n"
    )
    result = run("manifest", "check", str(manifest))
    assert result.exit_code == 3, result.output
    assert (
        "problem: clip 'b': annotations" in result.output and "row 2: a value lies outside the scale" in result.output
    )
    assert "1 ok, 1 with problems" in result.output
