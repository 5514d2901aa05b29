"""Upper-layer fine-tuning: the head over cached activations is the whole net with its lower layers frozen (the
same outputs and gradients), it trains as its module says, and stage two runs it only with the layers given."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mvemo.extract.nets import get_net
from mvemo.extract.nets.musicnn_patches import PATCH_FRAMES, UPPER_CUTS
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.heads.upper import UpperHead
from mvemo.fuse.heads.upper_net import MID_CONVS, VGG_POOL4_MELS, UpperLayers, upper_net
from mvemo.manifests import ConfigError
from tests.fuse.helpers import embedding_cache

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def encoder_and_its_cut(name: str, cut: str, clips: int = 2) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A music encoder of random weights (batch norms with moved statistics) whose clip embedding is the mean
    penultimate above ``cut``, a log-mel batch, and its activations at the cut."""
    torch.manual_seed(0)
    net = get_net(name, num_classes=3, **({"layer": "pool5", "pool": "mean"} if name == "msdvgg" else {}))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    net.eval()
    logmel = torch.rand(clips, 96, 10 * PATCH_FRAMES) * 3
    patches = logmel.reshape(clips, 96, 10, PATCH_FRAMES).permute(0, 2, 3, 1).reshape(clips * 10, PATCH_FRAMES, 96)
    with torch.no_grad():
        activations = net.patches.layers(patches)[cut].reshape(clips, 10, -1)
    return net, logmel, activations


def layers_above(net: torch.nn.Module, cut: str) -> tuple[dict[str, torch.nn.Module], dict[str, torch.nn.BatchNorm1d]]:
    """The whole net's layers above ``cut`` that the upper head trains, by the names of its arrays: the weighted
    ones, and the batch norms (which the head holds as a scale and a shift)."""
    p = net.patches
    if cut == "pool4":
        return {"conv5": p.convs[4]}, {"conv5": p.bns[4].bn}
    convs = {f"cnn{i + 1}": i for i in range(3 - UPPER_CUTS["musicnn"].index(cut), 3)}
    weighted = {"dense": p.dense, **{name: p.mid[i] for name, i in convs.items()}}
    return weighted, {"pool": p.pool_bn, "bn": p.dense_bn, **{name: p.mid_bn[i] for name, i in convs.items()}}


