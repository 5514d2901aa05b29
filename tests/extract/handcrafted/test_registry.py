"""A handcrafted set is one entry of the registry: added there alone, stage one computes it, reads its config table,
caches it with its columns and fingerprint, and stage two fuses it by its name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.handcrafted.registry import HANDCRAFTED, Handcrafted, own_columns
from mvemo.fuse.cv import cross_validate
from mvemo.pipeline.cli.main import cli
from tests.pipeline.helpers import synthetic_manifest


@dataclass(frozen=True)
class CrossingsConfig:
    """How often the waveform crosses zero, per frame of ``frame_length`` samples: its mean and spread."""

    sample_rate_hz: int = 16000
    frame_length: int = 1024
    audio_window: AudioWindow = field(default_factory=AudioWindow)

    @property
    def columns(self) -> tuple[str, ...]:
        return ("crossings_mean", "crossings_std")


def crossings(y: np.ndarray, config: CrossingsConfig) -> np.ndarray:
    frames = y[: len(y) // config.frame_length * config.frame_length].reshape(-1, config.frame_length)
    rate = np.mean(np.diff(np.signbit(frames), axis=1), axis=1)
    return np.array([rate.mean(), rate.std()], dtype=np.float32)


@pytest.mark.heavy
def test_a_set_added_to_the_registry_alone_is_computed_configured_cached_and_fused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(HANDCRAFTED, "crossings", Handcrafted(CrossingsConfig, "1", crossings, own_columns))
    manifest = synthetic_manifest(tmp_path, ("Exciting", "Sad"), clips_per_class=4, duration_s=2.0)
    (tmp_path / "c.toml").write_text("[audio]\nduration_s = 2.0\n[crossings]\nframe_length = 512\n")
    cache = tmp_path / "cache"
    command = [
        "extract",
        str(manifest),
        "--cache",
        str(cache),
        "--features",
        "crossings",
        "--config",
        str(tmp_path / "c.toml"),
    ]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    with Cache(cache) as reader:
        assert reader.columns("crossings") == ["crossings_mean", "crossings_std"] and reader.done("crossings").all()
        assert (
            reader.config("crossings")["frame_length"] == 512
            and reader.set_attrs("crossings")["extractor"] == "mvemo.crossings"
        )
        rows = reader.read_matrix("crossings")
    assert np.all((rows >= 0) & (rows <= 1)), "a share of samples"
    assert set(cross_validate(cache, models="crossings").metrics) == {"crossings"}, "stage two fuses it by its name"
