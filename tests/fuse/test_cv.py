from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.base import clone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score
from sklearn.utils.estimator_checks import check_estimator

import mvemo.fuse.loop
from mvemo.cache.read import Cache
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.heads.families import LdaHead, PcaLogisticHead, SvmHead, make_head
from mvemo.fuse.heads.linear import LogisticHead, SoftmaxHead
from mvemo.fuse.models import available_models
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.stage import run_cv
from mvemo.manifests import CacheError, ConfigError, Manifest
from mvemo.manifests.folds import inner_split
from mvemo.manifests.shared_optimizers import make_optimizer
from mvemo.pipeline.cli.main import cli
from tests.cache.helpers import first_segment
from tests.fuse.helpers import embedding_cache

AV_NETS = {"onedcnn": (16, 1.5), "twodcnn": (12, 0.0), "c3d": (10, 0.0), "i3d": (8, 1.5)}


@pytest.mark.heavy
@pytest.mark.parametrize(
    "head", [LogisticHead(), SoftmaxHead(lr=0.01, l2=1e-3, max_epochs=100), LdaHead(), PcaLogisticHead(), SvmHead()]
)
def test_heads_follow_the_estimator_contract(head) -> None:
    check_estimator(head)


def test_separable_classes_are_learned_and_noise_is_chance(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (8, 4.0), "i3d": (8, 0.0)}, n_per_class=40)
    result = cross_validate(cache, models="onedcnn,i3d")
    assert result.metrics["onedcnn"]["accuracy"]["mean"] > 0.95
    assert abs(result.metrics["i3d"]["accuracy"]["mean"] - 1 / 3) < 0.15
    assert result.metrics["onedcnn"]["roc_auc_macro"] > 0.99


def test_metrics_equal_scikit_learn_on_the_same_predictions(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (6, 0.7)})
    result = cross_validate(cache)
    p = result.predictions["onedcnn"]
    metrics = result.metrics["onedcnn"]
    pred = p.proba.argmax(axis=1)
    assert metrics["f1_macro"] == pytest.approx(f1_score(p.y, pred, average="macro"))
    assert metrics["roc_auc_macro"] == pytest.approx(roc_auc_score(p.y, p.proba, multi_class="ovr"))
    assert metrics["confusion"] == confusion_matrix(p.y, pred).tolist()
    per_fold = [accuracy_score(p.y[p.folds == k], pred[p.folds == k]) for k in range(3)]
    assert metrics["accuracy"]["per_fold"] == pytest.approx(per_fold)
    assert metrics["accuracy"]["min"] == pytest.approx(min(per_fold)) and metrics["accuracy"]["max"] == pytest.approx(
        max(per_fold)
    )
    assert sorted(p.rows.tolist()) == list(range(90)), "every clip is predicted exactly once"


class SpyHead(LogisticHead):
    """Records the training rows each fit sees (their first feature is the row id)."""

    seen: ClassVar[list[set[int]]] = []

    def fit(self, X, y):
        SpyHead.seen.append({round(float(v)) for v in X[:, 0]})
        return super().fit(X, y)


def test_the_test_fold_never_reaches_fit(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 1.0)}, fold_sets=(0, 1, 2), with_all=False)
    with Cache(cache) as reader:
        folds = reader.folds
    import h5py

    for k in range(3):  # stamp each row's id into feature 0 (checksums are not re-read here)
        with h5py.File(first_segment(cache, f"emb/onedcnn/fold{k}"), "r+") as f:
            data = f["data"]
            values = data[:]
            values[:, 0] = np.arange(len(values))
            data[:] = values
    SpyHead.seen = []
    cross_validate(cache, head=SpyHead())
    assert len(SpyHead.seen) == 3
    for k, rows in enumerate(SpyHead.seen):
        assert rows == set(np.flatnonzero(folds != k).tolist())