@pytest.mark.parametrize(("name", "cut"), [("musicnn", cut) for cut in UPPER_CUTS["musicnn"]] + [("msdvgg", "pool4")])
def test_the_head_is_the_whole_net_with_its_lower_layers_frozen(name: str, cut: str) -> None:
    net, logmel, activations = encoder_and_its_cut(name, cut)
    width = activations.shape[2]
    assert width == type(net.patches).layer_dims[cut]
    upper = upper_net(UpperLayers(net.patches.upper_layers(cut), 10, width), 3, dropout=0.5).eval()
    with torch.no_grad():
        upper.classifier.weight.copy_(net.head.weight)
        upper.classifier.bias.copy_(net.head.bias)
    weighted, norms = layers_above(net, cut)
    trained = [*weighted.values(), *norms.values(), net.head]
    for p in net.parameters():
        p.requires_grad_(any(p is q for m in trained for q in m.parameters()))
    whole = net(*net.prepare(logmel.numpy()))
    part = upper(activations)
    torch.testing.assert_close(part, whole, rtol=1e-5, atol=1e-5)
    target = torch.tensor([0, 2])
    torch.nn.functional.cross_entropy(whole, target).backward()
    torch.nn.functional.cross_entropy(part, target).backward()
    mine = upper.layer
    for key, theirs in weighted.items():
        torch.testing.assert_close(mine[f"{key}_weight"].grad, theirs.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine[f"{key}_bias"].grad, theirs.bias.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(upper.classifier.weight.grad, net.head.weight.grad, rtol=1e-4, atol=1e-6)
    for key, bn in norms.items():
        scale, shift = mine[f"{key}_scale"], mine[f"{key}_shift"]
        # a batch norm at inference is the affine map scale = gamma / sqrt(var + eps), shift = beta - mean x scale
        via_gamma = (scale.grad - bn.running_mean * shift.grad) / torch.sqrt(bn.running_var + bn.eps)
        torch.testing.assert_close(via_gamma, bn.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(shift.grad, bn.bias.grad, rtol=1e-4, atol=1e-6)
    frozen = [q for q in net.parameters() if not any(q is t for m in trained for t in m.parameters())]
    assert frozen and all(q.grad is None for q in frozen), "the layers below the cut stay frozen"


SMALL = 40  # the back end's input of the stage-two tests' activations: the layers' shapes matter there, not their size


def synthetic_cut(
    n: int = 120, pooled: int = 1506, hidden: int = 200, convs: int = 0, vgg: bool = False, seed: int = 0
) -> tuple[UpperLayers, np.ndarray, np.ndarray]:
    """Activations whose class lies in a few of their columns, and layers above them of random weights: musicnn's
    back end by default (``convs`` mid-end convolutions of 4 channels over 5 steps under it), or with ``vgg`` an
    msdvgg block of 4 channels over a map of 8 steps."""
    rng = np.random.default_rng(seed)

    def random(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    def affine(name: str, size: int) -> dict[str, np.ndarray]:
        return {f"{name}_scale": np.ones(size, np.float32), f"{name}_shift": np.zeros(size, np.float32)}

    if vgg:
        arrays = {"conv5_weight": random(4, 4, 3, 3), "conv5_bias": np.zeros(4, np.float32), **affine("conv5", 4)}
        width = 8 * VGG_POOL4_MELS * 4
    else:
        arrays = {"dense_weight": random(hidden, pooled), "dense_bias": np.zeros(hidden, np.float32)}
        arrays |= affine("pool", pooled) | affine("bn", hidden)
        for name in MID_CONVS[len(MID_CONVS) - convs :]:
            arrays |= {f"{name}_weight": random(4, 4, 7), f"{name}_bias": np.zeros(4, np.float32), **affine(name, 4)}
        width = pooled - 2 * 4 * convs + 5 * 4 * (convs > 0)
    y = np.arange(n) % 3
    X = rng.standard_normal((n, 10, width)).astype(np.float32)
    X[:, :, :12] += 1.5 * (y[:, None, None] == np.arange(12)[None, None, :] % 3)
    return UpperLayers(arrays, 10, width), X.reshape(n, -1), y


def test_the_head_learns_and_reports_its_choices() -> None:
    layers, X, y = synthetic_cut()
    head = UpperHead(layers, lr_grid=(1e-3,), weight_decay_grid=(1e-3,), dropout_grid=(0.0, 0.5), max_epochs=15)
    head.fit(X[:90], y[:90], groups=np.arange(90) // 3)
    assert set(head.selected_) == {"lr", "weight_decay", "dropout", "epochs"} and head.chooses()
    proba = head.predict_proba(X[90:])
    assert proba.shape == (30, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(head.predict(X[90:]) == y[90:]) > 0.8


def test_too_few_groups_of_a_class_name_that_class_not_its_index_among_the_rows() -> None:
    """Rows of classes 1 and 2 only, class 2 in one group: the error names label 2 (its index among the rows is 1)."""
    from mvemo.manifests.folds import TooFewGroups

    layers, X, y = synthetic_cut()
    keep = np.flatnonzero(y > 0)[:40]
    groups = np.where(y[keep] == 2, 0, np.arange(len(keep)) + 1)
    with pytest.raises(TooFewGroups) as raised:
        UpperHead(layers, max_epochs=1).fit(X[keep], y[keep], groups=groups)
    assert raised.value.label == 2


def test_stage_two_fine_tunes_a_cut_input_only_with_the_layers_above_it(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c.h5",
        nets={"musicnn.upper": (SMALL, 0.3)},
        n_per_class=12,
        patches={"musicnn.upper": 10},
        layers={"musicnn.upper": "pooled"},
    )
    with pytest.raises(
        ConfigError, match=r"musicnn\.upper holds a music encoder's activations at a cut.*--weights-dir"
    ):
        cross_validate(cache, models="musicnn.upper")
    layers, _, _ = synthetic_cut(pooled=SMALL, hidden=8)
    result = cross_validate(cache, models="musicnn.upper", upper={"musicnn.upper": layers})
    choices = result.repeats[0]["musicnn.upper"].choices
    assert len(choices) == 3 and all(set(c) == {"lr", "weight_decay", "dropout", "epochs"} for c in choices)


def test_a_cut_stays_in_the_cache_and_is_read_a_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cut's activations (0.5 MB a clip) are never read whole, in the CV nor for the final model: stage two reads
    them a batch at a time, and its choices follow ``[fuse] upper_*``."""
    from mvemo.cache.read import Cache
    from mvemo.cache.store import CacheWriter
    from mvemo.fuse.heads.upper_net import CHUNK
    from mvemo.fuse.inputs import CutRows, read_input
    from mvemo.fuse.selection import SelectionConfig
    from mvemo.fuse.stage import fuse_cache
    from mvemo.manifests import CacheError

    cache = embedding_cache(
        tmp_path / "c.h5",
        nets={"musicnn.upper": (SMALL, 0.3)},
        n_per_class=40,  # 80 training rows a fold: more than a chunk
        patches={"musicnn.upper": 10},
        layers={"musicnn.upper": "pooled"},
    )
    with Cache(cache) as reader:
        whole = reader.read_matrix("emb/musicnn.upper/all")
        X, done = read_input(reader, "emb/musicnn.upper/all")
    assert isinstance(X, CutRows) and X.shape == whole.shape and done.all()
    rows = np.array([7, 3, 80])
    assert isinstance(X[rows], CutRows) and X[rows][1:].shape == (2, whole.shape[1])
    np.testing.assert_array_equal(X[rows][1:].read(), whole[rows[1:]])
    np.testing.assert_array_equal(np.asarray(X), whole)

    read_sizes = []
    original = Cache.read_rows

    def recorded(self: Cache, name: str, rows: Any = None) -> Any:
        read_sizes.append(len(self) if rows is None else len(rows))
        return original(self, name, rows)

    def never_whole(self: CutRows, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cut's rows were read whole")

    monkeypatch.setattr(Cache, "read_rows", recorded)
    monkeypatch.setattr(CutRows, "__array__", never_whole)
    layers, _, _ = synthetic_cut(pooled=SMALL, hidden=8)
    selection = SelectionConfig(upper_max_epochs=1, upper_lr_grid=(1e-3,), upper_weight_decay_grid=(0.0,))
    result = cross_validate(cache, models="musicnn.upper", upper={"musicnn.upper": layers}, selection=selection)
    choices = result.repeats[0]["musicnn.upper"].choices
    assert [(c["lr"], c["weight_decay"], c["epochs"]) for c in choices] == [(1e-3, 0.0, 1)] * 3
    assert read_sizes and max(read_sizes) <= CHUNK < 80
    read_sizes.clear()
    fuse_cache(cache, tmp_path / "out", models="musicnn.upper", upper={"musicnn.upper": layers}, selection=selection)
    assert read_sizes and max(read_sizes) <= CHUNK

    with Cache(cache) as reader:
        unread, _ = read_input(reader, "emb/musicnn.upper/all")
    del X
    gc.collect()  # the file closes with the last rows that read it: the writer below opens it in this process
    with CacheWriter(cache, None) as writer:  # stage one starts a row over while stage two reads
        writer.fail("emb/musicnn.upper/all", 3, "clip c3: started over")
    with pytest.raises(CacheError, match=r"changed while stage two read it: emb/musicnn.upper/all was written again"):
        unread[rows].read()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("upper_max_epochs", 0, "upper_max_epochs = 0: expected an integer >= 1"),
        ("upper_lr_grid", [0.0], r"upper_lr_grid = \[0.0\]: expected a non-empty list of numbers > 0"),
        (
            "upper_weight_decay_grid",
            [-1.0],
            r"upper_weight_decay_grid = \[-1.0\]: expected a non-empty list of numbers >= 0",
        ),
    ],
)
def test_the_upper_recipe_of_the_fuse_table_is_checked(key: str, value: Any, message: str) -> None:
    from mvemo.fuse.selection import SelectionConfig

    with pytest.raises(ConfigError, match=rf"\[fuse\] {message}"):
        SelectionConfig.from_table({key: value})


CUT_LAYOUTS = {  # a cut of each kind: (the net, synthetic_cut's options, an array to remove, an array to damage)
    "pooled": ("musicnn", {}, "bn_shift", "dense_bias"),
    "cnn2_cut": ("musicnn", {"convs": 1}, "cnn3_scale", "cnn3_shift"),
    "cnn1_cut": ("musicnn", {"convs": 2}, "cnn2_weight", "cnn3_bias"),
    "pool4": ("msdvgg", {"vgg": True}, "conv5_shift", "conv5_scale"),
}


@pytest.mark.parametrize("cut", sorted(CUT_LAYOUTS))
def test_a_fine_tuned_head_is_saved_as_arrays_predicts_as_fitted_and_is_checked_whole(tmp_path: Path, cut: str) -> None:
    import h5py

    from mvemo.cache.read import Cache
    from mvemo.fuse.saved.model import HEADS_H5, load_fusion_model
    from mvemo.fuse.stage import fuse_cache

    net, options, removed, damaged = CUT_LAYOUTS[cut]
    layers, _, _ = synthetic_cut(pooled=SMALL, hidden=8, **options)  # type: ignore[arg-type]
    published = {name: array.copy() for name, array in layers.arrays.items()}
    name = f"{net}.upper"
    cache = embedding_cache(
        tmp_path / "c.h5", nets={name: (layers.width, 0.3)}, n_per_class=12, patches={name: 10}, layers={name: cut}
    )
    _, folder = fuse_cache(cache, tmp_path / "out", models=name, upper={name: layers})
    saved = load_fusion_model(folder)
    with Cache(cache) as reader:
        X, y, groups = reader.read_matrix(f"emb/{name}/all"), reader.y, np.asarray(reader.groups)
    head = UpperHead(layers).fit(X, y, groups)
    for key, array in published.items():  # training leaves the published layers as they were, and moves its own
        np.testing.assert_array_equal(layers.arrays[key], array)
    assert any(not np.array_equal(head.upper_.layers.arrays[key], array) for key, array in published.items())
    np.testing.assert_allclose(saved.predict(name, {name: X}), head.predict_proba(X), atol=1e-6)

    def damage(edit: Any) -> str:
        with h5py.File(folder / HEADS_H5, "r") as f:
            (key,) = f.keys()
            arrays = {k: f[key][k][()] for k in f[key]}
        broken = tmp_path / f"broken-{len(list(tmp_path.glob('broken-*')))}"
        shutil.copytree(folder, broken)
        with h5py.File(broken / HEADS_H5, "w") as f:
            group = f.create_group(key)
            for k, array in edit(arrays).items():
                group[k] = array
        with pytest.raises(ConfigError) as err:
            load_fusion_model(broken)
        return str(err.value)

    assert "the layers above a cut hold" in damage(lambda a: {k: v for k, v in a.items() if k != removed})
    assert "does not chain" in damage(lambda a: a | {damaged: a[damaged][:1]})  # broadcastable, and caught
    assert "classifier_bias (1,)" in damage(lambda a: a | {"classifier_bias": a["classifier_bias"][:1]})
    assert "width" in damage(lambda a: a | {"width": np.asarray(int(a["width"]) + 1)})
