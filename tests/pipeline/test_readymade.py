"""Ready-made models: each recipe built small on a slice of the shared data, shipped, rebuilt and compared, and
`mvemo predict --model NAME` end to end, a timeline on Russell's plane for the quadrants, a missing net's weights
refused in one line. The full models are built by `mvemo models train NAME --ship` (docs/models.md)."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.extract.stage import extract_features
from mvemo.fuse.inputs import read_input
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests import Clip, Manifest, read_manifest
from mvemo.manifests.targets import on_unit_scale, quadrants
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.config import feature_configs, window_config
from mvemo.pipeline.readymade import recipes
from mvemo.pipeline.readymade.train import differences, train_recipe
from tests.conftest import SHARED
from tests.pipeline.browser import console_errors, open_page, wait_for

pytestmark = pytest.mark.slow

WEIGHTS = SHARED / "weights"
VALUES_MODEL = "valence-arousal"  # the ready-made model of valence and arousal
QUADRANT_TAGS = {"Q1": "joyous", "Q2": "angry", "Q3": "sad", "Q4": "calm"}  # tags that go with each quadrant


def needs_shared(folder: Path) -> None:
    if not folder.is_dir() or not WEIGHTS.is_dir():
        pytest.skip(f"{folder} or {WEIGHTS} is absent (a user's clone has no ../shared)")


def write_slice(folder: Path, data: Path, picked: list[dict[str, str]], where: str, key: str) -> Path:
    """``folder`` holding the ``picked`` rows of ``data``'s labels.csv (its comment lines kept) and their files, each
    at ``<row[where]>/<row[key]>.ogg`` as in ``data``."""
    lines = (data / "labels.csv").read_text().splitlines()
    for row in picked:
        (folder / row[where]).mkdir(exist_ok=True)
        (folder / row[where] / f"{row[key]}.ogg").symlink_to(data / row[where] / f"{row[key]}.ogg")
    with open(folder / "labels.csv", "w", newline="") as f:
        f.write("\n".join(line for line in lines if line.startswith("#")) + "\n")
        writer = csv.DictWriter(f, fieldnames=list(picked[0]))
        writer.writeheader()
        writer.writerows(picked)
    return folder


def labelled_rows(data: Path) -> list[dict[str, str]]:
    lines = (data / "labels.csv").read_text().splitlines()
    return list(csv.DictReader(line for line in lines if not line.startswith("#")))


@pytest.fixture(scope="module")
def fourq_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 songs of 4q-dev, 6 a quadrant by 24 artists, each carrying its quadrant's tag (so that four moods can be
    learnt from so few), with their rows of labels.csv."""
    data = SHARED / "data" / "4q-dev"
    needs_shared(data)
    rows = labelled_rows(data)
    picked: list[dict[str, str]] = []
    artists: set[str] = set()
    for quadrant, tag in QUADRANT_TAGS.items():
        songs = [
            r for r in rows if r["label"] == quadrant and tag in r["tags"].split(";") and r["artist"] not in artists
        ]
        picked += songs[:6]
        artists |= {r["artist"] for r in songs[:6]}
    return write_slice(tmp_path_factory.mktemp("4q"), data, picked, "label", "song")


@pytest.fixture(scope="module")
def musemo_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 of musemo's rated fragments, 6 a quadrant, with their rows of labels.csv."""
    data = SHARED / "data" / "musemo"
    needs_shared(data)
    rows = labelled_rows(data)
    picked = [row for quadrant in QUADRANT_TAGS for row in [r for r in rows if r["quadrant"] == quadrant][:6]]
    return write_slice(tmp_path_factory.mktemp("musemo"), data, picked, "genre", "clip")


@pytest.fixture(scope="module")
def mved_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three music videos of each of mved-sample's six classes."""
    needs_shared(SHARED / "data" / "mved-sample")
    folder = tmp_path_factory.mktemp("mved")
    for source in sorted((SHARED / "data" / "mved-sample").iterdir()):
        if source.is_dir():
            (folder / source.name).mkdir()
            for video in sorted(source.glob("*.mp4"))[:3]:
                (folder / source.name / video.name).symlink_to(video)
    return folder


