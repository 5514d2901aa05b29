from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.fingerprint import fingerprint
from mvemo.cache.read import Cache
from mvemo.fuse.inputs import lld_statistics
from mvemo.fuse.metrics import sign_agreement
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests import Clip, read_manifest, write_manifest
from mvemo.manifests.folds import fold_table
from mvemo.manifests.synthetic import DEMO_CLASSES, DEMO_SCALE, DEMO_TAGS
from mvemo.manifests.targets import QUADRANTS, quadrants
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.demo import DEMO_NETS, DEMO_TARGET_MODELS, DEMO_TARGET_REPEATS
from mvemo.pipeline.predict.inputs import recorded_record
from tests.conftest import SHARED, write_tiny

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def test_tiny_demo_runs_the_whole_pipeline(tiny_demo: Path) -> None:
    manifest = read_manifest(tiny_demo / "manifest.csv")
    assert manifest.classes == DEMO_CLASSES and len(manifest) == 24
    assert (fold_table(manifest) == 2).all()
    assert "audio_tempo_bpm" in manifest.extra_columns and "video_warmth" in manifest.extra_columns
    report = json.loads((tiny_demo / "report.json").read_text())
    assert report["classes"] == list(DEMO_CLASSES) and report["folds"] == 2
    assert (tiny_demo / "roc.png").is_file() and (tiny_demo / "model" / "model.json").is_file()
    assert not [p.name for p in tiny_demo.iterdir() if p.suffix in (".lock", ".partial", ".tmp")], "no stray file"


def test_tiny_demo_cross_validates_tags_and_values(tiny_demo: Path) -> None:
    manifest = read_manifest(tiny_demo / "manifest.csv")
    assert (
        manifest.tags == DEMO_TAGS and manifest.value_names == ("valence", "arousal") and manifest.scale == DEMO_SCALE
    )
    tags = json.loads((tiny_demo / "tags" / "report.json").read_text())
    assert tags["target"] == "tags" and (tiny_demo / "tags" / "tag_ap.png").is_file()
    models = ["lldstats", "descriptors", "c3d", "late(descriptors,c3d)", "integrated(lldstats,descriptors,c3d)"]
    assert list(tags["metrics"]) == models and ",".join(models) == DEMO_TARGET_MODELS
    assert set(tags["unscored"]) | set(tags["metrics"]["lldstats"]["per_tag"]) == set(DEMO_TAGS)
    assert tags["metrics"]["lldstats"]["roc_auc_macro"]["mean"] > 0.7, "the sound's tags are heard in its descriptors"
    assert tags["metrics"]["lldstats"]["repeats"] == DEMO_TARGET_REPEATS
    values = json.loads((tiny_demo / "valence-arousal" / "report.json").read_text())
    assert values["names"] == ["valence", "arousal"]
    assert all(np.isfinite(m["valence"]["ccc"]) and "quadrants" in m for m in values["metrics"].values())
    assert values["metrics"]["lldstats"]["arousal"]["ccc"] > 0.5, "arousal follows tempo and loudness"
    assert values["metrics"]["lldstats"]["repeats"] == DEMO_TARGET_REPEATS


INTEGRATED = f"integrated({','.join(DEMO_NETS)},lldstats,descriptors)"


def one_clip_per_class(demo: Path) -> list[str]:
    """The first video of each class folder of a demo's data: every class, a quarter of the tiny demo's clips."""
    return [str(min(folder.glob("*.mp4"))) for folder in sorted((demo / "data").iterdir())]


