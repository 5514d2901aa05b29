"""``mvemo bench extract`` measures each net it is given on the device it is given."""

from __future__ import annotations

from click.testing import CliRunner

from mvemo.pipeline.bench.extract import CACHED, bench_extract, cached_batch
from mvemo.pipeline.cli.main import cli


def test_cached_batches_have_the_cache_shapes_and_dtypes() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for kind, (shape, dtype) in CACHED.items():
        batch = cached_batch(kind, 2, rng)
        assert batch.shape == (2, *shape) and batch.dtype == dtype


def test_cpu_figures_of_one_net_without_the_gpu_export() -> None:
    figures = bench_extract("cpu", nets=("twodcnn",))
    assert figures["device"].startswith("cpu") and set(figures["nets"]) == {"twodcnn"}
    twodcnn = figures["nets"]["twodcnn"]
    assert twodcnn["batch"] == 1 and twodcnn["forward_ms_fp32"] > 0 and twodcnn["step_ms"] > 0
    assert "export_clips_per_s" not in figures


def test_the_cli_refuses_an_unknown_device() -> None:
    result = CliRunner().invoke(cli, ["bench", "extract", "--device", "tpu", "--json"])
    assert result.exit_code == 2 and "--device 'tpu' is not a device" in result.output, result.output