def tiny(name: str) -> recipes.Recipe:
    """The recipe of ``name`` for a slice: three folds, one repeat."""
    return replace(recipes.RECIPES[name], k=3, repeats=1)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the recipes run: ``4q`` (the two 4Q recipes share it: the second resumes the first's cache), ``mved``,
    ``musemo``."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def trained(work: Path, fourq_slice: Path, mved_slice: Path, musemo_slice: Path) -> dict[str, Path]:
    """Each recipe built small: its model's folder, kept in the work folder (the two 4Q recipes write theirs in turn
    into the one they share); the values model learns from the 4Q slice too, as the small 4Q recipe labels it."""
    built = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipes, "RECIPES", {name: tiny(name) for name in recipes.RECIPES})
        for name, data, where in (
            ("4q-quadrants", fourq_slice, "4q"),
            ("4q-moods", fourq_slice, "4q"),
            ("mved-classes", mved_slice, "mved"),
            (VALUES_MODEL, musemo_slice, "musemo"),
        ):
            also = {"4q-quadrants": fourq_slice}
            folder = train_recipe(tiny(name), data, work / where, also_data=also, weights_dir=WEIGHTS)
            built[name] = shutil.copytree(folder, work / f"{name}-model")
    return built


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, trained: dict[str, Path]) -> Path:
    """The small models, as `mvemo models train NAME --ship` would ship them, in a folder of shipped models."""
    shipped = tmp_path_factory.mktemp("shipped")
    for name, folder in trained.items():
        shutil.copytree(folder, shipped / name)
    return shipped


