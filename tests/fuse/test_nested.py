"""Nested selection: every choice is made on inner folds of the outer training rows, and the outer fold only scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.h5file import seal
from mvemo.cache.sets import append_error
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.stage import fuse_cache, run_cv
from mvemo.manifests import ConfigError
from mvemo.pipeline.cli.main import cli
from tests.cache.helpers import first_segment
from tests.fuse.helpers import CLASSES, embedding_cache

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

NETS = {"onedcnn": (12, 0.5), "twodcnn": (8, 0.3), "i3d": (12, 0.5)}
INTEGRATED = "integrated(onedcnn,twodcnn,i3d)"  # the default rule over these inputs
CHOICE = "best(late(onedcnn,twodcnn,i3d),onedcnn+twodcnn+i3d,onedcnn,twodcnn,i3d)"  # the choice among fusions
MODELS = (
    "onedcnn,i3d+onedcnn,late(onedcnn,i3d,weights=inner),late(onedcnn,twodcnn,i3d,weights=trimmed),stack(onedcnn,i3d),"
    f"{CHOICE},{INTEGRATED}"
)


def test_the_outer_fold_changes_no_choice_and_none_of_its_own_predictions(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets=NETS, n_per_class=24)
    before = cross_validate(cache, models=MODELS)
    with h5py.File(cache / "clips.h5", "r+") as f:  # fold 0's clips get other labels: only the outer test fold changes
        labels = f["label"][:]
        fold0 = f["fold"][:] == 0
        labels[fold0] = (labels[fold0] + 1) % len(CLASSES)
        f["label"][:] = labels
    seal(cache / "clips.h5")  # an edit on purpose, sealed again as mvemo seals the clip table
    after = cross_validate(cache, models=MODELS)
    for name in before.predictions:
        b, a = before.predictions[name], after.predictions[name]
        assert b.choices[0] == a.choices[0], f"{name}: a choice of fold 0 moved with fold 0's labels"
        in_fold0 = b.folds == 0
        np.testing.assert_array_equal(a.rows[a.folds == 0], b.rows[in_fold0])
        np.testing.assert_allclose(a.proba[a.folds == 0], b.proba[in_fold0], err_msg=name)
    assert before.predictions["onedcnn"].choices[1] != after.predictions["onedcnn"].choices[1] or not np.allclose(
        before.predictions["onedcnn"].proba[before.predictions["onedcnn"].folds == 1],
        after.predictions["onedcnn"].proba[after.predictions["onedcnn"].folds == 1],
    ), "fold 1 trains on fold 0's labels: it must see the change (else the test proves nothing)"


def test_choices_are_recorded_per_model_and_fold(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets=NETS, n_per_class=24)
    document = run_cv(cache, tmp_path / "r", models=MODELS).document
    grid = document["config"]["selection"]["C_grid"]
    for fold_choices in document["models"]["onedcnn"]["choices"][0]:
        assert fold_choices["C"] in grid
    late = document["models"]["late(onedcnn,i3d,weights=inner)"]["choices"][0][0]
    assert sum(late["weights"]) == pytest.approx(1) and set(late["members"]) == {"onedcnn", "i3d"}
    stack = document["models"]["stack(onedcnn,i3d)"]["choices"][0][0]
    assert stack["meta"]["C"] in grid
    integrated = document["models"][CHOICE]["choices"][0][0]
    assert integrated["chosen"] in integrated["inner_scores"]
    text = (tmp_path / "r" / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| onedcnn | unimodal |"))
    assert row.count("C=") == 3, "the C of each of the 3 folds"


def test_a_choice_among_whole_models_is_scored_by_choice_scoring(tmp_path: Path) -> None:
    """The heads' settings by log-loss, the integrated model's candidates by inner accuracy: its inner scores are
    the candidates' shares of training rows predicted right, the best of them chosen."""
    from mvemo.fuse.selection import SelectionConfig

    cache = embedding_cache(tmp_path / "c.h5", nets=NETS, n_per_class=24)
    chosen_by = SelectionConfig(choice_scoring="accuracy", choice_rule="best")
    result = cross_validate(cache, models=f"onedcnn,{CHOICE}", selection=chosen_by)
    training_rows = [int(np.sum(result.repeat_folds[0] != fold)) for fold in range(3)]
    for choices, n in zip(result.repeats[0][CHOICE].choices, training_rows, strict=True):
        scores = choices["inner_scores"]
        assert all(0 <= s <= 1 and abs(s * n - round(s * n)) < 1e-9 for s in scores.values()), scores
        assert scores[choices["chosen"]] == max(scores.values())
    logged = cross_validate(cache, models=CHOICE).repeats[0][CHOICE].choices
    assert all(s < 0 for c in logged for s in c["inner_scores"].values()), "by default: the mean log-probability"
    with pytest.raises(ConfigError, match=r"\[fuse\] choice_scoring = 'auc': expected one of"):
        SelectionConfig(choice_scoring="auc")


