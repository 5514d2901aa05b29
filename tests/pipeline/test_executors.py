"""Stage one on a real Dask LocalCluster (loopback, 2 workers, 1 thread each) equals the serial run, even when a worker
dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.manifests import Clip, ConfigError, Manifest
from mvemo.pipeline.executors import build_executor
from tests.conftest import write_tiny
from tests.extract.finetune.test_finetune import RANDOM
from tests.extract.stage_helpers import embeddings_into, features_into, finetune_into
from tests.extract.test_features import CONFIGS

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

pytest.importorskip("distributed")


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    clips = [Clip(f"c{i}", "ab"[i % 2], audio=write_tiny(tmp_path / f"{i}.mp4")) for i in range(6)]
    return Manifest(("a", "b"), tuple(clips))


def matrices(path: Path) -> dict[str, np.ndarray]:
    with Cache(path) as cache:
        return {name: cache.read_matrix(name) for name in cache.feature_sets()} | {"done": cache.done("mel")}


def suicide_on_first_try(clip: Clip, names: tuple[str, ...], configs: object, marker: str) -> tuple:
    """A job that kills its worker the first time it meets clip c2 (the cluster must retry it elsewhere)."""
    from mvemo.extract.features import timed_clip

    if clip.clip_id == "c2" and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return timed_clip(clip, names, configs)


def always_kill_on_c3(clip: Clip, names: tuple[str, ...], configs: object) -> tuple:
    from mvemo.extract.features import timed_clip

    if clip.clip_id == "c3":
        os.kill(os.getpid(), signal.SIGKILL)
    return timed_clip(clip, names, configs)


@pytest.mark.slow(reason="a Dask LocalCluster started, a worker killed mid-run, and the serial run beside it")
def test_dask_features_equal_serial_even_when_a_worker_dies(tmp_path: Path, manifest: Manifest, monkeypatch) -> None:
    features_into(manifest, tmp_path / "serial.h5", ("mel", "lld"), configs=CONFIGS)
    executor = build_executor("dask", workers=2)
    try:
        features_into(manifest, tmp_path / "dask.h5", ("mel", "lld"), configs=CONFIGS, executor=executor)
        import mvemo.extract.features

        marker = str(tmp_path / "killed-once")
        monkeypatch.setattr(
            mvemo.extract.features,
            "timed_clip",
            lambda clip, names, configs: suicide_on_first_try(clip, names, configs, marker),
        )
        summary = features_into(manifest, tmp_path / "killed.h5", ("mel", "lld"), configs=CONFIGS, executor=executor)
        assert os.path.exists(marker), "a worker was killed mid-run"
        monkeypatch.setattr(mvemo.extract.features, "timed_clip", always_kill_on_c3)
        doomed = features_into(manifest, tmp_path / "doomed.h5", ("mel",), configs=CONFIGS, executor=executor)
    finally:
        executor.close()
    assert not summary.failures
    assert set(doomed.failures["mel"]) == {"c3"} and "its worker died" in doomed.failures["mel"]["c3"]
    assert doomed.sets["mel"].done == 5, "a clip that kills two workers is failed, the others are done"
    serial = matrices(tmp_path / "serial.h5")
    for other in ("dask.h5", "killed.h5"):
        for key, value in matrices(tmp_path / other).items():
            np.testing.assert_array_equal(value, serial[key])


@pytest.mark.slow(reason="a Dask LocalCluster started for a cross-validation")
def test_cv_on_dask_equals_serial(tmp_path: Path) -> None:
    """Beside another cluster (its port 8787 taken), as two runs or two test workers are: no word of ports."""
    from mvemo.fuse.cv import cross_validate
    from tests.fuse.helpers import embedding_cache

    cache = embedding_cache(tmp_path / "c.h5", nets={"onedcnn": (6, 1.0), "i3d": (5, 1.0)})
    serial = cross_validate(cache)
    with contextlib.ExitStack() as beside:
        with contextlib.suppress(OSError):  # taken already: the case itself
            beside.enter_context(socket.create_server(("", 8787)))
        said = beside.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        with build_executor("dask", workers=2) as executor:
            distributed = cross_validate(cache, executor=executor)
    assert not [w for w in said if "already in use" in str(w.message)], [str(w.message) for w in said]
    assert serial.metrics == distributed.metrics
    for name, p in serial.predictions.items():
        np.testing.assert_array_equal(p.proba, distributed.predictions[name].proba)


def test_scheduler_needs_dask() -> None:
    with pytest.raises(ConfigError, match=r"--scheduler needs --executor dask"):
        build_executor("processes", scheduler="tcp://127.0.0.1:1")


@pytest.mark.slow(reason="a Dask cluster with a worker of a GPU resource, and fine-tuning on it")
def test_fine_tuning_units_are_jobs_that_land_on_gpu_workers_and_equal_serial(tmp_path: Path) -> None:
    """Each (net, fold) unit asks for GPU=1, so on a cluster where one worker advertises a GPU every unit runs
    there (on the CPU here: device auto); the cache ends as the serial run's."""
    import subprocess
    import sys

    import torch
    from distributed import LocalCluster, get_task_stream

    from tests.extract.finetune.test_finetune import CONFIG, features

    media = [write_tiny(tmp_path / "media" / f"{i}.wav", video=False) for i in range(12)]
    manifest = Manifest(
        ("a", "b"), tuple(Clip(f"c{i}", "ab"[i % 2], audio=p, fold=(i // 2) % 3) for i, p in enumerate(media))
    )
    serial_cache, cluster_cache = (
        features(manifest, tmp_path / "serial.h5"),
        features(manifest, tmp_path / "cluster.h5"),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the cluster's workers: the same float sums
    try:
        finetune_into(manifest, serial_cache, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none")
    finally:
        torch.set_num_threads(threads)
    with LocalCluster(n_workers=1, threads_per_worker=1, resources={"GPU": 1}, dashboard_address=None) as cluster:
        cpu_only = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                cluster.scheduler_address,
                "--nthreads",
                "1",
                "--no-dashboard",
            ]
        )
        try:
            with build_executor("dask", scheduler=cluster.scheduler_address) as executor:
                executor.client.wait_for_workers(2, timeout=60)
                gpu_worker = next(a for a, w in executor.client.scheduler_info()["workers"].items() if w["resources"])
                with get_task_stream(executor.client) as stream:
                    summary = finetune_into(
                        manifest, cluster_cache, ["twodcnn"], CONFIG, weights_dir=tmp_path / "none", executor=executor
                    )
        finally:
            cpu_only.terminate()
            cpu_only.wait(timeout=30)
    units = [task for task in stream.data if task["key"].startswith("train_unit")]
    assert len(units) == 4 and {task["worker"] for task in units} == {gpu_worker}, "every unit ran on the GPU worker"
    assert [u.fold for u in summary.units] == [0, 1, 2, None]
    if torch.cuda.is_available():
        pytest.skip("bit-for-bit equality holds on the CPU: both runs trained on this machine's GPU (bf16, cuDNN)")
    with Cache(serial_cache) as serial, Cache(cluster_cache) as cluster_run:
        for name in ("emb/twodcnn/fold0", "emb/twodcnn/fold1", "emb/twodcnn/fold2", "emb/twodcnn/all"):
            assert cluster_run.done(name).all()
            np.testing.assert_array_equal(cluster_run.read_matrix(name), serial.read_matrix(name))


def embed_or_die(job: object, marker: str, always: bool) -> object:
    """An embedding job that kills its worker when it holds row 2: once (retried elsewhere), or every time."""
    from mvemo.extract.embed import embed_job

    if 2 in job.rows and (always or not os.path.exists(marker)):  # type: ignore[attr-defined]
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return embed_job(job)  # type: ignore[arg-type]


@pytest.mark.slow(reason="a Dask LocalCluster started, a worker killed mid-job, and the serial run beside it")
def test_dask_embeddings_equal_serial_even_when_a_worker_dies(tmp_path: Path, manifest: Manifest, monkeypatch) -> None:
    import torch

    import mvemo.extract.embed

    nets = ["onedcnn", "twodcnn"]
    caches = {run: tmp_path / f"{run}.h5" for run in ("serial", "dask", "killed", "doomed")}
    for cache in caches.values():
        features_into(manifest, cache, ("waveform", "mel"), configs=CONFIGS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the cluster's workers: the same float sums
    try:
        embeddings_into(manifest, caches["serial"], nets, net_options=RANDOM, batch_size=1)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(mvemo.extract.embed, "BATCHES_PER_JOB", 2)  # three jobs of two clips per net
    marker = str(tmp_path / "killed-once")
    with build_executor("dask", workers=2) as executor:
        embeddings_into(manifest, caches["dask"], nets, net_options=RANDOM, batch_size=1, executor=executor)
        monkeypatch.setattr(mvemo.extract.embed, "embed_job", lambda job: embed_or_die(job, marker, always=False))
        killed = embeddings_into(manifest, caches["killed"], nets, net_options=RANDOM, batch_size=1, executor=executor)
        assert os.path.exists(marker), "a worker was killed mid-job"
        monkeypatch.setattr(mvemo.extract.embed, "embed_job", lambda job: embed_or_die(job, marker, always=True))
        doomed = embeddings_into(manifest, caches["doomed"], ["onedcnn"], batch_size=1, executor=executor)
    assert killed.done == {"onedcnn": 6, "twodcnn": 6} and not any(killed.failed.values())
    assert doomed.done["onedcnn"] == 4 and set(doomed.failed["onedcnn"]) == {"c2", "c3"}
    assert "embedding job was lost" in doomed.failed["onedcnn"]["c2"]
    with Cache(caches["serial"]) as serial, Cache(caches["dask"]) as dask, Cache(caches["killed"]) as retried:
        for net in nets:
            expected = serial.read_matrix(f"emb/{net}/all")
            np.testing.assert_array_equal(dask.read_matrix(f"emb/{net}/all"), expected)
            np.testing.assert_array_equal(retried.read_matrix(f"emb/{net}/all"), expected)