@pytest.fixture
def as_shipped(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small models stand for the shipped ones, and the recipes for the full ones."""
    monkeypatch.setattr(recipes, "SHIPPED", shipped)
    monkeypatch.setattr(recipes, "RECIPES", {name: tiny(name) for name in recipes.RECIPES})
    return shipped


def test_each_recipe_makes_a_model_of_its_kind_with_its_card(shipped: Path) -> None:
    quadrants, moods, videos, values = (load_fusion_model(shipped / n) for n in recipes.RECIPES)
    assert quadrants.outputs == ["Q1", "Q2", "Q3", "Q4"] and quadrants.default_model == "integrated-audio"
    assert quadrants.plane == {q: tuple(map(float, p)) for q, p in recipes.QUADRANT_PLANE.items()}
    assert moods.target == "tags" and len(moods.outputs) == 24 and moods.plane is None
    assert videos.outputs == ["Excited", "Fear", "Neutral", "Relaxation", "Sad", "Tension"]
    assert set(videos.inputs(videos.default_model)) >= {"i3d", "musicnn", "twodcnn"}
    assert values.outputs == ["valence", "arousal"] and values.scale == (-10, 10)
    window = values.feature_sets(values.default_model)["descriptors"]["config"]
    assert window["audio_window"]["duration_s"] == 6 and window["windows"]["hop_s"] == 6, "6-s windows, a song pooled"
    card = recipes.model_card(shipped / VALUES_MODEL)
    figures = card["figures"]
    assert set(figures) == {"musemo", "4q-dev"} and card["clips"] == {"musemo": 24, "4q-dev": 24}
    assert (
        -1 <= figures["musemo"]["ccc_valence"]["mean"] <= 1 and 0 <= figures["4q-dev"]["valence_roc_auc"]["mean"] <= 1
    )
    assert values.document["trained_on"]["4q-dev"]["learnt"], "the quadrant-labelled songs trained it"
    card = recipes.model_card(shipped / "4q-quadrants")
    assert card["recipe"]["group_by"] == "artist" and card["clips"] == 24
    assert 0 <= card["figures"]["accuracy"]["interval"][0] <= card["figures"]["accuracy"]["mean"] <= 1
    for set_name, described in quadrants.feature_sets("integrated-audio").items():
        if set_name.startswith("emb/"):
            assert len(described["weights_sha256"]) == 64, f"{set_name}: its net's published weights, by sha256"


def test_models_train_rebuilds_a_model_equal_to_the_shipped_one_and_names_a_difference(
    as_shipped: Path, fourq_slice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild runs the whole recipe again in a work folder of its own, stage one from the songs, then stage two
    (once: against a shipped copy with one head changed, which it names, the rebuilt model equal to the shipped one in
    every other value)."""
    monkeypatch.setattr(recipes, "SHIPPED", shutil.copytree(as_shipped, tmp_path / "shipped"))
    with h5py.File(recipes.SHIPPED / "4q-quadrants" / "heads.h5", "r+") as heads:
        weights = heads["head0/weights"]
        weights[0, 0] += 0.5
    command = ["models", "train", "4q-quadrants", "--data", str(fourq_slice), "--work", str(tmp_path / "rebuild")]
    rebuilt = CliRunner().invoke(cli, [*command, "--weights-dir", str(WEIGHTS)])
    assert rebuilt.exit_code == 1, rebuilt.output
    assert "differs: heads.h5: head0/weights differs by up to 0.5" in rebuilt.output
    assert "1 difference(s) from the shipped 4q-quadrants" in rebuilt.output, "the changed head alone"
    assert differences(as_shipped / "4q-quadrants", tmp_path / "rebuild" / "report" / "model") == []
    with Cache(tmp_path / "rebuild" / "cache") as cache:
        assert cache.done("emb/musicnn/all").all(), "stage one computed the songs' embeddings anew"


@pytest.mark.parametrize("name", ["4q-quadrants", "4q-moods"])
def test_predict_with_a_ready_made_name_as_with_its_folder(
    as_shipped: Path, trained: dict[str, Path], fourq_slice: Path, name: str
) -> None:
    """``--model NAME`` labels with the model its recipe built (in the recipe's work folder, not the shipped copy)."""
    song = str(next(fourq_slice.glob("Q1/*.ogg")))
    runner = CliRunner()
    by_name = runner.invoke(cli, ["predict", "--model", name, song, "--json", "--weights-dir", str(WEIGHTS)])
    by_folder = runner.invoke(cli, ["predict", str(trained[name]), song, "--json", "--weights-dir", str(WEIGHTS)])
    assert by_name.exit_code == 0 and by_folder.exit_code == 0, by_name.output + by_folder.output
    assert json.loads(by_name.stdout) == json.loads(by_folder.stdout)
    result = json.loads(by_name.stdout)[0]
    outputs = load_fusion_model(trained[name]).outputs
    assert list(result["probabilities"]) == outputs and all(0 <= p <= 1 for p in result["probabilities"].values())
    if name == "4q-quadrants":
        assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-3) and result["label"] in outputs
    listed = runner.invoke(cli, ["models", "list", "--json", "--weights-dir", str(WEIGHTS)])
    entry = next(e for e in json.loads(listed.stdout) if e["name"] == name)
    assert entry["weights"] == "all here" and entry["outputs"] == outputs and entry["computes"] == "as trained"


def test_the_shipped_4q_quadrants_labels_a_song_as_its_heads_label_the_songs_cached_rows(
    trained: dict[str, Path], work: Path
) -> None:
    """The model shipped with mvemo (not a small one standing for it), end to end on a song of 4q-dev: what predict
    gives is what its heads give on that song's rows in a cache of the recipe, computed by stage one with the very
    sets the model was trained on (the same fingerprints)."""
    saved = load_fusion_model(recipes.shipped_folder("4q-quadrants"))
    model = saved.default_model
    manifest = read_manifest(work / "4q" / "manifest.csv")
    row, clip = next((row, clip) for row, clip in enumerate(manifest.clips) if clip.label == "Q2")
    result = CliRunner().invoke(
        cli, ["predict", "--model", "4q-quadrants", str(clip.audio), "--json", "--weights-dir", str(WEIGHTS)]
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)[0]["probabilities"]
    with Cache(work / "4q" / "cache") as cache:
        assert cache.clip_ids[row] == clip.clip_id
        sets = saved.feature_sets(model)
        assert {name: cache.fingerprint(name) for name in sets} == {name: d["fingerprint"] for name, d in sets.items()}
        inputs = {name: read_input(cache, set_name)[0][[row]] for name, set_name in zip(saved.inputs(model), sets)}
    expected = saved.predict(model, inputs)[0]
    np.testing.assert_allclose([got[q] for q in saved.outputs], expected, atol=1e-4)


