"""Stage two reads the published layers above a cut from the weight file the activations came from, and only for
the models that use such an input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.extract.nets import get_net
from mvemo.extract.nets.musicnn import upper_layers
from mvemo.extract.weights.registry import sha256_of
from mvemo.manifests import ConfigError
from mvemo.pipeline.upper_layers import published_upper_layers
from tests.conftest import SHARED
from tests.fuse.helpers import embedding_cache

WEIGHTS = SHARED / "weights"
CUTS = {"musicnn": ("pooled", 1506), "msdvgg": ("pool4", 8448)}  # a cut of each encoder and its columns per patch


def cut_cache(path: Path, net: str, sha256: str) -> Path:
    cut, width = CUTS[net]
    return embedding_cache(
        path,
        nets={f"{net}.upper": (width, 0.3), "i3d": (8, 1.0)},
        n_per_class=6,
        patches={f"{net}.upper": 10},
        layers={f"{net}.upper": cut},
        weights={f"{net}.upper": sha256},
    )


@pytest.mark.parametrize("net", sorted(CUTS))
def test_the_layers_come_from_the_file_the_activations_came_from(tmp_path: Path, net: str) -> None:
    file = WEIGHTS / f"musicnn_msd_{'vgg' if net == 'msdvgg' else net}.npz"
    if not file.is_file():
        pytest.skip(f"needs the {net} weights in {WEIGHTS} (../shared beside the clone)")
    cache = cut_cache(tmp_path / "c.h5", net, sha256_of(file))
    with Cache(cache) as opened:
        layers = published_upper_layers(opened, str(WEIGHTS), f"{net}.upper,i3d")
    cut, width = CUTS[net]
    expected = upper_layers(get_net(net, num_classes=2, weights=file, layer=cut, pool="patches"))
    assert set(layers) == {f"{net}.upper"} and (layers[f"{net}.upper"].patches, layers[f"{net}.upper"].width) == (
        10,
        width,
    )
    assert set(layers[f"{net}.upper"].arrays) == set(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(layers[f"{net}.upper"].arrays[name], array)
    other = cut_cache(tmp_path / "other.h5", net, "0" * 64)
    with (
        Cache(other) as opened,
        pytest.raises(ConfigError, match="the activations came from 000000000000; give --weights"),
    ):
        published_upper_layers(opened, str(WEIGHTS), f"{net}.upper")


def test_every_cut_is_one_the_cli_offers_and_stage_two_fine_tunes() -> None:
    from mvemo.extract.nets.musicnn_patches import UPPER_CUTS
    from mvemo.fuse.inputs import CUT_LAYERS
    from mvemo.pipeline.cli.bench import UPPER_CUT_NAMES

    cuts = [cut for net in UPPER_CUTS.values() for cut in net]
    assert sorted(set(cuts)) == sorted(UPPER_CUT_NAMES) == sorted(CUT_LAYERS)
    with pytest.raises(ConfigError, match=r'layer=\'cnn1_cut\' is a cut .* it needs pool = "patches"'):
        get_net("musicnn", num_classes=2, layer="cnn1_cut", pool="mean")
    with pytest.raises(ConfigError, match=r"fine-tunes the layers above these cuts only \(musicnn: pooled, cnn2_cut"):
        upper_layers(get_net("msdvgg", num_classes=2))


def test_models_without_a_cut_input_read_no_weights(tmp_path: Path) -> None:
    cache = cut_cache(tmp_path / "c.h5", "musicnn", "0" * 64)
    with Cache(cache) as opened:
        assert published_upper_layers(opened, str(tmp_path / "no-weights"), "i3d") == {}
