"""``mvemo bench extract`` measures each net it is given on the device it is given."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mvemo.pipeline.bench.extract import CACHED, bench_encoders, bench_extract, cached_batch
from mvemo.pipeline.cli.main import cli

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


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


def test_the_encoders_bench_counts_msdvggs_flops_and_relates_its_rate_to_the_gemm_rate() -> None:
    from mvemo.extract.nets.musicnn_patches import N_MELS, PATCH_FRAMES, VggPatches

    figures = bench_encoders(("msdvgg",), repeat=1)["msdvgg"]
    # two flops per multiply-add: the five 3x3 convs over the pooled maps of each of a 30-s clip's ten patches
    height, width, channels, macs = PATCH_FRAMES, N_MELS, 1, 0
    for (window, stride), out_channels in zip(VggPatches.POOLING, (128,) * 5):
        macs += height * width * channels * out_channels * 9
        height, width = (height - window[0]) // stride[0] + 1, (width - window[1]) // stride[1] + 1
        channels = out_channels
    expected_gflop = 10 * 2 * macs / 1e9
    assert abs(figures["gflop_per_clip"] - expected_gflop) < 0.01, (figures["gflop_per_clip"], expected_gflop)
    for key in [k for k in figures if k.startswith("threads_")]:
        run = figures[key]
        assert abs(run["gflop_per_s"] * run["ms"] / 1e3 - figures["gflop_per_clip"]) < 0.05 * figures["gflop_per_clip"]
        assert abs(run["of_gemm"] - run["gflop_per_s"] / run["gemm_gflop_per_s"]) < 0.01


def test_the_benches_find_the_shared_sample_where_the_tests_do() -> None:
    """The audio and video benches time the sample's first clip where it lies: a wrong folder silently timed a
    generated clip instead (a 240p clip of heavier texture, a third slower to sample)."""
    from mvemo.pipeline.bench.common import SHARED_SAMPLE
    from tests.conftest import SHARED

    assert SHARED / "data" / "mved-sample" == SHARED_SAMPLE
