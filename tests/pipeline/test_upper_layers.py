"""Stage two reads the published layers above a cut from the weight file the activations came from, and only for
the models that use such an input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvemo.extract.nets import get_net
from mvemo.extract.nets.musicnn import upper_layers
from mvemo.extract.weights.registry import sha256_of
from mvemo.manifests import ConfigError
from mvemo.pipeline.upper_layers import published_upper_layers
from tests.conftest import SHARED
from tests.fuse.helpers import embedding_cache

WEIGHTS = SHARED / "weights"
MUSICNN = WEIGHTS / "musicnn_msd_musicnn.npz"


def cut_cache(path: Path, sha256: str) -> Path:
    return embedding_cache(
        path,
        nets={"musicnn.upper": (1506, 0.3), "i3d": (8, 1.0)},
        n_per_class=6,
        patches={"musicnn.upper": 10},
        layers={"musicnn.upper": "pooled"},
        weights={"musicnn.upper": sha256},
    )


@pytest.mark.skipif(not MUSICNN.is_file(), reason=f"needs the musicnn weights in {WEIGHTS} (../shared beside the clone)")
def test_the_layers_come_from_the_file_the_activations_came_from(tmp_path: Path) -> None:
    cache = cut_cache(tmp_path / "c.h5", sha256_of(MUSICNN))
    layers = published_upper_layers(cache, str(WEIGHTS), "musicnn.upper,i3d")
    expected = upper_layers(get_net("musicnn", num_classes=2, weights=MUSICNN))
    assert set(layers) == {"musicnn.upper"} and layers["musicnn.upper"].patches == 10
    for name, array in expected.items():
        np.testing.assert_array_equal(layers["musicnn.upper"].arrays[name], array)
    other = cut_cache(tmp_path / "other.h5", "0" * 64)
    with pytest.raises(ConfigError, match="the activations came from 000000000000; give --weights-dir"):
        published_upper_layers(other, str(WEIGHTS), "musicnn.upper")


def test_models_without_a_cut_input_read_no_weights(tmp_path: Path) -> None:
    cache = cut_cache(tmp_path / "c.h5", "0" * 64)
    assert published_upper_layers(cache, str(tmp_path / "no-weights"), "i3d") == {}
