"""The nets alongside decoding: the same embeddings as after it, each written after its inputs, in bounded memory,
and an error of the nets stops the run without hanging it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.extract import features, overlap, stage
from mvemo.extract.stage import extract_features, overlapped
from mvemo.manifests import Clip, Manifest, write_manifest
from mvemo.manifests.synthetic import write_media
from mvemo.pipeline.cli.main import cli
from tests.conftest import tiny_audio, tiny_frames
from tests.extract.stage_helpers import features_into
from tests.extract.test_features import CONFIGS
from tests.extract.test_stage import RecordingExecutor

NETS = ("twodcnn", "onedcnn")  # one input each (mel, waveform); onedcnn has no published weights
RANDOM = {"twodcnn": {"init": "random"}}


def embeddings(cache: Path) -> dict[str, np.ndarray]:
    with Cache(cache) as reader:
        return {net: reader.read_rows(f"emb/{net}/all")[0] for net in NETS}


@pytest.fixture
def after(tmp_path: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """The embeddings of a run that decodes every clip, then runs the nets."""
    extract_features(manifest, tmp_path / "after", nets=NETS, configs=CONFIGS, net_options=RANDOM, overlap=False)
    return embeddings(tmp_path / "after")


@pytest.mark.parametrize("queue_clips", [1, overlap.QUEUE_CLIPS])
def test_nets_alongside_decoding_write_the_embeddings_they_would_after_it(
    tmp_path: Path, manifest: Manifest, after: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch, queue_clips: int
) -> None:
    monkeypatch.setattr(overlap, "QUEUE_CLIPS", queue_clips)
    pool = RecordingExecutor(in_process=False)
    summary = extract_features(
        manifest, tmp_path / "c", nets=NETS, configs=CONFIGS, net_options=RANDOM, executor=pool, overlap=True
    )
    assert pool.jobs == len(manifest), "the pool decodes; the nets run here, not as its jobs"
    features = summary.stages[0].what
    assert "4 rows of emb/twodcnn/all embedded alongside" in features and "4 rows of emb/onedcnn/all" in features
    assert summary.embeddings == {"emb/twodcnn/all": 4, "emb/onedcnn/all": 4} and not summary.failed
    assert sum("random initialisation" in note for note in summary.notes) == 2, "each net said once how it started"
    for net, vectors in embeddings(tmp_path / "c").items():
        np.testing.assert_allclose(vectors, after[net], rtol=1e-6, atol=1e-7)
    with Cache(tmp_path / "c") as reader:
        assert reader.status("emb/twodcnn/all")[4] == 3, "the clip without audio: absent, as after decoding"


def test_inputs_of_a_clip_shorter_than_the_window_are_embedded_as_their_rows_hold_them(tmp_path: Path) -> None:
    """crnn reads the LLD matrix, cut to the audio a clip has: its row pads it to the window's frames."""
    clips = []
    for i, seconds in enumerate((0.5, 0.7, 0.9, 0.6)):
        path = write_media(tmp_path / f"{i}.mp4", frames=tiny_frames(), y=tiny_audio(seconds), sr=16000)
        clips.append(Clip(f"c{i}", "ab"[i % 2], video=path, audio=path, fold=i % 2))
    manifest = Manifest(("a", "b"), tuple(clips))
    vectors = {}
    for run in (False, True):
        summary = extract_features(manifest, tmp_path / f"{run}", nets=("crnn",), configs=CONFIGS, overlap=run)
        assert summary.embeddings == {"emb/crnn/all": 4} and not summary.failed
        with Cache(tmp_path / f"{run}") as reader:
            vectors[run] = reader.read_rows("emb/crnn/all")[0]
    assert "4 rows of emb/crnn/all embedded alongside" in summary.stages[0].what
    np.testing.assert_allclose(vectors[True], vectors[False], rtol=1e-6, atol=1e-7)


