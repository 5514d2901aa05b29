"""Upper-layer fine-tuning: the head over cached activations is the whole net with its lower layers frozen (the
same outputs and gradients), it trains as its module says, and stage two runs it only with the layers given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvemo.extract.nets import get_net
from mvemo.extract.nets.musicnn import PATCH_FRAMES
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.upper import UpperHead, UpperLayers, upper_net
from mvemo.manifests import ConfigError
from tests.fuse.helpers import embedding_cache


def musicnn_and_its_cut(clips: int = 2) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A musicnn of random weights (batch norms with moved statistics), a log-mel batch, its activations at the cut."""
    torch.manual_seed(0)
    net = get_net("musicnn", num_classes=3)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    net.eval()
    logmel = torch.rand(clips, 96, 10 * PATCH_FRAMES) * 3
    patches = logmel.reshape(clips, 96, 10, PATCH_FRAMES).permute(0, 2, 3, 1).reshape(clips * 10, PATCH_FRAMES, 96)
    with torch.no_grad():
        cut = net.patches.layers(patches)["pooled"].reshape(clips, 10, -1)
    return net, logmel, cut


def test_the_head_is_the_whole_net_with_its_lower_layers_frozen() -> None:
    net, logmel, cut = musicnn_and_its_cut()
    upper = upper_net(net.patches.upper_layers(), 3, dropout=0.5).eval()
    with torch.no_grad():
        upper.classifier.weight.copy_(net.head.weight)
        upper.classifier.bias.copy_(net.head.bias)
    target = torch.tensor([0, 2])
    trained = [net.patches.pool_bn, net.patches.dense, net.patches.dense_bn, net.head]
    for p in net.parameters():
        p.requires_grad_(any(p is q for m in trained for q in m.parameters()))
    whole = net(*net.prepare(logmel.numpy()))
    part = upper(cut)
    torch.testing.assert_close(part, whole, rtol=1e-5, atol=1e-5)
    torch.nn.functional.cross_entropy(whole, target).backward()
    torch.nn.functional.cross_entropy(part, target).backward()
    patches = net.patches
    for mine, theirs in ((upper.dense, patches.dense), (upper.classifier, net.head)):
        torch.testing.assert_close(mine.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine.bias.grad, theirs.bias.grad, rtol=1e-4, atol=1e-6)
    for bn, scale, shift in (
        (patches.pool_bn, upper.pool_scale, upper.pool_shift),
        (patches.dense_bn, upper.bn_scale, upper.bn_shift),
    ):
        # a batch norm at inference is the affine map scale = gamma / sqrt(var + eps), shift = beta - mean x scale
        via_gamma = (scale.grad - bn.running_mean * shift.grad) / torch.sqrt(bn.running_var + bn.eps)
        torch.testing.assert_close(via_gamma, bn.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(shift.grad, bn.bias.grad, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in net.patches.mid.parameters()), "the layers below the cut stay frozen"


SMALL = 40  # columns per patch of the stage-two tests' activations: the layers' shapes matter there, not their size


def synthetic_cut(
    n: int = 120, width: int = 1506, hidden: int = 200, seed: int = 0
) -> tuple[UpperLayers, np.ndarray, np.ndarray]:
    """Activations whose class lies in a few of their columns, and layers above them of random weights (musicnn's
    shapes by default)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "pool_scale": np.ones(width, np.float32),
        "pool_shift": np.zeros(width, np.float32),
        "dense_weight": (rng.standard_normal((hidden, width)) / np.sqrt(width)).astype(np.float32),
        "dense_bias": np.zeros(hidden, np.float32),
        "bn_scale": np.ones(hidden, np.float32),
        "bn_shift": np.zeros(hidden, np.float32),
    }
    y = np.arange(n) % 3
    X = rng.standard_normal((n, 10, width)).astype(np.float32)
    X[:, :, :12] += 1.5 * (y[:, None, None] == np.arange(12)[None, None, :] % 3)
    return UpperLayers(arrays, 10), X.reshape(n, -1), y


def test_the_head_learns_and_reports_its_choices() -> None:
    layers, X, y = synthetic_cut()
    head = UpperHead(layers, lr_grid=(1e-3,), weight_decay_grid=(1e-3,), dropout_grid=(0.0, 0.5), max_epochs=15)
    head.fit(X[:90], y[:90], groups=np.arange(90) // 3)
    assert set(head.selected_) == {"lr", "weight_decay", "dropout", "epochs"} and head.chooses()
    proba = head.predict_proba(X[90:])
    assert proba.shape == (30, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(head.predict(X[90:]) == y[90:]) > 0.8


def test_stage_two_fine_tunes_a_cut_input_only_with_the_layers_above_it(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c.h5",
        nets={"musicnn.upper": (SMALL, 0.3)},
        n_per_class=12,
        patches={"musicnn.upper": 10},
        layers={"musicnn.upper": "pooled"},
    )
    with pytest.raises(ConfigError, match=r"musicnn\.upper holds a music encoder's activations at a cut.*--weights-dir"):
        cross_validate(cache, models="musicnn.upper")
    layers, _, _ = synthetic_cut(width=SMALL, hidden=8)
    result = cross_validate(cache, models="musicnn.upper", upper={"musicnn.upper": layers})
    choices = result.repeats[0]["musicnn.upper"].choices
    assert len(choices) == 3 and all(set(c) == {"lr", "weight_decay", "dropout", "epochs"} for c in choices)


def test_a_fine_tuned_head_is_saved_as_arrays_and_predicts_as_fitted(tmp_path: Path) -> None:
    from mvemo.cache.read import Cache
    from mvemo.fuse.saved import load_fusion_model
    from mvemo.fuse.stage import fuse_cache
    from mvemo.fuse.upper import one_thread

    cache = embedding_cache(
        tmp_path / "c.h5",
        nets={"musicnn.upper": (SMALL, 0.3)},
        n_per_class=12,
        patches={"musicnn.upper": 10},
        layers={"musicnn.upper": "pooled"},
    )
    layers, _, _ = synthetic_cut(width=SMALL, hidden=8)
    _, folder = fuse_cache(cache, tmp_path / "out", models="musicnn.upper", upper={"musicnn.upper": layers})
    saved = load_fusion_model(folder)
    with Cache(cache) as reader:
        X, y, groups = reader.read_matrix("emb/musicnn.upper/all"), reader.y, np.asarray(reader.groups)
    head = UpperHead(layers).fit(X, y, groups)
    np.testing.assert_allclose(saved.predict_proba("musicnn.upper", {"musicnn.upper": X}), head.predict_proba(X), atol=1e-6)
    with one_thread(), torch.no_grad():  # the numpy layers of the saved head are the torch net it trained
        net = upper_net(layers.arrays, 3, 0.0)
        net.load_state_dict({k: torch.from_numpy(getattr(head.upper_, k.replace(".", "_"))).float() for k in net.state_dict()})
        expected = torch.softmax(net.eval()(torch.from_numpy(X.reshape(len(X), 10, -1))), dim=1).numpy()
    np.testing.assert_allclose(head.predict_proba(X), expected, atol=1e-5)