@pytest.mark.heavy
def test_models_adapt_to_the_cache_and_integrated_is_compared(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets=AV_NETS)
    with Cache(cache) as reader:
        models = {m.name: m for m in available_models(reader)}
    assert list(models) == [
        "onedcnn",
        "twodcnn",
        "c3d",
        "i3d",
        "c3d+onedcnn",
        "i3d+onedcnn",
        "c3d+twodcnn",
        "i3d+twodcnn",
        "integrated",
        "integrated-decision",
    ]
    assert models["integrated"].node.expr == "late(onedcnn,twodcnn,c3d,i3d)"
    assert models["integrated-decision"].node.expr == "late(c3d+onedcnn,i3d+onedcnn,c3d+twodcnn,i3d+twodcnn)"
    weak = {"onedcnn": (16, 0.45), "twodcnn": (12, 0.0), "c3d": (10, 0.0), "i3d": (16, 0.45)}  # each alone ~70 %
    result = cross_validate(embedding_cache(tmp_path / "w" / "c.h5", nets=weak, n_per_class=40))
    assert result.comparison["reference"] == "onedcnn", "the first unimodal model listed, named before scoring"
    versus = result.comparison["models"]["integrated"]
    assert versus["mean"] > 0.05 and versus["won"] == 3, "two informative nets fused beat either alone on every fold"
    audio_only = embedding_cache(tmp_path / "a.h5", nets={"onedcnn": (4, 1.0), "twodcnn": (4, 1.0)})
    with Cache(audio_only) as reader:
        assert [m.name for m in available_models(reader)] == ["onedcnn", "twodcnn", "integrated-audio"]


def test_a_report_into_the_same_folder_leaves_no_plot_of_the_earlier_one(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 1.0), "twodcnn": (4, 1.0)}, n_per_class=6)
    out = tmp_path / "r"
    run_cv(cache, out, models="onedcnn,twodcnn")
    (out / "mine.png").write_bytes(b"the user's own")
    assert (out / "confusion_twodcnn.png").is_file()
    run_cv(cache, out, models="onedcnn")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["confusion_onedcnn.png", "mine.png", "models.png", "roc.png"], (
        "only the earlier report's own plots go"
    )


@pytest.mark.heavy
def test_random_init_embeddings_stay_out_of_default_fusions_unless_named(tmp_path: Path) -> None:
    nets = {"onedcnn": (4, 1.0), "twodcnn": (4, 1.0), "i3d": (4, 1.0)}
    cache = embedding_cache(tmp_path / "c.h5", nets=nets, weights={"onedcnn": ""})
    with Cache(cache) as reader:
        models = {m.name: m for m in available_models(reader)}
    assert set(models) == {"onedcnn", "twodcnn", "i3d", "i3d+twodcnn", "integrated"}
    assert "onedcnn" not in models["integrated"].inputs
    result = cross_validate(cache)
    assert any(note.startswith("onedcnn: embeddings of random weights") for note in result.notes)
    named = cross_validate(cache, models="onedcnn+twodcnn,late(onedcnn,i3d)")
    assert set(named.metrics) == {"onedcnn+twodcnn", "late(onedcnn,i3d)"}


