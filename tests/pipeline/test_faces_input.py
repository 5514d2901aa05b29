"""The ``faces`` input end to end: stage one caches it, stage two composes it like any input, a saved model predicts
with it, and the timeline's CSV and PNG gain the expression track. Synthetic videos whose class is whether a
performer's face (from the MVED reference frames) is on screen."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.manifests import ConfigError, write_manifest
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.synthetic import write_media
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.config import net_config
from tests.conftest import SHARED
from tests.extract.references import face_patch, shared_file
from tests.pipeline.helpers import synthetic_manifest

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

WEIGHTS = SHARED / "weights"
SR, FPS, SIZE = 16000, 2, (256, 456)


def frames_of(reference: dict[str, np.ndarray], seconds: float, face: bool, rng: np.random.Generator) -> np.ndarray:
    """A still grey picture with noise; with ``face``, the smiling performer of reference frame 0, pasted where the
    clip's draw puts it."""
    frames = np.clip(rng.normal(90, 12, (int(seconds * FPS), *SIZE, 3)), 0, 255).astype(np.uint8)
    if face:
        patch = face_patch(reference, 0, 0, 1 / 3)
        top, left = int(rng.integers(0, SIZE[0] - len(patch))), int(rng.integers(0, SIZE[1] - patch.shape[1]))
        frames[:, top : top + len(patch), left : left + patch.shape[1]] = patch
    return frames


def test_a_model_over_faces_trains_predicts_and_draws_the_expression_track(tmp_path: Path) -> None:
    with np.load(shared_file(WEIGHTS / "reference" / "faces_reference.npz"), allow_pickle=False) as npz:
        reference = {key: npz[key] for key in ("frames", "mtcnn/boxes")}
    rng = np.random.default_rng(3)
    for label, face in (("Performer", True), ("Scenery", False)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for k in range(8):
            audio = rng.normal(0, 0.05, int(4 * SR)).astype(np.float32)
            write_media(
                tmp_path / "data" / label / f"{k}.mp4",
                frames=frames_of(reference, 4, face, rng),
                fps=FPS,
                y=audio,
                sr=SR,
            )
    manifest = write_manifest(assign_folds(scan_tree(tmp_path / "data"), k=4, seed=0), tmp_path / "m.csv")
    (tmp_path / "c.toml").write_text("[audio]\nduration_s = 4.0\n[frames]\nn_frames = 4\n")
    runner = CliRunner()
    common = ["--config", str(tmp_path / "c.toml"), "--weights-dir", str(WEIGHTS)]
    result = runner.invoke(
        cli, ["extract", str(manifest), "--cache", str(tmp_path / "cache"), "--features", "faces", *common]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli, ["fuse", str(tmp_path / "cache"), "--out", str(tmp_path / "fused"), "--models", "faces"]
    )
    assert result.exit_code == 0, result.output
    assert "faces" in result.output and "100.0" in result.output, "whether a face is on screen is what faces reads"
    song = np.concatenate([frames_of(reference, 8, False, rng), frames_of(reference, 8, True, rng)])
    video = write_media(
        tmp_path / "song.mp4", frames=song, fps=FPS, y=rng.normal(0, 0.05, 16 * SR).astype(np.float32), sr=SR
    )
    out = tmp_path / "t"
    result = runner.invoke(
        cli,
        [
            "predict",
            str(tmp_path / "fused" / "model"),
            str(video),
            "--timeline",
            "--hop",
            "4",
            "--out",
            str(out),
            "--weights-dir",
            str(WEIGHTS),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "song.mp4.timeline.csv").open()))
    assert [r["argmax"] for r in rows] == ["Scenery", "Scenery", "Performer", "Performer"]
    assert [float(r["face_share"]) for r in rows] == [0.0, 0.0, 1.0, 1.0]
    assert float(rows[-1]["face_happy"]) == max(
        float(rows[-1][f"face_{e}"]) for e in ("angry", "sad", "happy", "neutral")
    )
    assert (out / "song.mp4.timeline.png").stat().st_size > 10_000


def test_random_init_is_refused_for_the_face_detector() -> None:
    with pytest.raises(ConfigError, match=r"--random-init faces: .* published weights only"):
        net_config(None, ("faces",))


def test_a_missing_weight_file_stops_extract_with_exit_2_naming_it_and_the_fetch_command(tmp_path: Path) -> None:
    manifest = synthetic_manifest(tmp_path, ("Sad", "Tension"), clips_per_class=2, duration_s=2.0)
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            str(manifest),
            "--cache",
            str(tmp_path / "cache"),
            "--features",
            "faces",
            "--weights-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert (
        "weights 'faces_mtcnn.npz' not found" in result.output
        and "mvemo weights fetch faces_mtcnn.npz" in result.output
    )