def test_repeats_draw_new_folds_and_give_intervals(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (8, 0.6), "i3d": (8, 0.4)}, n_per_class=24)
    result = cross_validate(cache, models="onedcnn,i3d,i3d+onedcnn", repeats=3)
    assert len(result.repeats) == 3 and len(result.repeat_folds) == 3
    assert not np.array_equal(result.repeat_folds[0], result.repeat_folds[1])
    for folds in result.repeat_folds[1:]:
        assert np.bincount(folds).tolist() == [24] * 3, "stratified and balanced"
    accuracy = result.metrics["i3d+onedcnn"]["accuracy"]
    assert len(accuracy["per_repeat"]) == 3 and accuracy["mean"] == pytest.approx(np.mean(accuracy["per_repeat"]))
    assert accuracy["interval"][0] < accuracy["mean"] < accuracy["interval"][1]
    versus = result.comparison["models"]["i3d+onedcnn"]
    assert versus["won"] + versus["lost"] + versus["tied"] == 9 and len(versus["per_repeat"]) == 3


def test_repeats_are_refused_for_embeddings_fine_tuned_per_fold(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c.h5", nets={"onedcnn": (4, 1.0)}, fold_sets=(0, 1, 2), with_all=False, finetune="full"
    )
    with pytest.raises(ConfigError, match=r"--repeats 2: emb/onedcnn/fold0.*fine-tuned per fold"):
        cross_validate(cache, repeats=2)
    result = CliRunner().invoke(cli, ["cv", "--cache", str(cache), "--out", str(tmp_path / "r"), "--repeats", "2"])
    assert result.exit_code == 2 and "--repeats 2" in result.output and "Traceback" not in result.output
    assert cross_validate(cache, repeats=1).metrics["onedcnn"]["repeats"] == 1


def test_folds_default_to_the_cache_and_a_mismatch_is_an_error(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 2.0)})
    ok = CliRunner().invoke(cli, ["cv", "--cache", str(cache), "--out", str(tmp_path / "r"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["folds"] == 3
    wrong = CliRunner().invoke(cli, ["cv", "--folds", "6", "--cache", str(cache), "--out", str(tmp_path / "r")])
    assert wrong.exit_code == 2 and "use --folds 3" in wrong.output


def test_oof_csv_has_a_row_per_model_repeat_and_clip(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 1.0), "i3d": (4, 1.0)}, n_per_class=12)
    document = run_cv(cache, tmp_path / "r", models="onedcnn,late(onedcnn,i3d)", repeats=2).document
    with (tmp_path / "r" / document["oof_predictions"]).open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "model",
        "repeat",
        "clip_id",
        "group",
        "fold",
        "true",
        "predicted",
        *(f"p_{c}" for c in CLASSES),
    ]
    assert len(rows) == 2 * 2 * 36
    for model in ("onedcnn", "late(onedcnn,i3d)"):
        for repeat in ("0", "1"):
            clips = [r["clip_id"] for r in rows if r["model"] == model and r["repeat"] == repeat]
            assert sorted(clips) == sorted(f"c{i}" for i in range(36)), "every clip once per model and repeat"
    for r in rows:
        probabilities = [float(r[f"p_{c}"]) for c in CLASSES]
        assert (
            sum(probabilities) == pytest.approx(1, abs=1e-5)
            and r["predicted"] == CLASSES[int(np.argmax(probabilities))]
        )


def test_a_left_out_clip_is_counted_with_its_reason(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 2.0), "i3d": (4, 2.0)}, n_per_class=12)
    with h5py.File(first_segment(cache, "emb/i3d/all"), "r+") as f:  # clip c5's i3d embedding failed
        f["status"][5] = 2
    append_error(cache, "emb/i3d/all", "c5", "clip c5: its video track cannot be decoded")
    document = run_cv(cache, tmp_path / "r", models="onedcnn,i3d,i3d+onedcnn").document
    clips = document["clips"]
    assert clips["total"] == 36 and clips["models"]["onedcnn"]["used"] == 36
    for model in ("i3d", "i3d+onedcnn"):
        assert clips["models"][model]["used"] == 35
        (left,) = clips["models"][model]["left_out"]
        assert left["clip_id"] == "c5" and "its video track cannot be decoded" in left["reason"]
        assert document["models"][model]["n_rows"] == 35
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| c5 | i3d, i3d+onedcnn | emb/i3d/all failed: clip c5: its video track cannot be decoded |" in text