@pytest.mark.parametrize("model", [None, "lldstats", "descriptors", "c3d+twodcnn"])
def test_predict_reproduces_the_final_model_on_its_own_clips(tiny_demo: Path, model: str | None) -> None:
    """Through every net and set the model reads, one clip of each class (predict runs clip by clip, so more clips
    would repeat the same path)."""
    files = one_clip_per_class(tiny_demo)
    result = CliRunner().invoke(
        cli, ["predict", str(tiny_demo / "model"), *files, "--json", *(["--model", model] if model else [])]
    )
    assert result.exit_code == 0, result.output
    assert f"warning: {len(files)} of {len(files)} clips were in the model's training set" in result.stderr
    predicted = {r["file"]: r for r in json.loads(result.stdout)}
    saved = load_fusion_model(tiny_demo / "model")
    chosen = next(iter(predicted.values()))["model"]
    if model is None:
        assert chosen == saved.document["default_model"] == INTEGRATED, "the integrated model, chosen on inner folds"
    with Cache(tiny_demo / "cache") as cache:
        inputs = {"lldstats": lld_statistics(cache)[0], "descriptors": cache.read_matrix("descriptors")}
        inputs |= {n: cache.read_matrix(f"emb/{n}/all") for n in DEMO_NETS}
        manifest = read_manifest(tiny_demo / "manifest.csv")
        expected = saved.predict(chosen, inputs)
    row_of = {str(clip.video): row for row, clip in enumerate(manifest.clips)}
    assert sorted(predicted) == sorted(files)
    for file, got in predicted.items():
        row = row_of[file]
        assert got["model"] == chosen and got["label"] in DEMO_CLASSES and got["in_training"]
        # the cache's embeddings came in batches of 8, predict's one clip at a time: float32 rounding differs
        np.testing.assert_allclose([got["probabilities"][c] for c in DEMO_CLASSES], expected[row], atol=1e-4)


@pytest.mark.parametrize("folder", ["tags", "valence-arousal"])
def test_tag_and_value_models_predict_what_they_were_trained_for(tiny_demo: Path, folder: str) -> None:
    saved = load_fusion_model(tiny_demo / folder / "model")
    files = sorted(str(p) for p in (tiny_demo / "data").glob("*/*.mp4"))[:6]
    result = CliRunner().invoke(cli, ["predict", str(tiny_demo / folder / "model"), *files, "--json"])
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.stdout)
    with Cache(tiny_demo / "cache") as cache:
        inputs = {"lldstats": lld_statistics(cache)[0], "descriptors": cache.read_matrix("descriptors")}
        inputs |= {"c3d": cache.read_matrix("emb/c3d/all")}
        rows = [cache.clip_ids.index(str(Path(f).relative_to(tiny_demo / "data"))) for f in files]
        expected = saved.predict(saved.default_model, inputs)[rows]
    if folder == "tags":
        assert saved.target == "tags" and saved.outputs == list(DEMO_TAGS)
        thresholds = saved.thresholds(saved.default_model)
        for got, want in zip(predicted, expected):
            np.testing.assert_allclose([got["probabilities"][t] for t in DEMO_TAGS], want, atol=1e-4)
            called = [t for t, p, at in zip(DEMO_TAGS, want, thresholds) if p >= at]
            assert got["label"] == ";".join(called), "the tags at or above their inner-chosen thresholds"
    else:
        assert (
            saved.target == "valence,arousal" and saved.outputs == ["valence", "arousal"] and saved.scale == DEMO_SCALE
        )
        for got, want in zip(predicted, expected):
            np.testing.assert_allclose([got["values"]["valence"], got["values"]["arousal"]], want, atol=1e-4)
            quadrant = (
                "Q1" if want[0] >= 0 and want[1] >= 0 else "Q2" if want[1] >= 0 else "Q3" if want[0] < 0 else "Q4"
            )
            assert got["label"] == quadrant


