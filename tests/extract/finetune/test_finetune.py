"""Fine-tuning per fold: what trains on what, what lands in the cache, resume and determinism (CPU, seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import mvemo.extract.finetune.jobs
import mvemo.extract.finetune.study
from mvemo.cache.fingerprint import file_sha256
from mvemo.cache.read import Cache
from mvemo.extract.finetune.jobs import checkpoint_dir
from mvemo.extract.finetune.study import out_of_fold_probabilities
from mvemo.extract.finetune.train import STUDY_OPTIMIZERS, TrainConfig
from mvemo.extract.finetune.units import inner_split
from mvemo.extract.forward import CachedBatches
from mvemo.fuse.provenance import protocol
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.stage import fuse_cache
from mvemo.manifests import Clip, ConfigError, Manifest, write_manifest
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.study import study_folder
from tests.conftest import write_tiny
from tests.extract.stage_helpers import features_into, finetune_into
from tests.extract.test_features import CONFIGS

# No weights are installed for tests: the 2D CNN starts from random weights, asked for.
RANDOM = {"twodcnn": {"init": "random"}}
CONFIG = TrainConfig(finetune="last", max_epochs=2, patience=1, batch_size=4, validation_share=0.25, net_options=RANDOM)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("media")
    return [write_tiny(folder / f"{i}.wav", video=False) for i in range(12)]


@pytest.fixture
def manifest(media: list[Path]) -> Manifest:
    """12 clips, 2 classes, 3 folds of 4 (2 per class)."""
    return Manifest(
        ("a", "b"), tuple(Clip(f"c{i}", "ab"[i % 2], audio=p, fold=(i // 2) % 3) for i, p in enumerate(media))
    )


def features(manifest: Manifest, cache: Path) -> Path:
    features_into(manifest, cache, ("mel",), configs=CONFIGS)
    return cache


def test_leakfree_training_never_reads_the_test_fold(
    tmp_path: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = features(manifest, tmp_path / "c.h5")
    read: list[set[int]] = []
    train_net = mvemo.extract.finetune.jobs.train_net

    training = [False]

    def recording_train_net(*args: Any, **kwargs: Any) -> Any:
        read.append(set())
        training[0] = True
        try:
            return train_net(*args, **kwargs)
        finally:
            training[0] = False

    def recording_getitem(self: CachedBatches, i: int) -> Any:
        if training[0]:  # batches read to train or to pick the epoch; embedding every clip afterwards is the point
            read[-1].update(self.batches[i].tolist())
        return original(self, i)

    original = CachedBatches.__getitem__
    monkeypatch.setattr(mvemo.extract.finetune.jobs, "train_net", recording_train_net)
    monkeypatch.setattr(CachedBatches, "__getitem__", recording_getitem)
    summary = finetune_into(manifest, cache, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none")
    folds = np.array([c.fold for c in manifest.clips])
    assert [u.fold for u in summary.units] == [0, 1, 2, None]
    for fold, rows in zip([0, 1, 2], read):
        assert rows and not rows & set(np.flatnonzero(folds == fold).tolist()), f"fold {fold}'s clips trained its net"
    assert read[3] == set(range(12)), "the final model trains on every clip"
    with Cache(cache) as reader:
        for name in ("emb/twodcnn/fold0", "emb/twodcnn/fold1", "emb/twodcnn/fold2", "emb/twodcnn/all"):
            assert reader.done(name).all()
            config = reader.config(name)
            assert config["protocol"] == "leakfree" and config["finetune"] == "last"
            checkpoint = cache.parent / config["checkpoint"]["path"]
            assert file_sha256(checkpoint) == config["checkpoint"]["sha256"]
        assert reader.config("emb/twodcnn/all")["training"]["epochs"] == int(
            np.median([reader.config(f"emb/twodcnn/fold{k}")["result"]["epochs"] for k in range(3)])
        )
        assert not np.array_equal(reader.read_matrix("emb/twodcnn/fold0"), reader.read_matrix("emb/twodcnn/fold1"))
        assert protocol(reader) == "leakfree"


@pytest.mark.heavy
def test_same_config_and_seed_same_embeddings_and_an_interrupted_run_resumes_identically(
    tmp_path: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = features(manifest, tmp_path / "whole.h5")
    finetune_into(manifest, whole, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none")
    broken = features(manifest, tmp_path / "broken.h5")
    train_net, calls = mvemo.extract.finetune.jobs.train_net, []

    def dies_in_fold_1(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_net(*args, **kwargs)

    monkeypatch.setattr(mvemo.extract.finetune.jobs, "train_net", dies_in_fold_1)
    with pytest.raises(KeyboardInterrupt):
        finetune_into(manifest, broken, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none")
    monkeypatch.setattr(mvemo.extract.finetune.jobs, "train_net", train_net)
    resumed = finetune_into(manifest, broken, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none")
    assert [u.skipped for u in resumed.units] == [True, False, False, False]
    with Cache(whole) as a, Cache(broken) as b:
        for name in ("emb/twodcnn/fold0", "emb/twodcnn/fold1", "emb/twodcnn/fold2", "emb/twodcnn/all"):
            np.testing.assert_array_equal(a.read_matrix(name), b.read_matrix(name))
    again = finetune_into(manifest, whole, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none")
    assert all(u.skipped for u in again.units)


def test_paper_protocol_writes_one_model_under_every_fold_and_says_so(tmp_path: Path, manifest: Manifest) -> None:
    cache = features(manifest, tmp_path / "c.h5")
    summary = finetune_into(manifest, cache, ["twodcnn"], CONFIG, protocol="paper", weights_dir=tmp_path / "none")
    assert [u.fold for u in summary.units] == [None]
    with Cache(cache) as reader:
        everything = reader.read_matrix("emb/twodcnn/all")
        for k in range(3):
            np.testing.assert_array_equal(reader.read_matrix(f"emb/twodcnn/fold{k}"), everything)
            assert reader.config(f"emb/twodcnn/fold{k}")["protocol"] == "paper"
        assert protocol(reader) == "paper"


def test_cli_fine_tunes_with_the_config_files_training_tables(tmp_path: Path, manifest: Manifest) -> None:
    path = write_manifest(manifest, tmp_path / "m.csv")
    config = tmp_path / "c.toml"
    config.write_text(
        "[audio]\nduration_s = 1.0\n[train]\nmax_epochs = 1\nvalidation_share = 0.25\n"
        "[optim.twodcnn]\nname = 'adam'\nlr = 1e-4\n"
        "[net.twodcnn]\nactivation = 'elu'\n"
    )
    cache = tmp_path / "cache.h5"
    args = [
        "extract",
        str(path),
        "--cache",
        str(cache),
        "--nets",
        "twodcnn",
        "--finetune",
        "full",
        "--config",
        str(config),
    ]
    args += ["--random-init", "twodcnn"]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "emb/twodcnn/fold2: 12 clips" in result.output and "validation accuracy" in result.output
    with Cache(cache) as reader:
        train = reader.config("emb/twodcnn/fold0")["training"]["train"]
        assert train["optimizer"] == {"name": "adam", "lr": 1e-4, "momentum": 0.0} and train["max_epochs"] == 1
        assert train["net_options"] == {"activation": "elu", "init": "random"}
        assert reader.config("emb/twodcnn/fold0")["activation"] == "elu", "the config's option beats fine-tuning's ReLU"
    config.write_text("[optim.twodcnm]\nlr = 1e-4\n")  # refused before any work, even the features
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "[optim]: unknown net(s) ['twodcnm']" in result.output


@pytest.mark.heavy
def test_the_saved_fusion_model_carries_the_fine_tuned_net_and_predict_reproduces_it(
    tmp_path: Path, manifest: Manifest
) -> None:
    cache = features(manifest, tmp_path / "c.h5")
    finetune_into(manifest, cache, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none")
    _, model_dir = fuse_cache(cache, tmp_path / "out", models="twodcnn")
    shutil.rmtree(checkpoint_dir(cache))  # the model folder travels alone
    assert (model_dir / "checkpoints" / "twodcnn.pt").is_file()
    files = [str(c.audio) for c in manifest.clips]
    result = CliRunner().invoke(cli, ["predict", str(model_dir), *files, "--json"])
    assert result.exit_code == 0, result.output
    saved = load_fusion_model(model_dir)
    with Cache(cache) as reader:
        expected = saved.predict("twodcnn", {"twodcnn": reader.read_matrix("emb/twodcnn/all")})
    got = [[r["probabilities"][c] for c in manifest.classes] for r in json.loads(result.stdout)]
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("name", ["tpu", "cuda:x"])
def test_an_unknown_device_is_a_config_error(name: str) -> None:
    from mvemo.extract.forward import resolve_device
    from mvemo.manifests.errors import ConfigError

    with pytest.raises(ConfigError, match="is not a device"):
        resolve_device(name)


def test_auto_falls_back_to_an_existing_device() -> None:
    import torch

    from mvemo.extract.forward import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_out_of_fold_probabilities_train_each_fold_without_it(
    tmp_path: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = features(manifest, tmp_path / "c.h5")
    seen: list[set[int]] = []
    train_net = mvemo.extract.finetune.jobs.train_net

    def recording(net: Any, path: str, y: Any, train_rows: Any, val_rows: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(set(train_rows.tolist()) | set(val_rows.tolist()))
        return train_net(net, path, y, train_rows, val_rows, *args, **kwargs)

    monkeypatch.setattr(mvemo.extract.finetune.study, "train_net", recording)
    with Cache(cache) as reader:
        result = out_of_fold_probabilities(reader, "twodcnn", CONFIG, weights_dir=tmp_path / "none")
    rows, proba = result.rows, result.proba
    folds = np.array([c.fold for c in manifest.clips])
    assert rows.tolist() == list(range(12)) and len(seen) == 3 and sorted(result.validation) == [0, 1, 2]
    for k, used in enumerate(seen):
        assert used == set(np.flatnonzero(folds != k).tolist()), f"fold {k}: train + validation are the other folds"
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_optimizer_study_reports_each_optimizer_of_table_2_and_writes_no_embeddings(
    tmp_path: Path, manifest: Manifest
) -> None:
    path = write_manifest(manifest, tmp_path / "m.csv")
    config = tmp_path / "c.toml"
    config.write_text("[audio]\nduration_s = 1.0\n[train]\nmax_epochs = 1\nvalidation_share = 0.25\n")
    cache = tmp_path / "cache.h5"
    args = ["study", "optimizers", str(path), "--cache", str(cache), "--nets", "twodcnn", "--config", str(config)]
    args += ["--random-init", "twodcnn"]
    refused = CliRunner().invoke(cli, [*args, "--finetune", "none"])
    assert refused.exit_code == 2 and "'none' is not one of 'last', 'full'" in refused.output
    result = CliRunner().invoke(cli, [*args, "--finetune", "last", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    folder = study_folder(cache)
    document = json.loads((folder / "optimizer_study.json").read_text())
    twodcnn = document["nets"]["twodcnn"]
    assert list(twodcnn["optimizers"]) == ["adam", "sgd", "rmsprop"]
    for label, optimizer in STUDY_OPTIMIZERS["twodcnn"].items():
        r = twodcnn["optimizers"][label]
        assert r["optimizer"]["lr"] == optimizer.lr and r["inner_loss"] > 0
        assert "accuracy" not in r, "an optimizer's outer scores are never shown: they would invite choosing on them"
    chosen = twodcnn["selected"]["per_fold"]
    assert sorted(chosen) == ["0", "1", "2"]
    for k, label in chosen.items():
        losses = {name: r["inner_loss_per_fold"][k] for name, r in twodcnn["optimizers"].items()}
        assert label == min(losses, key=losses.__getitem__), f"fold {k}: the optimizer of least inner validation loss"
    assert sorted(k for r in twodcnn["optimizers"].values() for k in r["selected_in_folds"]) == [0, 1, 2]
    assert twodcnn["selected"]["clips"] == 12 and 0 <= twodcnn["selected"]["accuracy"]["mean"] <= 1
    text = (folder / "optimizer_study.md").read_text()
    assert "| twodcnn | sgd |" in text and "## Outer test folds, the selected optimizers" in text
    assert (folder / "optimizer_study.png").stat().st_size > 0
    with Cache(cache) as reader:
        assert not [name for name in reader.feature_sets() if name.startswith("emb/")]


def test_running_out_of_device_memory_names_a_smaller_batch(tmp_path: Path, manifest: Manifest) -> None:
    import torch

    from mvemo.extract.finetune.jobs import build_finetune_net
    from mvemo.extract.finetune.train import train_net
    from mvemo.manifests.errors import ConfigError

    cache = features(manifest, tmp_path / "c.h5")
    with Cache(cache) as reader:
        net, _ = build_finetune_net(reader, "twodcnn", 2, CONFIG, tmp_path / "none")

    def out_of_memory(*inputs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    net.embed = out_of_memory  # type: ignore[method-assign]
    y = np.arange(12) % 2
    with pytest.raises(ConfigError, match=r"twodcnn: out of device memory at batch size 4.*\[train\] batch_size = 2"):
        train_net(net, str(cache), y, np.arange(8), None, CONFIG, epochs=1, device=torch.device("cpu"))


def test_a_unit_with_too_few_clips_is_an_input_error_naming_it() -> None:
    y, groups = np.array([0, 1, 0]), ["g", "g", "h"]
    with pytest.raises(ConfigError, match=r"twodcnn, fold 2: 2 clips with their inputs computed, too few to train"):
        inner_split(np.array([0, 1]), y, groups, 0.25, 0, "twodcnn, fold 2")
