"""CLAP (``--nets clap``) on a tiny randomly initialised ClapModel that transformers builds from a config and saves as a
checkpoint folder, so that the real loading code runs: its windows, its refusals, ``weights fetch``, and extract -> cv
-> predict. No accuracy of the published checkpoint is measured here (it cannot be downloaded on these machines)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.extract.finetune.train import TrainConfig
from mvemo.extract.nets import get_net
from mvemo.extract.stage import extract_features
from mvemo.extract.weights.registry import WeightsError, find_weights, sha256_of
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests import CacheError, Clip, ConfigError, Manifest
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.config import net_config
from tests.pipeline.helpers import synthetic_manifest

clap = pytest.importorskip("transformers.models.clap", reason="CLAP runs on transformers: pip install 'mvemo[clap]'")
transformers = pytest.importorskip("transformers")

CHECKPOINT = "larger_clap_music"
SR = 48000
WINDOW_S = 1  # the tiny processor's max_length_s: a few windows a clip


def write_tiny_clap(folder: Path, *, fused: bool = True, processor_fused: bool | None = None) -> Path:
    """A ClapModel of the published one's classes, tiny and randomly initialised (seed 0), with its processor, saved
    as transformers saves the published checkpoint: ``fused`` as the fusion checkpoints (their processor's
    ``truncation = "fusion"``: four channels of htk mel), else as the others (``rand_trunc``: one channel of Slaney
    mel); ``processor_fused`` gives it the other kind's processor."""
    config = clap.ClapConfig(
        text_config={
            "vocab_size": 99,
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 16,
            "max_position_embeddings": 64,
        },
        audio_config={
            "spec_size": 64,
            "window_size": 4,
            "num_mel_bins": 16,
            "patch_embeds_hidden_size": 8,
            "depths": [1, 1],
            "num_attention_heads": [1, 1],
            "hidden_size": 16,
            "enable_fusion": fused,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    clap.ClapModel(config).save_pretrained(folder)
    truncation = "fusion" if (fused if processor_fused is None else processor_fused) else "rand_trunc"
    processor = clap.ClapFeatureExtractor(
        feature_size=16, sampling_rate=SR, max_length_s=WINDOW_S, truncation=truncation
    )
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    write_tiny_clap(folder / CHECKPOINT)
    return folder


def reference_embedding(folder: Path, y: np.ndarray) -> np.ndarray:
    """CLAP's own route, window by window: ``ClapModel.get_audio_features`` of the processor's features of each
    whole window of the clip's sound, the last one ending where the sound ends (unfused, as LAION-CLAP embeds audio of
    at most one window), then their mean."""
    model = clap.ClapModel.from_pretrained(folder).eval()
    processor = clap.ClapFeatureExtractor.from_pretrained(folder)
    step = WINDOW_S * SR
    end = int(np.flatnonzero(y)[-1]) + 1
    windows = (
        [y[:end]] if end <= step else [y[i : i + step] for i in range(0, end - step, step)] + [y[end - step : end]]
    )
    embeddings = []
    for window in windows:
        features = processor(window, sampling_rate=SR, return_tensors="pt")["input_features"]
        with torch.no_grad():
            output = model.get_audio_features(input_features=features, is_longer=torch.tensor([[False]]))
        embeddings.append(output.pooler_output[0].numpy())
    return np.mean(embeddings, axis=0)


@pytest.mark.parametrize("fused", [True, False], ids=["fusion-checkpoint", "unfused-checkpoint"])
def test_a_clip_is_the_mean_of_its_whole_windows_as_clap_model_embeds_them(fused: bool, tmp_path: Path) -> None:
    """Four clips of one batch (2.5 windows of sound then the cache's zero padding; 4 windows; half a window;
    silence) equal CLAP's own window-by-window route, whatever else is in the batch, and numpy's global random state
    is left alone."""
    folder = write_tiny_clap(tmp_path / CHECKPOINT, fused=fused)
    rng = np.random.default_rng(0)
    batch = np.zeros((4, 4 * SR), dtype=np.float16)
    batch[0, : int(2.5 * SR)] = rng.normal(0, 0.1, int(2.5 * SR))
    batch[1] = rng.normal(0, 0.1, 4 * SR)
    batch[2, : SR // 2] = rng.normal(0, 0.1, SR // 2)
    net = get_net("clap", num_classes=2, weights=folder).eval()
    assert net.embedding_dim == 16 and net.weights_sha256 == sha256_of(folder)
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    with torch.no_grad():
        features, window_of_sound = net.prepare(batch)
        embedded = net.embed(features, window_of_sound).numpy()
        alone = net.embed(*net.prepare(batch[:1])).numpy()
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert window_of_sound.tolist() == [[True, True, True, False], [True] * 4, [True, False, False, False], [True] * 4]
    for row in (0, 1, 2):
        expected = reference_embedding(folder, batch[row].astype(np.float32))
        np.testing.assert_allclose(embedded[row], expected, atol=1e-5, err_msg=f"clip {row}")
    np.testing.assert_allclose(alone[0], embedded[0], atol=1e-6)
    assert np.isfinite(embedded[3]).all(), "a silent clip is windows of silence"


def test_a_checkpoint_that_would_leave_weights_random_or_does_not_fit_its_processor_is_refused(
    weights: Path, tmp_path: Path
) -> None:
    broken = shutil.copytree(weights / CHECKPOINT, tmp_path / CHECKPOINT)
    state = {
        k: v for k, v in clap.ClapModel.from_pretrained(broken).state_dict().items() if "audio_projection" not in k
    }
    for file in broken.glob("model*.safetensors"):
        file.unlink()
    clap.ClapModel.from_pretrained(weights / CHECKPOINT).save_pretrained(broken, state_dict=state)
    with pytest.raises(WeightsError, match=r"holds no weights for \['audio_projection"):
        get_net("clap", num_classes=2, weights=broken)
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(WeightsError, match="lacks one of those files"):
        get_net("clap", num_classes=2, weights=broken)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-model", "unfused-model"])
def test_a_processor_whose_truncation_does_not_fit_the_models_fusion_is_refused(fused: bool, tmp_path: Path) -> None:
    """A fused model given one-channel Slaney mels would read channel 0 as four-channel fusion mels and embed wrongly
    without a shape error; an unfused one given fusion mels would fail later. Both are refused at load, in one line."""
    mixed = write_tiny_clap(tmp_path / "mixed", fused=fused, processor_fused=not fused)
    with pytest.raises(WeightsError) as refused:
        get_net("clap", num_classes=2, weights=mixed)
    message = str(refused.value)
    truncation = "rand_trunc" if fused else "fusion"
    assert f"processor's truncation is {truncation!r}" in message and f"enable_fusion = {fused}" in message
    assert "\n" not in message


def test_clap_is_never_random_nor_fine_tuned(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="published checkpoint only"):
        net_config(None, ("clap",))
    with pytest.raises(WeightsError, match="no random initialisation"):
        get_net("clap", num_classes=2).prepare(np.zeros((1, SR), np.float16))
    manifest = Manifest(
        ("a", "b"), (Clip("x", "a", audio=tmp_path / "x.wav", fold=0), Clip("y", "b", audio=tmp_path / "y.wav", fold=1))
    )
    with pytest.raises(ConfigError, match="--finetune full: clap is an encoder used as it is"):
        extract_features(manifest, tmp_path / "c", nets=["clap"], training=TrainConfig(finetune="full"))
    assert not (tmp_path / "c").exists()


def test_fetch_stores_a_checkpoint_folder_from_a_copy_or_the_hub(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    copy = shutil.copytree(weights / CHECKPOINT, tmp_path / "a copy")
    (copy / "README.md").write_text("a model card, which no loader reads")
    result = runner.invoke(
        cli, ["weights", "fetch", CHECKPOINT, "--from", str(copy), "--weights-dir", str(tmp_path / "w")]
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "w" / CHECKPOINT / "README.md").exists()
    assert find_weights(CHECKPOINT, tmp_path / "w") == tmp_path / "w" / CHECKPOINT
    assert sha256_of(tmp_path / "w" / CHECKPOINT) == sha256_of(weights / CHECKPOINT)
    verified = json.loads(
        runner.invoke(cli, ["weights", "verify", "--weights-dir", str(tmp_path / "w"), "--json"]).stdout
    )
    assert {w["name"]: w["status"] for w in verified["weights"]}[CHECKPOINT] == "unpinned"

    asked = []

    def snapshot_download(repo: str, *, local_dir: Path, allow_patterns: list[str]) -> str:
        asked.append((repo, allow_patterns))
        shutil.copytree(weights / CHECKPOINT, local_dir)
        (Path(local_dir) / ".cache").mkdir()  # the hub's own bookkeeping, in no digest
        return str(local_dir)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    result = runner.invoke(
        cli,
        [
            "weights",
            "fetch",
            CHECKPOINT,
            "--weights-dir",
            str(tmp_path / "w"),
            "--sha256",
            sha256_of(weights / CHECKPOINT),
        ],
    )
    assert result.exit_code == 0, result.output
    assert asked == [
        (
            "laion/larger_clap_music",
            [
                "config.json",
                "preprocessor_config.json",
                "*.safetensors",
                "*.safetensors.index.json",
                "pytorch_model.bin*",
            ],
        )
    ]
    result = runner.invoke(
        cli, ["weights", "fetch", CHECKPOINT, "--weights-dir", str(tmp_path / "w"), "--sha256", "0" * 64]
    )
    assert result.exit_code == 2 and "nothing was written" in result.output
    assert sha256_of(tmp_path / "w" / CHECKPOINT) == sha256_of(weights / CHECKPOINT)

    class Offline(Exception):  # not an OSError, as httpx's errors are not
        pass

    def offline(repo: str, **_: object) -> str:
        raise Offline("no route to huggingface.co\n(a second line of detail)")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    result = runner.invoke(cli, ["weights", "fetch", CHECKPOINT, "--weights-dir", str(tmp_path / "w")])
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert (
        "cannot download laion/larger_clap_music from the Hugging Face hub: no route to huggingface.co;"
        in result.output
    )
    assert sha256_of(tmp_path / "w" / CHECKPOINT) == sha256_of(weights / CHECKPOINT), "the earlier copy stays"


@pytest.mark.heavy
def test_clap_runs_from_extract_through_cv_to_predict(weights: Path, tmp_path: Path) -> None:
    """Stage one embeds every clip with the checkpoint folder found in --weights-dir, stage two trains on it, and
    predict rebuilds the net from the same folder and reproduces the final model's probabilities."""
    manifest = synthetic_manifest(tmp_path, ("Exciting", "Neutral"), clips_per_class=6, duration_s=3.0)
    (tmp_path / "c.toml").write_text("[audio]\nduration_s = 3.0\n")
    runner, cache = CliRunner(), tmp_path / "cache"
    common = ["--config", str(tmp_path / "c.toml"), "--weights-dir", str(weights)]
    result = runner.invoke(cli, ["extract", str(manifest), "--cache", str(cache), "--nets", "clap", *common])
    assert result.exit_code == 0, result.output
    with Cache(cache) as reader:
        assert reader.row_shape("audio48k") == (3 * SR,) and reader.row_shape("emb/clap/all") == (16,)
        assert reader.weights_sha256("emb/clap/all") == sha256_of(weights / CHECKPOINT)
        embeddings, ids = reader.read_matrix("emb/clap/all"), reader.clip_ids
        made_with = reader.config("emb/clap/all")["computed_with"]
    assert made_with["transformers"] == transformers.__version__ and made_with["processor"]["truncation"] == "fusion"
    assert reader.config("emb/clap/all")["precision"] == "float32"
    result = runner.invoke(cli, ["fuse", str(cache), "--out", str(tmp_path / "fused"), "--models", "clap"])
    assert result.exit_code == 0, result.output
    clip = str(tmp_path / "data" / ids[0])
    result = runner.invoke(
        cli, ["predict", str(tmp_path / "fused" / "model"), clip, "--json", "--weights-dir", str(weights)]
    )
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.stdout)[0]
    saved = load_fusion_model(tmp_path / "fused" / "model")
    expected = saved.predict("clap", {"clap": embeddings[:1]})[0]
    np.testing.assert_allclose([predicted["probabilities"][c] for c in saved.document["classes"]], expected, atol=1e-4)


@pytest.mark.heavy
def test_a_cache_of_clap_rows_from_another_transformers_is_not_extended_silently(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers makes CLAP's mel spectrograms: rows of two of its versions must not share one set."""
    from mvemo.cache.store import CacheWriter
    from mvemo.extract.embed import embedding_set
    from mvemo.extract.nets import clap as clap_net

    manifest = synthetic_manifest(tmp_path, ("Exciting", "Neutral"), clips_per_class=2, duration_s=3.0)
    (tmp_path / "c.toml").write_text("[audio]\nduration_s = 3.0\n")
    cache = tmp_path / "cache"
    extract = ["extract", str(manifest), "--cache", str(cache), "--nets", "clap", "--config", str(tmp_path / "c.toml")]
    assert CliRunner().invoke(cli, [*extract, "--weights-dir", str(weights)]).exit_code == 0
    monkeypatch.setattr(clap_net, "transformers_version", lambda: "99.0.0")
    with Cache(cache) as reader:
        upgraded = embedding_set(reader, "clap", weights_dir=weights, seed=0, net_options={}).spec
    with (
        CacheWriter(cache, None) as writer,
        pytest.raises(CacheError, match=r"emb/clap/all.*computed_with.transformers"),
    ):
        writer.prepare([upgraded])