def test_the_shipped_values_model_reads_a_whole_song_as_its_heads_read_stage_ones_pooled_windows(
    fourq_slice: Path, tmp_path: Path
) -> None:
    """The value model shipped with mvemo, end to end on whole songs: what predict prints is what its heads give on
    each song's row in a cache that stage one computed with the model's recipe (its windows, pooled as stage one pools
    them; the same fingerprints)."""
    folder = recipes.shipped_folder(VALUES_MODEL)
    saved = load_fusion_model(folder)
    model = saved.default_model
    songs = [next(fourq_slice.glob(f"{quadrant}/*.ogg")) for quadrant in ("Q3", "Q1")]
    result = CliRunner().invoke(
        cli, ["predict", "--model", VALUES_MODEL, *map(str, songs), "--json", "--weights-dir", str(WEIGHTS)]
    )
    assert result.exit_code == 0, result.output
    got = [[row["values"][name] for name in saved.outputs] for row in json.loads(result.stdout)]
    config = recipes.recipe(VALUES_MODEL).config
    sets = saved.feature_sets(model)
    unrated = tuple(Clip(s.name, "", audio=s, fold=k, valence=0.0, arousal=0.0) for k, s in enumerate(songs))
    manifest = Manifest((), unrated, scale=saved.scale)  # a set of values, as the recipe's
    features = [name for name in sets if not name.startswith("emb/")]
    nets = [name.split("/")[1] for name in sets if name.startswith("emb/")]
    summary = extract_features(
        manifest,
        tmp_path / "cache",
        features=features,
        nets=nets,
        configs=feature_configs(config),
        windows=window_config(config),
        weights_dir=WEIGHTS,
    )
    assert not summary.failed
    with Cache(tmp_path / "cache") as cache:
        assert {name: cache.fingerprint(name) for name in sets} == {name: d["fingerprint"] for name, d in sets.items()}
        inputs = {name: read_input(cache, set_name)[0] for name, set_name in zip(saved.inputs(model), sets)}
    np.testing.assert_allclose(got, saved.predict(model, inputs), atol=1e-4)


