from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.extract.embed import BATCHES_PER_JOB, EmbedJob, batches_per_job, embed_job, input_kinds
from mvemo.manifests import Clip, ConfigError, Manifest, write_manifest
from mvemo.pipeline.cli.main import cli
from tests.extract.finetune.test_finetune import RANDOM
from tests.extract.stage_helpers import embeddings_into, features_into
from tests.extract.test_features import CONFIGS


def test_inputs_of_the_nets() -> None:
    assert input_kinds(["crnn", "twodcnn", "onedcnn"]) == ("mel", "lld", "waveform")


@pytest.mark.heavy
def test_embeddings_are_written_deterministic_and_tied_to_their_inputs(tmp_path: Path, manifest: Manifest) -> None:
    caches = []
    for run in ("a", "b"):
        cache = tmp_path / f"{run}.h5"
        features_into(manifest, cache, ("mel", "lld", "waveform"), configs=CONFIGS)
        summary = embeddings_into(manifest, cache, ["twodcnn", "onedcnn", "crnn"], net_options=RANDOM)
        assert summary.done == {"twodcnn": 4, "onedcnn": 4, "crnn": 4}
        assert any("random initialisation" in note for note in summary.notes)
        caches.append(cache)
    with Cache(caches[0]) as a, Cache(caches[1]) as b:
        for net in ("twodcnn", "onedcnn", "crnn"):
            np.testing.assert_array_equal(a.read_rows(f"emb/{net}/all")[0], b.read_rows(f"emb/{net}/all")[0])
            assert a.config(f"emb/{net}/all")["inputs"]
        assert a.status("emb/twodcnn/all")[4] == 3, "a clip without audio has no audio embedding (absent, not failed)"
    again = embeddings_into(manifest, caches[0], ["twodcnn"], net_options=RANDOM)
    assert again.done["twodcnn"] == 4


def test_cli_nets_need_folds(tmp_path: Path, manifest: Manifest) -> None:
    path = write_manifest(manifest, tmp_path / "m.csv")
    config = tmp_path / "c.toml"
    config.write_text("[audio]\nduration_s = 1.0\n")
    cache = tmp_path / "cache.h5"
    unfolded = write_manifest(
        Manifest(
            manifest.classes, tuple(Clip(c.clip_id, c.label, video=c.video, audio=c.audio) for c in manifest.clips)
        ),
        tmp_path / "u.csv",
    )
    result = CliRunner().invoke(cli, ["extract", str(unfolded), "--cache", str(cache), "--nets", "twodcnn"])
    assert result.exit_code == 2 and "mvemo manifest folds" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            str(path),
            "--cache",
            str(cache),
            "--nets",
            "twodcnn,onedcnn",
            "--config",
            str(config),
            "--random-init",
            "twodcnn",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "emb/twodcnn/all: 4 clips" in result.output
    with Cache(cache) as reader:
        assert {"mel", "waveform", "emb/twodcnn/all", "emb/onedcnn/all"} <= set(reader.feature_sets())
        assert "lld" not in reader.feature_sets(), "--nets computes only the inputs its nets need"