def test_the_saved_model_predicts_as_its_tree_does(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets=NETS, n_per_class=18)
    document, folder = fuse_cache(cache, tmp_path / "out", models=MODELS)
    saved = load_fusion_model(folder)
    assert saved.document["default_model"] == INTEGRATED
    assert saved.document["models"][INTEGRATED]["model"]["kind"] == "late"
    from mvemo.cache.read import Cache

    with Cache(cache) as reader:
        inputs = {net: reader.read_matrix(f"emb/{net}/all") for net in NETS}
        y = reader.y
    for name in document["models"]:
        proba = saved.predict(name, inputs)
        assert proba.shape == (54, 3) and np.allclose(proba.sum(axis=1), 1)
        assert np.mean(proba.argmax(axis=1) == y) > 0.6, f"{name}: trained on every clip, it fits them"
    stack = saved.document["models"]["stack(onedcnn,i3d)"]["model"]
    assert stack["kind"] == "stack" and [m["inputs"] for m in stack["members"]] == [["onedcnn"], ["i3d"]]
    chosen = saved.document["models"][CHOICE]["model"]
    assert chosen["kind"] == "best" and chosen["scores"]
    late = saved.document["models"]["late(onedcnn,i3d,weights=inner)"]["model"]
    parts = [saved.fitted["late(onedcnn,i3d,weights=inner)"].members[i].proba(inputs) for i in range(2)]
    np.testing.assert_allclose(
        saved.predict("late(onedcnn,i3d,weights=inner)", inputs), np.tensordot(late["weights"], parts, axes=1)
    )
    trimmed = "late(onedcnn,twodcnn,i3d,weights=trimmed)"
    record = saved.document["models"][trimmed]["model"]
    kept = [m["inputs"][0] for m in record["members"]]
    assert record["rule"] == "trimmed" and sorted([*kept, *record["dropped"]]) == ["i3d", "onedcnn", "twodcnn"]
    assert record["weights"] == pytest.approx([1 / len(kept)] * len(kept)), "equal weights over the members kept"
    assert set(saved.fitted[trimmed].inputs()) == set(kept), "predict reads the members kept alone"


def test_composites_nest_with_heads_of_fixed_settings(tmp_path: Path) -> None:
    from mvemo.fuse.heads.families import make_head

    cache = embedding_cache(tmp_path / "c.h5", nets=NETS, n_per_class=18)
    models = [
        "best(late(onedcnn,twodcnn),onedcnn)",
        "stack(late(onedcnn,i3d),onedcnn)",
        "late(late(onedcnn,i3d),twodcnn,weights=inner)",
    ]
    result = cross_validate(cache, models=",".join(models), head=make_head(C=1.0))
    assert list(result.metrics) == models
    assert all(p.choices[0] for p in result.predictions.values())


def test_a_class_with_one_group_in_a_training_fold_is_named_with_the_fix(tmp_path: Path) -> None:
    folds = [i % 2 for i in range(6)]  # 2 clips per class, one in each fold: training folds hold one group per class
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 1.0)}, n_per_class=2, folds=folds, k=2)
    with pytest.raises(ConfigError, match=r"onedcnn, fold 0: class '(calm|sad|tense)' has fewer than 2 groups.*--k"):
        cross_validate(cache)


def test_a_repeat_never_repeats_the_manifests_split(tmp_path: Path) -> None:
    from mvemo.cache.read import Cache
    from mvemo.manifests.folds import draw_folds

    with Cache(embedding_cache(tmp_path / "a" / "c.h5", nets={"onedcnn": (4, 1.0)}, n_per_class=6)) as reader:
        seed_one = draw_folds(reader.y, reader.groups, k=3, seed=1).tolist()
    cache = embedding_cache(tmp_path / "b" / "c.h5", nets={"onedcnn": (4, 1.0)}, n_per_class=6, folds=seed_one)
    result = cross_validate(cache, repeats=3)
    splits = {frozenset(frozenset(np.flatnonzero(f == k).tolist()) for k in range(3)) for f in result.repeat_folds}
    assert len(splits) == 3, "the manifest's folds were drawn with seed 1: repeat 1 takes another seed"


def test_a_set_of_tag_probabilities_gives_each_clips_top_tags(tmp_path: Path) -> None:
    from mvemo.cache.layout import FeatureSpec
    from mvemo.cache.store import CacheWriter
    from mvemo.manifests import Clip, Manifest

    media = tmp_path / "media"
    media.mkdir()
    clips = []
    for i in range(12):
        (media / f"{i}.wav").write_bytes(bytes([i]))
        clips.append(Clip(f"c{i}", CLASSES[i % 3], audio=media / f"{i}.wav", fold=(i // 3) % 2))
    tags = ("rock", "jazz", "sad", "happy")
    proba = np.tile(np.array([0.1, 0.9, 0.5, 0.2], dtype=np.float32), (12, 1))
    proba[:, 0] += np.arange(12) / 10  # rock rises clip by clip
    spec = FeatureSpec(
        "emb/musicnn/all",
        (4,),
        "float32",
        "t",
        "1",
        {"layer": "taggram"},
        "sha",
        columns=tuple(f"{t} (mean)" for t in tags),
    )
    cache = tmp_path / "c.h5"
    with CacheWriter(cache, Manifest(CLASSES, tuple(clips))) as writer:
        writer.prepare([spec])
        writer.write("emb/musicnn/all", range(12), proba)
    document = run_cv(cache, tmp_path / "r", models="musicnn").document
    with (tmp_path / "r" / document["tags"]).open() as f:
        rows = list(csv.DictReader(f))
    assert rows[0] == {"clip_id": "c0", "emb/musicnn/all": "jazz 0.90; sad 0.50; happy 0.20"}
    assert rows[11]["emb/musicnn/all"] == "rock 1.20; jazz 0.90; sad 0.50"
    assert "top Million Song Dataset tags: [tags.csv]" in (tmp_path / "r" / "report.md").read_text()