def test_the_quadrant_timeline_draws_the_values_models_point_and_else_reads_the_quadrants(
    as_shipped: Path, fourq_slice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the values model's weights are found, each window's point on the plane is its valence and arousal (the
    whole song's: what `predict --model valence-arousal` prints, on -1..1); else the quadrants' corners weighed by
    their probabilities, the page saying which."""
    from mvemo.pipeline.predict import plane as plane_module

    song = next(fourq_slice.glob("Q3/*.ogg"))
    weights = ["--weights-dir", str(WEIGHTS)]

    def timeline(out: Path) -> tuple[str, dict[str, Any]]:
        command = ["predict", "--model", "4q-quadrants", str(song), "--timeline", "--hop", "10", "--out", str(out)]
        result = CliRunner().invoke(cli, [*command, *weights])
        assert result.exit_code == 0, result.output
        page = (out / f"{song.name}.timeline.html").read_text()
        return page, json.loads(page.split('id="timeline-data">')[1].split("</script>")[0])

    page, data = timeline(tmp_path / "values")
    values = json.loads(
        CliRunner().invoke(cli, ["predict", "--model", VALUES_MODEL, str(song), "--json", *weights]).stdout
    )[0]["values"]
    assert data["plane"]["source"] == VALUES_MODEL and f"<code>{VALUES_MODEL}</code>" in page
    assert f"read from the values model {VALUES_MODEL})" in page and "read from the quadrant probabilities)" not in page
    unit = on_unit_scale(np.array([values["valence"], values["arousal"]]), (-10.0, 10.0))
    np.testing.assert_allclose(data["plane"]["overall"], unit, atol=1e-3)
    ratings_only = shutil.copytree(as_shipped / VALUES_MODEL, tmp_path / "ratings-only")
    document = json.loads((ratings_only / "model.json").read_text())
    document["trained_on"]["4q-dev"]["learnt"] = False
    (ratings_only / "model.json").write_text(json.dumps(document))
    read, why = plane_module.values_over(ratings_only, Clip("x", "", audio=song), [], 30.0, str(WEIGHTS))
    assert read is None and "learnt from no set of quadrants" in why, "its valence would not tell sad from calm"
    monkeypatch.setattr(plane_module, "find_weights", lambda name, weights_dir: None)  # its weights are not found
    page, data = timeline(tmp_path / "quadrants")
    plane, scores = data["plane"], np.array(data["scores"])
    assert plane["source"] == "probabilities" and "read from the quadrant probabilities)" in page
    assert plane["quadrants"] == ["Q1", "Q2", "Q3", "Q4"]
    np.testing.assert_allclose(plane["valence"], scores @ np.array([1, -1, -1, 1]), atol=1e-3)
    np.testing.assert_allclose(plane["arousal"], scores @ np.array([1, 1, -1, -1]), atol=1e-3)


def test_the_values_model_reads_a_whole_song_as_6s_windows_pooled_and_draws_its_path_on_russells_plane(
    browser: Any, as_shipped: Path, fourq_slice: Path, tmp_path: Path
) -> None:
    """A 30-s song is read as 6-s windows every 6 s, their inputs pooled as stage one pools them (the values of the
    whole, as the timeline's), printed on the ratings' scale and on [-1, 1] with the quadrant; its timeline page draws
    each window on the plane."""
    song = str(next(fourq_slice.glob("Q2/*.ogg")))
    runner = CliRunner()
    common = ["predict", "--model", VALUES_MODEL, song, "--weights-dir", str(WEIGHTS)]
    values = json.loads(runner.invoke(cli, [*common, "--json"]).stdout)[0]["values"]
    timeline = runner.invoke(cli, [*common, "--timeline", "--hop", "6", "--out", str(tmp_path / "t")])
    assert timeline.exit_code == 0, timeline.output
    page = tmp_path / "t" / f"{Path(song).name}.timeline.html"
    data = json.loads(page.read_text().split('id="timeline-data">')[1].split("</script>")[0])
    assert data["kind"] == "valence,arousal" and data["scale"] == [-10, 10]
    assert data["starts"][:5] == [0, 6, 12, 18, 24] and np.diff(data["starts"]).min() > 0
    np.testing.assert_allclose(data["overall"], [values["valence"], values["arousal"]], atol=1e-3)
    table = runner.invoke(cli, common).output
    assert "valence on [-10, 10]" in table and "arousal on [-1, 1]" in table
    assert f"{values['valence'] / 10:+.2f}" in table and f"{values['arousal']:.2f}" in table
    open_page(browser, page)
    assert console_errors(browser) == []
    wait_for(browser, "return document.getElementById('plane').dataset.window", "0")
    first = data["categories"][int(quadrants(np.array(data["scores"][:1]), (-10, 10))[0])]
    assert browser.execute_script("return document.getElementById('plane').dataset.quadrant") == first


def test_a_music_video_gets_the_six_classes(as_shipped: Path, mved_slice: Path) -> None:
    video = str(next(mved_slice.glob("Sad/*.mp4")))
    result = CliRunner().invoke(
        cli, ["predict", "--model", "mved-classes", video, "--json", "--weights-dir", str(WEIGHTS)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["label"] in load_fusion_model(as_shipped / "mved-classes").outputs


def test_a_ready_made_model_whose_weights_are_absent_stops_in_one_line(
    as_shipped: Path, fourq_slice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MVEMO_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    song = str(next(fourq_slice.glob("Q1/*.ogg")))
    result = CliRunner().invoke(
        cli, ["predict", "--model", "4q-quadrants", song, "--weights-dir", str(tmp_path / "empty")]
    )
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "reads 4 weight files not found in " in result.stderr and ": musicnn_msd_musicnn.npz, " in result.stderr
    assert "get them with `mvemo weights fetch musicnn_msd_musicnn.npz`; " in result.stderr
    listed = CliRunner().invoke(cli, ["models", "list", "--weights-dir", str(tmp_path / "empty")])
    assert "missing: musicnn_msd_musicnn.npz, " in listed.output and "`mvemo weights fetch FILE`" in listed.output