@pytest.mark.heavy
def test_config_net_tables_set_a_nets_options_and_inputs(tmp_path: Path, manifest: Manifest) -> None:
    path = write_manifest(manifest, tmp_path / "m.csv")
    cache = tmp_path / "cache.h5"
    config = tmp_path / "c.toml"
    config.write_text(
        "[audio]\nduration_s = 1.0\n[frames]\nn_frames = 4\n"
        '[net.i3d]\npool = "global"\nframes = "frames112"\ninit = "random"\n'
    )
    result = CliRunner().invoke(
        cli, ["extract", str(path), "--cache", str(cache), "--nets", "i3d", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    with Cache(cache) as reader:
        assert "frames112" in reader.feature_sets() and "frames224" not in reader.feature_sets()
        recorded = reader.config("emb/i3d/all")
        assert (
            recorded["pool"] == "global"
            and recorded["frames"] == "frames112"
            and set(recorded["inputs"]) == {"frames112"}
        )
        assert reader.done("emb/i3d/all").sum() == 5
    for table, message in [
        ("[net.i3d]\npooling = 'global'\n", "[net.i3d]: unknown key(s) ['pooling']; i3d's options are"),
        ("[net.vgg]\npool = 'global'\n", "[net]: unknown net(s) ['vgg']"),
    ]:
        config.write_text(table)
        result = CliRunner().invoke(
            cli, ["extract", str(path), "--cache", str(cache), "--nets", "i3d", "--config", str(config)]
        )
        assert result.exit_code == 2 and message in result.output


class ReplyingExecutor:
    """An executor whose every job comes back as ``reply``: how a pool reports a lost job or a job's own error."""

    def __init__(self, reply: BaseException) -> None:
        self.reply = reply

    def map(self, fn: object, jobs: list, resources: object = None) -> Iterator[BaseException]:
        return iter([self.reply] * len(jobs))


def test_a_lost_job_fails_its_clips_and_any_other_job_error_stops_the_run(tmp_path: Path, manifest: Manifest) -> None:
    cache, other = tmp_path / "c.h5", tmp_path / "other.h5"
    for path in (cache, other):
        features_into(manifest, path, ("mel",), configs=CONFIGS)
    lost = embeddings_into(
        manifest, cache, ["twodcnn"], net_options=RANDOM, executor=ReplyingExecutor(BrokenProcessPool("worker died"))
    )
    assert lost.done == {"twodcnn": 0} and len(lost.failed["twodcnn"]) == 4
    assert "embedding job was lost (BrokenProcessPool: worker died)" in lost.failed["twodcnn"]["c0"]
    with pytest.raises(ConfigError, match="batch size"):
        embeddings_into(
            manifest,
            other,
            ["twodcnn"],
            net_options=RANDOM,
            executor=ReplyingExecutor(ConfigError("out of memory: set a smaller batch size")),
        )


class RecordingExecutor:
    """Runs each job here, as a pool of ``local_workers`` would elsewhere, and records the clips of each."""

    def __init__(self, local_workers: int) -> None:
        self.local_workers = local_workers
        self.jobs: list[int] = []

    def map(self, fn, jobs: list, resources: object = None) -> Iterator[object]:
        self.jobs += [len(job.rows) for job in jobs]
        return map(fn, jobs)


@pytest.mark.parametrize(
    ("rows", "batch_size", "workers", "expected"),
    [
        (72, 8, 2, 5),
        (72, 8, 1, BATCHES_PER_JOB),
        (72, 8, 0, BATCHES_PER_JOB),
        (1000, 8, 2, BATCHES_PER_JOB),
        (3, 8, 4, 1),
    ],
)
def test_jobs_spread_the_batches_over_the_local_workers(
    rows: int, batch_size: int, workers: int, expected: int
) -> None:
    """The demo's 72 clips in batches of 8 on 2 workers: jobs of 5 and 4 batches, not 8 and 1; as many as a job holds
    where the batches outnumber the workers, or where the executor's workers are not local (a cluster's)."""
    assert batches_per_job(rows, batch_size, RecordingExecutor(workers)) == expected


def test_embeddings_are_the_same_however_the_jobs_cut_the_rows(tmp_path: Path, manifest: Manifest) -> None:
    """In this process, in one job of both batches of 2 clips, in a job a batch: the same rows."""
    runs = {"here": None, "one job": RecordingExecutor(0), "two jobs": RecordingExecutor(2)}
    for name, executor in runs.items():
        features_into(manifest, tmp_path / f"{name}.h5", ("mel",), configs=CONFIGS)
        embeddings_into(
            manifest, tmp_path / f"{name}.h5", ["twodcnn"], net_options=RANDOM, batch_size=2, executor=executor
        )
    assert runs["one job"].jobs == [4] and runs["two jobs"].jobs == [2, 2]
    with Cache(tmp_path / "here.h5") as here:
        done = here.done("emb/twodcnn/all")
        expected = here.read_matrix("emb/twodcnn/all", np.flatnonzero(done))
    assert done.sum() == 4
    for name in ("one job", "two jobs"):
        with Cache(tmp_path / f"{name}.h5") as cache:
            assert np.array_equal(cache.done("emb/twodcnn/all"), done)
            np.testing.assert_array_equal(cache.read_matrix("emb/twodcnn/all", np.flatnonzero(done)), expected)


def test_a_worker_that_finds_other_pretrained_weights_refuses_its_job() -> None:
    job = EmbedJob(
        "unused.h5", "twodcnn", 2, None, "0123456789abcdef", 0, (("init", "random"),), np.arange(2), 1, "cpu"
    )
    with pytest.raises(
        ConfigError, match=r"found pretrained weights of sha256 \(none\), the run started from 0123456789ab"
    ):
        embed_job(job)


def test_a_net_whose_weights_are_missing_stops_the_run_unless_random_init_is_asked(
    tmp_path: Path, manifest: Manifest
) -> None:
    path = write_manifest(manifest, tmp_path / "m.csv")
    config = tmp_path / "c.toml"
    config.write_text("[audio]\nduration_s = 1.0\n")
    cache = tmp_path / "cache.h5"
    args = ["extract", str(path), "--cache", str(cache), "--nets", "twodcnn,onedcnn", "--config", str(config)]
    refused = CliRunner().invoke(cli, [*args, "--weights-dir", str(tmp_path / "empty")])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    message = " ".join(refused.output.split())
    assert "weights 'choi_compact_cnn_msd.h5' not found: looked for" in message
    assert (
        str(tmp_path / "empty" / "choi_compact_cnn_msd.h5") in message
        and ".cache/mvemo/weights/choi_compact_cnn_msd.h5" in message
    )
    assert "mvemo weights fetch choi_compact_cnn_msd.h5" in message and "--random-init twodcnn" in message
    asked = CliRunner().invoke(cli, [*args, "--random-init", "twodcnn"])
    assert asked.exit_code == 0, asked.output
    assert "twodcnn: random initialisation (seed 0; asked (--random-init))" in asked.output
    assert "onedcnn: random initialisation (seed 0; it has no published weights)" in asked.output
    with Cache(cache) as reader:
        assert reader.weights_sha256("emb/twodcnn/all") == "" and reader.weights_file("emb/twodcnn/all") == ""
    config.write_text('[audio]\nduration_s = 1.0\n[net.twodcnn]\ninit = "random"\n')
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "emb/twodcnn/all: 4 clips" in again.output
    config.write_text('[audio]\nduration_s = 1.0\n[net.twodcnn]\ninit = "xavier"\n')
    wrong = CliRunner().invoke(cli, args)
    assert (
        wrong.exit_code == 2
        and "[net.twodcnn] init = 'xavier': expected one of ['pretrained', 'random']" in wrong.output
    )


def test_recomputing_with_other_weights_says_what_changes(tmp_path: Path, manifest: Manifest) -> None:
    from tests.extract.test_nets_pretrained import choi_path

    weights = choi_path().parent
    cache = tmp_path / "c.h5"
    features_into(manifest, cache, ("mel",), configs=CONFIGS)
    embeddings_into(manifest, cache, ["twodcnn"], net_options=RANDOM)
    summary = embeddings_into(manifest, cache, ["twodcnn"], weights_dir=weights, recompute=["emb/twodcnn/all"])
    assert (
        "emb/twodcnn/all: recomputed with other weights: random init before,"
        " choi_compact_cnn_msd.h5 (sha256 42e791b8c1b4) now" in summary.notes
    )
    with Cache(cache) as reader:
        assert reader.weights_file("emb/twodcnn/all") == "choi_compact_cnn_msd.h5"


def test_a_row_is_computed_in_float32_on_every_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of one set embedded on a GPU and on a CPU must not differ by precision: no autocast for rows, whatever
    the device (training alone runs under bf16 on a GPU)."""
    import contextlib

    import torch

    from mvemo.extract import forward
    from mvemo.extract.finetune import train
    from mvemo.extract.nets import building, get_net

    asked: list[bool] = []
    monkeypatch.setattr(
        forward, "autocast", lambda device, *, bf16=True: asked.append(bf16) or contextlib.nullcontext()
    )
    net = get_net("onedcnn", num_classes=2).eval()
    inputs = net.prepare(np.zeros((1, 16000), np.float32))
    for device in (torch.device("cpu"), torch.device("cuda")):  # autocast is asked before anything runs there
        with contextlib.suppress(RuntimeError, AssertionError):  # no CUDA here: what counts is what was asked
            forward.forward(net, inputs, device)
    assert asked == [False, False]
    assert train.training_precision(torch.device("cuda")) == "bfloat16 autocast"
    assert train.training_precision(torch.device("cpu")) == building.ROW_PRECISION == "float32"