@pytest.mark.parametrize("folder", ["tags", "valence-arousal"])
def test_tag_and_value_models_draw_a_timeline(tiny_demo: Path, tmp_path: Path, folder: str) -> None:
    file = next((tiny_demo / "data").glob("Sad/*.mp4"))
    out = tmp_path / "timelines"
    model = tiny_demo / folder / "model"
    result = CliRunner().invoke(cli, ["predict", str(model), str(file), "--timeline", "--hop", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: 1 of 1 clips were in the model's training set" in result.stderr, (
        "a timeline says so as a label does"
    )
    with (out / f"{file.name}.timeline.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 1 and (out / f"{file.name}.timeline.png").is_file() and (out / "index.html").is_file()
    page = (out / f"{file.name}.timeline.html").read_text()
    data = json.loads(page.split('id="timeline-data">', 1)[1].split("</script>", 1)[0])
    assert data["kind"] == load_fusion_model(model).target, "the page draws the model's kind of scores"
    assert [data["categories"][k] for k in data["top"]] == [r["argmax"] for r in rows], (
        "each window's top, as the CSV's"
    )
    if folder == "tags":
        assert list(rows[0]) == ["start_s", "end_s", *(f"p_{t}" for t in DEMO_TAGS), "argmax", "called"]
        thresholds = load_fusion_model(model).thresholds(load_fusion_model(model).default_model)
        for r in rows:
            called = [t for t, at in zip(DEMO_TAGS, thresholds) if float(r[f"p_{t}"]) >= at]
            assert r["called"] == ";".join(called) and r["argmax"] in DEMO_TAGS
    else:
        assert list(rows[0]) == ["start_s", "end_s", "valence", "arousal", "argmax"]
        assert all(r["argmax"] in ("Q1", "Q2", "Q3", "Q4") for r in rows) and "valence" in page


def test_predict_reports_a_bad_file_and_goes_on(tiny_demo: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    good = next((tiny_demo / "data").glob("Sad/*.mp4"))
    fresh = write_tiny(tmp_path / "fresh.mp4")
    result = CliRunner().invoke(cli, ["predict", str(tiny_demo / "model"), str(junk), str(good), str(fresh), "--json"])
    assert result.exit_code == 3
    first, second, third = json.loads(result.stdout)
    assert "cannot decode audio" in first["error"] and second["label"] in DEMO_CLASSES
    assert second["in_training"] and not third["in_training"], "only a training clip's own media count as seen"
    assert "warning: 1 of 3 clips were in the model's training set" in result.stderr


@pytest.mark.slow(reason="a Dask LocalCluster started for predict over a manifest")
def test_predict_over_a_manifest_on_dask_writes_one_csv_equal_to_serial(tiny_demo: Path, tmp_path: Path) -> None:
    """Over one clip of each class and two bad ones: each of two workers gets good and bad clips to predict."""
    pytest.importorskip("distributed")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    demo = read_manifest(tiny_demo / "manifest.csv")
    kept = {str(Path(f).relative_to(tiny_demo / "data")) for f in one_clip_per_class(tiny_demo)}
    manifest = replace(demo, clips=tuple(c for c in demo.clips if c.clip_id in kept))
    gone = tmp_path / "gone.mp4"
    values = {"valence": 0.0, "arousal": 0.0}  # the demo's manifest gives every clip values
    bad = (Clip("junk", "Sad", junk, junk, fold=0, **values), Clip("gone", "Sad", gone, gone, fold=1, **values))
    write_manifest(replace(manifest, clips=(*manifest.clips, *bad)), tmp_path / "new.csv")
    model = tiny_demo / "model"
    args = ["predict", str(model), "--manifest", str(tmp_path / "new.csv"), "--model", "c3d+twodcnn"]
    serial = CliRunner().invoke(cli, [*args, "--json"])
    assert serial.exit_code == 3, serial.output
    expected = {r["clip_id"]: r for r in json.loads(serial.stdout)}
    out = tmp_path / "results.csv"
    distributed = CliRunner().invoke(cli, [*args, "--csv", str(out), "--executor", "dask", "--workers", "2"])
    assert distributed.exit_code == 3, distributed.output
    assert (
        "6 of 8 clips labelled" in distributed.stdout
        and "accuracy against the manifest's labels: " in distributed.stdout
    )
    assert "failed: junk: " in distributed.stderr and not out.with_name("results.csv.partial").exists()
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["clip_id"] for r in rows] == [*manifest.clip_ids, "junk", "gone"], "one row per clip, in manifest order"
    for row in rows[:-2]:
        clip = expected[row["clip_id"]]
        assert row["manifest_label"] in DEMO_CLASSES and row["predicted"] == clip["label"] and not row["error"]
        # workers run torch on one thread, this process on all: float32 sums may differ in the last bits
        np.testing.assert_allclose(
            [float(row[f"p_{c}"]) for c in DEMO_CLASSES], [clip["probabilities"][c] for c in DEMO_CLASSES], atol=2e-6
        )
    junk_row, gone_row = rows[-2:]
    assert (
        "clip 'junk'" in junk_row["error"]
        and "re-encode or replace it" in junk_row["error"]
        and not junk_row["predicted"]
    )
    assert "clip 'gone'" in gone_row["error"] and "does not exist" in gone_row["error"]


def test_predict_needs_files_or_a_manifest(tiny_demo: Path) -> None:
    result = CliRunner().invoke(cli, ["predict", str(tiny_demo / "model")])
    assert result.exit_code == 2 and "give either FILE arguments or --manifest M" in result.output


def test_predict_refuses_a_model_whose_features_or_weights_differ(tiny_demo: Path, tmp_path: Path) -> None:
    import shutil

    clip = str(next((tiny_demo / "data").glob("Sad/*.mp4")))
    weights = SHARED / "weights"

    def other_weights(s: dict) -> None:
        """As a model trained with the weights of sha256 fff...: its record and fingerprint say so alike."""
        s.update(weights_sha256="f" * 64)
        s.update(fingerprint=fingerprint(recorded_record(s)))

    cases = [
        (
            lambda s: s["config"]["inputs"].update(mel="0" * 64),
            (),
            "the saved model's mel config has fingerprint 000000000000",
        ),
        (
            other_weights,
            (),
            "the model was trained with these weights, and no others give its embeddings",
        ),
        (
            lambda s: s["input_configs"]["mel"].update(window=s["input_configs"]["mel"].pop("audio_window")),
            (),
            "the mel config holds keys ['window'] this version does not know",
        ),
    ]
    if (weights / "choi_compact_cnn_msd.h5").is_file():
        cases.append(
            (
                other_weights,
                ("--weights-dir", str(weights)),
                "twodcnn was computed with weights of sha256 ffffffffffff, the file found has 42e791b8c1b4",
            )
        )
    for change, options, message in cases:
        folder = tmp_path / "model"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(tiny_demo / "model", folder)
        document = json.loads((folder / "model.json").read_text())
        change(document["models"]["twodcnn"]["feature_sets"]["emb/twodcnn/all"])
        (folder / "model.json").write_text(json.dumps(document))
        result = CliRunner().invoke(cli, ["predict", str(folder), clip, "--model", "twodcnn", *options])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output


def test_the_demo_fails_when_stage_one_fails_every_clip(tmp_path: Path, monkeypatch) -> None:
    import mvemo.extract.features

    def decoder_missing(clip, names, configs):
        return dict.fromkeys(names, f"clip {clip.clip_id!r}: no decoder for h264 on this machine")

    monkeypatch.setattr(mvemo.extract.features, "compute_clip", decoder_missing)
    args = ["demo", "--out", str(tmp_path / "d"), "--clips-per-class", "4", "--duration-s", "1", "--workers", "1"]
    result = CliRunner().invoke(cli, args, prog_name="mvemo")
    assert result.exit_code == 2, result.output
    assert "stage one failed each of the 24 synthetic clips in some feature set (" in result.stderr
    assert "so stage two was not run" in result.stderr
    assert "no decoder for h264" in result.stderr and not (tmp_path / "d" / "model").exists()


@pytest.mark.slow(reason="the demo on 36 clips, its stage two after one clip failed")
def test_the_demo_exits_3_naming_the_clips_stage_one_failed(tmp_path: Path, monkeypatch) -> None:
    import mvemo.extract.features
    import mvemo.pipeline.demo

    compute = mvemo.extract.features.compute_clip

    def one_clip_fails(clip, names, configs):
        result = compute(clip, names, configs)
        if clip.clip_id.endswith("Exciting/000.mp4") and "descriptors" in result:
            result["descriptors"] = f"clip {clip.clip_id!r}: a planted failure"
        return result

    monkeypatch.setattr(mvemo.extract.features, "compute_clip", one_clip_fails)
    monkeypatch.setattr(mvemo.pipeline.demo, "DEMO_TARGETS", {})  # the classes' stage two says that it ran
    # one net of the five: the video nets' minute of CPU proves nothing here (the cold demo runs them all)
    monkeypatch.setattr(mvemo.pipeline.demo, "DEMO_NETS", ("onedcnn",))
    monkeypatch.setattr(mvemo.pipeline.demo, "DEMO_MODELS", "onedcnn,descriptors,integrated(onedcnn,descriptors)")
    args = ["demo", "--out", str(tmp_path / "d"), "--clips-per-class", "6", "--duration-s", "2", "--workers", "1"]
    result = CliRunner().invoke(cli, args, prog_name="mvemo")
    assert result.exit_code == 3, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: descriptors, clip ")]
    assert len(failed) == 1 and "a planted failure" in failed[0], result.stderr
    assert (tmp_path / "d" / "model" / "model.json").is_file(), "stage two ran on the clips left"


@pytest.mark.parametrize(("folder", "counts"), [("tags", "tags called: "), ("valence-arousal", "quadrants: Q1 ")])
def test_predict_csv_of_tag_and_value_models_sums_up_what_they_predict(
    tiny_demo: Path, tmp_path: Path, folder: str, counts: str
) -> None:
    """On the demo's manifest, which labels its clips with classes too: the summary counts the tags called or the
    quadrants, never the classes, and gives no accuracy against labels these models never predict."""
    demo = read_manifest(tiny_demo / "manifest.csv")
    kept = {str(Path(f).relative_to(tiny_demo / "data")) for f in one_clip_per_class(tiny_demo)}
    write_manifest(replace(demo, clips=tuple(c for c in demo.clips if c.clip_id in kept)), tmp_path / "m.csv")
    args = [
        "predict",
        str(tiny_demo / folder / "model"),
        "--manifest",
        str(tmp_path / "m.csv"),
        "--csv",
        str(tmp_path / "r.csv"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(counts) and not any(c in summary for c in DEMO_CLASSES), summary
    assert "accuracy" not in result.stdout


def test_predict_of_a_value_model_scores_its_signs_against_a_manifests_quadrants(
    tiny_demo: Path, tmp_path: Path
) -> None:
    """A manifest whose labels are quadrants (another data set's, as 4Q's): the summary says how the predicted values'
    signs agree with them, as ``fuse.metrics.sign_agreement`` scores the CSV's values."""
    demo = read_manifest(tiny_demo / "manifest.csv")
    kept = [c for c in demo.clips if str(tiny_demo / "data" / c.clip_id) in one_clip_per_class(tiny_demo)]
    truth = quadrants(np.array([[c.valence, c.arousal] for c in kept]), DEMO_SCALE)
    clips = tuple(replace(c, label=QUADRANTS[q]) for c, q in zip(kept, truth))
    write_manifest(replace(demo, clips=clips, classes=QUADRANTS), tmp_path / "m.csv")
    args = ["predict", str(tiny_demo / "valence-arousal" / "model"), "--manifest", str(tmp_path / "m.csv")]
    result = CliRunner().invoke(cli, [*args, "--csv", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = {c.clip_id: c.label for c in clips}
    values = [[float(r["valence"]), float(r["arousal"])] for r in rows]
    agreed = sign_agreement(values, [labels[r["clip_id"]] for r in rows], DEMO_SCALE)
    assert len(rows) == len(clips) and agreed["valence_roc_auc"] is not None
    line = next(line for line in result.stdout.splitlines() if line.startswith("against the manifest's quadrants"))
    assert line == (
        f"against the manifest's quadrants ({len(rows)} clips), by the signs: valence ROC-AUC"
        f" {agreed['valence_roc_auc']:.3f}, arousal ROC-AUC {agreed['arousal_roc_auc']:.3f}, quadrant accuracy"
        f" {agreed['quadrant_accuracy']:.3f}"
    )


def test_a_value_model_on_the_unit_scale_prints_each_value_once(tiny_demo: Path) -> None:
    assert DEMO_SCALE == (-1.0, 1.0)
    clip = one_clip_per_class(tiny_demo)[0]
    result = CliRunner().invoke(cli, ["predict", str(tiny_demo / "valence-arousal" / "model"), clip])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["file", "quadrant", "valence", "on", "[-1,", "1]", "arousal", "on", "[-1,", "1]"]
    assert len(row.split()) == 4


def test_predict_labels_a_manifest_of_new_files_that_keeps_the_classes_line(tiny_demo: Path, tmp_path: Path) -> None:
    """New files to label, in a manifest whose header names the classes and which has no label column."""
    clips = one_clip_per_class(tiny_demo)
    manifest = tmp_path / "new.csv"
    manifest.write_text(
        f"# classes: {json.dumps(list(DEMO_CLASSES))}\nclip_id,video,audio\n"
        + "".join(f"new{i},{clip},{clip}\n" for i, clip in enumerate(clips))
    )
    result = CliRunner().invoke(cli, ["predict", str(tiny_demo / "model"), "--manifest", str(manifest), "--json"])
    assert result.exit_code == 0, result.output
    assert [r["clip_id"] for r in json.loads(result.stdout) if "label" in r] == [f"new{i}" for i in range(len(clips))]