def test_folds_and_missing_embeddings_are_input_errors(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 1.0)})
    with pytest.raises(ConfigError, match=r"--folds 6: the cache holds the manifest's 3 folds.*use --folds 3"):
        cross_validate(cache, n_folds=6)
    with pytest.raises(ConfigError, match=r"'i3d' cannot be built from this cache \(it has onedcnn\).*--nets i3d`"):
        cross_validate(cache, models="i3d+twodcnn")
    result = CliRunner().invoke(cli, ["cv", "--folds", "6", "--cache", str(cache), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "use --folds 3" in result.output


def test_a_fold_never_reads_embeddings_that_trained_on_it(tmp_path: Path) -> None:
    trained_on_all = embedding_cache(tmp_path / "a" / "c.h5", nets={"onedcnn": (4, 1.0)}, finetune="full")
    with pytest.raises(CacheError, match=r"lacks emb/onedcnn/fold0, and emb/onedcnn/all was fine-tuned on every clip"):
        cross_validate(trained_on_all)
    unfinished = embedding_cache(tmp_path / "b" / "c.h5", nets={"onedcnn": (4, 1.0)}, fold_sets=(0, 1))
    with pytest.raises(
        CacheError, match=r"onedcnn: fine-tuned for 2 of 3 folds; .* --nets onedcnn --finetune last\|full`"
    ):
        cross_validate(unfinished)
    with pytest.raises(CacheError, match=r"lacks emb/onedcnn/fold2 while other folds of onedcnn are fine-tuned"):
        cross_validate(unfinished, models="onedcnn")
    untrained = embedding_cache(tmp_path / "c" / "c.h5", nets={"onedcnn": (4, 3.0)})
    assert cross_validate(untrained).metrics["onedcnn"]["accuracy"]["mean"] > 0.9


def test_a_run_reads_each_set_once_and_holds_one_fold_s_sets_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """A set every fold reads (clip-level descriptors, a frozen net's) is read once for the whole run, over all
    its repeats; a fine-tuned net's fold sets once each, dropped when the next fold does not read them."""
    reads, held = [], []
    read_input = mvemo.fuse.loop.read_input

    def spy(reader: Cache, set_name: str):
        reads.append(set_name)
        held.append(len(mvemo.fuse.loop._RUN["matrices"]))
        return read_input(reader, set_name)

    monkeypatch.setattr(mvemo.fuse.loop, "read_input", spy)
    descriptors = {"descriptors": (5, 1.0)}
    fine_tuned = embedding_cache(
        tmp_path / "a" / "c.h5", nets={"onedcnn": (4, 1.0)}, fold_sets=(0, 1, 2), vectors=descriptors
    )
    cross_validate(fine_tuned, models="onedcnn+descriptors,descriptors")
    assert sorted(reads) == ["descriptors", "emb/onedcnn/fold0", "emb/onedcnn/fold1", "emb/onedcnn/fold2"], reads
    assert max(held) <= 2, "never more than one fold's sets held while the next one's are read"
    assert mvemo.fuse.loop._RUN["matrices"] == {}, "the run's matrices are dropped when it ends"
    reads.clear()
    frozen = embedding_cache(tmp_path / "b" / "c.h5", nets={"onedcnn": (4, 1.0)}, vectors=descriptors)
    cross_validate(frozen, models="onedcnn+descriptors", repeats=2)
    assert sorted(reads) == ["descriptors", "emb/onedcnn/all"], reads


@pytest.mark.heavy
def test_a_fold_without_a_class_and_a_net_without_rows_are_reported(tmp_path: Path) -> None:
    n = 30 * 3
    folds = [0 if i % 3 == 2 else (i // 3) % 3 for i in range(n)]  # every "tense" clip in fold 0
    nets = {"onedcnn": (4, 3.0), "i3d": (4, 3.0)}
    cache = embedding_cache(tmp_path / "c.h5", nets=nets, folds=folds, failed_sets=("emb/i3d/all",))
    result = cross_validate(cache, models="onedcnn,i3d")
    assert "onedcnn, fold 0: no training clip of class tense, predicted with probability 0" in result.notes
    assert result.unscored == {"i3d": "no clip has all its inputs in the cache (see the clips table)"}
    assert set(result.metrics) == {"onedcnn"}
    tense = result.predictions["onedcnn"].y == 2
    assert not np.any(np.argmax(result.predictions["onedcnn"].proba[tense], axis=1) == 2)
    report = CliRunner().invoke(
        cli, ["cv", "--cache", str(cache), "--out", str(tmp_path / "r"), "--models", "onedcnn,i3d"]
    )
    assert report.exit_code == 0, report.output
    assert "note: onedcnn, fold 0: no training clip of class tense" in report.output
    assert "## Notes" in (tmp_path / "r" / "report.md").read_text()
    fused = CliRunner().invoke(cli, ["fuse", str(cache), "--out", str(tmp_path / "f"), "--models", "onedcnn,i3d"])
    assert fused.exit_code == 0, fused.output
    assert set(json.loads((tmp_path / "f" / "model" / "model.json").read_text())["models"]) == {"onedcnn"}


def test_a_run_that_scores_no_model_says_why_in_one_line(tmp_path: Path) -> None:
    def one_class(manifest: Manifest) -> Manifest:  # every clip labelled with the first class: nothing to learn
        return Manifest(
            manifest.classes, tuple(dataclasses.replace(c, label=manifest.classes[0]) for c in manifest.clips)
        )

    cache = embedding_cache(tmp_path / "c.h5", nets={"i3d": (4, 3.0)}, n_per_class=4, retarget=one_class)
    report = CliRunner().invoke(cli, ["cv", "--cache", str(cache), "--out", str(tmp_path / "r"), "--models", "i3d"])
    assert report.exit_code == 2 and report.output.startswith("cli: error: no model scored a clip"), report.output
    assert "(i3d: fold 0: no training clip of class " in report.output and len(report.output.splitlines()) == 1


@pytest.mark.heavy
def test_cv_and_fuse_write_reports_pictures_and_a_model(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets=AV_NETS, protocol="paper")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["fuse", str(cache), "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "report.json").read_text())
    assert (
        document["protocol"] == "paper" and document["folds"] == 3 and document["classes"] == ["calm", "sad", "tense"]
    )
    assert {"accuracy", "f1_macro", "roc_auc_macro", "confusion"} <= set(document["models"]["i3d+twodcnn"])
    assert set(document["models"]["integrated"]["accuracy"]) >= {"min", "mean", "max", "per_fold"}
    assert "WARNING: protocol `paper`" in (out / "report.md").read_text()
    for png in [out / "roc.png", *out.glob("confusion_*.png")]:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300
    assert len(list(out.glob("confusion_*.png"))) == len(document["models"])
    model = load_fusion_model(out / "model")
    assert model.classes == ["calm", "sad", "tense"]
    assert model.document["protocol"] == "paper"
    with Cache(cache) as reader:
        inputs = {net: reader.read_matrix(f"emb/{net}/all") for net in AV_NETS}
        y = reader.y
    proba = model.predict("integrated", inputs)
    assert proba.shape == (90, 3) and np.allclose(proba.sum(axis=1), 1)
    assert np.mean(proba.argmax(axis=1) == y) > 0.8, "trained on every clip, it fits them"
    decision = model.predict("integrated-decision", inputs)
    assert np.allclose(
        decision,
        np.mean(
            [model.predict(p, inputs) for p in ("c3d+onedcnn", "i3d+onedcnn", "c3d+twodcnn", "i3d+twodcnn")],
            axis=0,
        ),
    )


def test_cv_json_is_the_report_document(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 2.0)})
    result = CliRunner().invoke(
        cli, ["cv", "--folds", "3", "--cache", str(cache), "--out", str(tmp_path / "r"), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["models"]["onedcnn"]["accuracy"]["mean"] > 0.8 and document["version"]


def test_a_saved_model_is_never_unpickled(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=r"holds no saved fusion model"):
        load_fusion_model(tmp_path)


def test_clone_keeps_head_parameters() -> None:
    head = SoftmaxHead(optimizer="sgd", lr=0.01)
    assert clone(head).get_params() == head.get_params()


def test_two_classes_have_a_roc_auc_too() -> None:
    from mvemo.fuse.metrics import summarize

    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    proba = rng.dirichlet([1, 1], size=20)
    metrics = summarize(y, proba, np.arange(20) % 2, 2)
    assert metrics["roc_auc_macro"] == pytest.approx(roc_auc_score(y, proba[:, 1]))


@pytest.mark.heavy
def test_the_config_file_sets_the_head_and_its_optimizer(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 4.0)})
    config = tmp_path / "head.toml"
    config.write_text('[head]\nname = "softmax"\noptimizer = "sgd"\nlr = 0.05\nmax_epochs = 30\n')
    args = [
        "cv",
        "--folds",
        "3",
        "--cache",
        str(cache),
        "--out",
        str(tmp_path / "r"),
        "--config",
        str(config),
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["head"] == "softmax"
    assert document["config"]["head_params"] == {"optimizer": "sgd", "lr": 0.05, "max_epochs": 30}
    assert document["models"]["onedcnn"]["accuracy"]["mean"] > 0.9
    overridden = CliRunner().invoke(cli, [*args, "--head", "logistic"])
    assert (
        overridden.exit_code == 2
        and "[head] logistic: unknown parameter(s) ['lr', 'max_epochs', 'optimizer']" in overridden.output
    )
    config.write_text('[head]\nname = "softmax"\nlearning_rate = 0.05\n')
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "[head] softmax: unknown parameter(s) ['learning_rate']" in result.output
    for table, message in [
        ("lr = -1", "[head] softmax: lr = -1; expected a number > 0"),
        ('optimizer = "lbfgs"', "[head] softmax: optimizer = 'lbfgs'; expected one of ('adam', 'sgd', 'rmsprop')"),
        ("batch_size = 0", "[head] softmax: batch_size = 0; expected an integer >= 1"),
        ('val_fraction = "0.1"', "[head] softmax: val_fraction = '0.1'; expected a share in (0, 0.5)"),
    ]:
        config.write_text(f'[head]\nname = "softmax"\n{table}\n')
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and message in result.output, result.output
    with pytest.raises(ConfigError, match=r"\[head\] logistic: C = -1.0; expected a number > 0"):
        make_head("logistic", C=-1.0)


@pytest.mark.heavy
@pytest.mark.parametrize(("finetune", "random"), [("none", False), ("full", False), ("none", True)])
def test_the_report_speaks_of_nets_seen_in_training_only_when_they_were_fine_tuned(
    tmp_path: Path, finetune: str, random: bool
) -> None:
    folds = (0, 1, 2) if finetune != "none" else ()
    weights = {"onedcnn": ""} if random else None
    cache = embedding_cache(
        tmp_path / "c.h5", nets={"onedcnn": (4, 1.0)}, fold_sets=folds, finetune=finetune, weights=weights
    )
    document = run_cv(cache, tmp_path / "r", models="onedcnn").document
    text = " ".join((tmp_path / "r" / "report.md").read_text().split())
    assert document["fine_tuned_nets"] == ([] if finetune == "none" else ["onedcnn"])
    assert ("have seen in training" in text) == (finetune != "none")
    assert ("used as they are" in text) == (finetune == "none")
    assert ("used as they are (onedcnn from seeded random weights: see Provenance)" in text) == random


def test_a_missing_model_names_the_extract_option_that_computes_its_inputs(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (4, 1.0)})
    with pytest.raises(ConfigError, match=r"'lldstats' cannot be built.*--cache \S+ --features lld`"):
        cross_validate(cache, models="lldstats")
    with pytest.raises(ConfigError, match=r"'c3d' cannot be built.*--nets c3d`"):
        cross_validate(cache, models="c3d+twodcnn")


def test_the_softmax_head_validates_on_whole_groups_it_never_trained_on(monkeypatch) -> None:
    import mvemo.fuse.heads.linear

    splits = []

    def recording(y, groups, **kwargs):
        split = inner_split(y, groups, **kwargs)
        splits.append((groups, *split))
        return split

    monkeypatch.setattr(mvemo.fuse.heads.linear, "inner_split", recording)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    X = rng.standard_normal((60, 4)) + y[:, None]
    groups = [f"song{i // 3}" for i in range(60)]
    SoftmaxHead(lr=1e-2, l2=1e-3, max_epochs=5).fit(X, y, groups=groups)
    ((seen, train, val),) = splits
    assert seen == groups and not {groups[i] for i in train} & {groups[i] for i in val}
    steps = []

    def counting(*args, **kwargs):
        optimizer = make_optimizer(*args, **kwargs)
        optimizer.register_step_post_hook(lambda *_: steps.append(1))
        return optimizer

    monkeypatch.setattr(mvemo.fuse.heads.linear, "make_optimizer", counting)
    one_group = SoftmaxHead(lr=1e-2, l2=1e-3, max_epochs=5, patience=1, batch_size=64).fit(X, y, groups=["all"] * 60)
    assert len(splits) == 1, "one group: no split drawn"
    assert len(steps) == 5, "one group: max_epochs epochs of one batch each, without early stopping"
    assert one_group.predict(X).shape == (60,)


@pytest.mark.heavy
def test_a_clip_level_feature_set_is_an_input_that_composes_like_an_embedding(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"twodcnn": (8, 0.0)}, vectors={"descriptors": (12, 1.5)})
    with Cache(cache) as reader:
        models = {m.name: m for m in available_models(reader)}
    assert {"twodcnn", "descriptors", "integrated-audio"} <= set(models)
    assert "descriptors" in models["integrated-audio"].inputs
    result = cross_validate(cache, models="descriptors,twodcnn,twodcnn+descriptors,late(twodcnn,descriptors)")
    accuracy = {name: m["accuracy"]["mean"] for name, m in result.metrics.items()}
    assert accuracy["descriptors"] > 0.8 and accuracy["twodcnn"] < 0.6  # only the descriptors carry the classes
    assert accuracy["twodcnn+descriptors"] > 0.7
    with pytest.raises(ConfigError, match=r"'egemaps' cannot be built.*--features egemaps` for a feature set"):
        cross_validate(cache, models="egemaps")