def test_an_input_the_writer_refuses_is_not_embedded(
    tmp_path: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_clip = features.timed_clip

    def with_a_nan(clip: Clip, names: tuple[str, ...], configs: Any) -> Any:
        result, seconds = timed_clip(clip, names, configs)
        if clip.clip_id == "c1":
            result["mel"] = np.full_like(result["mel"], np.nan)
        return result, seconds

    monkeypatch.setattr(features, "timed_clip", with_a_nan)
    summary = extract_features(manifest, tmp_path / "c", nets=NETS, configs=CONFIGS, net_options=RANDOM, overlap=True)
    assert "3 rows of emb/twodcnn/all embedded alongside" in summary.stages[0].what
    assert "its input mel was not computed" in summary.failed_embeddings["emb/twodcnn/all"]["c1"]
    assert summary.embeddings == {"emb/twodcnn/all": 3, "emb/onedcnn/all": 4}


def test_a_run_without_nets_never_asks_for_their_device(tmp_path: Path, manifest: Manifest) -> None:
    summary = extract_features(manifest, tmp_path / "c", features="mel", configs=CONFIGS, device="cuda:7", overlap=True)
    assert summary.features.sets["mel"].done == 4


def test_clips_decoded_by_an_earlier_run_are_embedded_after_the_rest(
    tmp_path: Path, manifest: Manifest, after: dict[str, np.ndarray]
) -> None:
    cache = tmp_path / "c"
    earlier = Manifest(manifest.classes, manifest.clips[:2])
    features_into(earlier, cache, ("mel", "waveform"), configs=CONFIGS)
    summary = extract_features(manifest, cache, nets=NETS, configs=CONFIGS, net_options=RANDOM, overlap=True)
    assert "2 rows of emb/twodcnn/all embedded alongside" in summary.stages[0].what
    assert summary.embeddings == {"emb/twodcnn/all": 4, "emb/onedcnn/all": 4}
    for net, vectors in embeddings(cache).items():
        np.testing.assert_allclose(vectors, after[net], rtol=1e-6, atol=1e-7)


def test_an_embedding_is_written_only_after_the_rows_of_its_inputs(
    tmp_path: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: set[tuple[str, int]] = set()
    write = CacheWriter.write

    def recording(self: CacheWriter, name: str, rows: Any, data: Any) -> list[int]:
        if name.startswith("emb/"):
            inputs = "mel" if "twodcnn" in name else "waveform"
            assert all((inputs, row) in written for row in rows), f"{name} rows {rows} before their {inputs}"
        written.update((name, int(row)) for row in rows)
        return write(self, name, rows, data)

    monkeypatch.setattr(CacheWriter, "write", recording)
    monkeypatch.setattr(
        overlap.EmbeddingsAlongside, "__init__", with_batch_size(overlap.EmbeddingsAlongside.__init__, 1)
    )
    summary = extract_features(manifest, tmp_path / "c", nets=NETS, configs=CONFIGS, net_options=RANDOM, overlap=True)
    assert summary.embeddings == {"emb/twodcnn/all": 4, "emb/onedcnn/all": 4}
    assert ("emb/twodcnn/all", 3) in written


def with_batch_size(init: Any, batch_size: int) -> Any:
    def replaced(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "batch_size": batch_size})

    return replaced


def test_an_error_of_the_nets_stops_the_run_and_keeps_the_features(
    tmp_path: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise RuntimeError("the device fell over")

    monkeypatch.setattr(overlap, "forward", failing)
    monkeypatch.setattr(overlap, "QUEUE_CLIPS", 1)  # the feature pass would wait forever on a thread that stopped
    monkeypatch.setattr(
        overlap.EmbeddingsAlongside, "__init__", with_batch_size(overlap.EmbeddingsAlongside.__init__, 1)
    )
    with pytest.raises(RuntimeError, match="the device fell over"):
        extract_features(manifest, tmp_path / "c", nets=NETS, configs=CONFIGS, net_options=RANDOM, overlap=True)
    with Cache(tmp_path / "c") as reader:
        assert not reader.done("emb/twodcnn/all").any()
        assert reader.done("mel").sum() == 4, "the features decoded before the error are kept"
    summary = extract_features(manifest, tmp_path / "c", nets=NETS, configs=CONFIGS, net_options=RANDOM, overlap=False)
    assert summary.embeddings == {"emb/twodcnn/all": 4, "emb/onedcnn/all": 4}, "the next run finishes the work"


def test_the_nets_overlap_by_default_where_they_run_on_a_gpu_of_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not overlapped(None, "cpu", None)
    assert overlapped(True, "cpu", None) and not overlapped(False, "cpu", None)
    monkeypatch.setattr(stage, "resolve_device", lambda name: torch.device("cuda"))
    assert overlapped(None, "auto", RecordingExecutor(in_process=False))
    cluster = RecordingExecutor(in_process=False)
    cluster.own_devices = True
    assert not overlapped(None, "auto", cluster), "a cluster's GPU workers run the nets"


def test_cli_overlap(tmp_path: Path, manifest: Manifest) -> None:
    path = write_manifest(manifest, tmp_path / "m.csv")
    config = tmp_path / "c.toml"
    config.write_text("[audio]\nduration_s = 1.0\n")
    command = ["extract", str(path), "--cache", str(tmp_path / "c"), "--nets", "twodcnn", "--config", str(config)]
    result = CliRunner().invoke(cli, [*command, "--random-init", "twodcnn", "--overlap"])
    assert result.exit_code == 0, result.output
    assert "4 rows of emb/twodcnn/all embedded alongside" in result.output
