"""Upper-layer fine-tuning from cached activations: a music encoder's layers above a cut, trained in stage two
as a head.

Stage one caches each clip's per-patch activations at a cut once (``[net.musicnn.upper] layer = "pooled",
pool = "patches"``; the cuts are ``extract.nets.musicnn_patches.UPPER_CUTS``). The layers above it start from the
published weights and train here, per outer fold, with a new classifier over the clip's mean penultimate: the
whole net with its lower layers frozen, without running them (``tests/fuse/test_upper.py`` checks outputs and
gradients against the net). The layers above each cut, by the arrays ``upper_layers`` gives:

- musicnn ``pooled`` (the back end's input, 1,506 values per 3-s patch): its batch-normalized dense layer of 200;
- musicnn ``cnn2_cut`` / ``cnn1_cut`` (the mid end's map over time after its second / first convolution, and the
  back end's input of the channels below): the last one / two residual convolutions of the mid end, then the back
  end;
- msdvgg ``pool4``: its last convolutional block, whose pooled map (256) is the penultimate.

- The classifier starts as a linear probe: the logistic head fitted to the frozen penultimate (linear probing
  then fine-tuning, Kumar et al. 2022, keeps the pretrained features from being torn by a random head).
- Each step draws ``subset`` of a clip's patches: an augmentation; a clip is scored on all of them.
- Weight decay pulls every parameter toward where it started (L2-SP, Li et al. 2018), not toward 0.
- Dropout acts where the published net had it in training: on musicnn's back-end input, on msdvgg's last block's
  (there at the grid's rate, 0.5, where msdvgg trained with 0.25).
- Learning rate, weight decay and dropout are chosen on ``inner_folds`` inner folds of the training rows
  (grouped, stratified, as every head's), each fold trained with early stopping on its validation rows and the
  setting of best pooled out-of-fold score kept; its epochs are the mean of its folds' best epochs. Then the
  head trains on every training row for that many epochs. Three inner folds, not five, and one dropout: the
  time of a fold on 900 clips (``mvemo bench upper``). Which cut is chosen on inner folds through
  ``best(musicnn.upper, musicnn.cnn2, ...)``, as any choice among inputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels

from mvemo.fuse.heads.linear import LogisticHead, _groups, cross_fitted_epochs
from mvemo.fuse.selection import SelectionConfig, inner_score
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.folds import inner_splits

VGG_POOL4_MELS = 6  # msdvgg's pool4 map per patch is (time, 6 mel bands, 128 channels)
MID_CONVS = ("cnn2", "cnn3")  # musicnn's residual mid-end convolutions a cut may lie under, bottom up
CHUNK = 64  # clips through the layers at a time when scoring


@dataclass(frozen=True)
class UpperLayers:
    """The published layers above a cut (arrays by name, from ``extract.nets.musicnn.upper_layers``), the patches
    per clip of the cached activations they read and the columns per patch."""

    arrays: Mapping[str, np.ndarray]
    patches: int
    width: int


BACK_END = {
    "pool_scale": "P",
    "pool_shift": "P",
    "dense_weight": "HP",
    "dense_bias": "H",
    "bn_scale": "H",
    "bn_shift": "H",
}
MID_CONV = {"weight": "CCK", "bias": "C", "scale": "C", "shift": "C"}
VGG_BLOCK = {"conv5_weight": "CCkk", "conv5_bias": "C", "conv5_scale": "C", "conv5_shift": "C"}


def layers_problem(layers: UpperLayers) -> str | None:
    """What keeps ``layers`` from being the layers above one of the cuts, with every array of its exact shape and
    ``width`` columns per patch that they read; None if nothing does."""
    arrays = layers.arrays
    if "conv5_weight" in arrays:
        expected = VGG_BLOCK
    else:
        names = [name for name in MID_CONVS if any(key.startswith(f"{name}_") for key in arrays)]
        if names != list(MID_CONVS[len(MID_CONVS) - len(names) :]):
            return f"its mid-end convolutions {names} are not the last ones of {list(MID_CONVS)}"
        expected = BACK_END | {f"{name}_{part}": dims for name in names for part, dims in MID_CONV.items()}
    if set(arrays) != set(expected):
        return f"it holds the arrays {sorted(arrays)}, the layers above a cut hold {sorted(expected)}"
    sizes: dict[str, int] = {}
    for name, dims in expected.items():
        shape = np.shape(arrays[name])
        if len(shape) != len(dims) or any(sizes.setdefault(d, n) != n for d, n in zip(dims, shape)):
            return f"{name} has shape {shape}, which does not chain with the others ({', '.join(expected)})"
    if "conv5_weight" in arrays:
        per_step = VGG_POOL4_MELS * sizes["C"]
        fits = (
            sizes["k"] == 3 and layers.width % per_step == 0 and layers.width // per_step >= 4
        )  # a window of the pool
        return (
            None if fits else f"conv5 over width {layers.width} is not a 3 x 3 conv over 4 or more steps of {per_step}"
        )
    convs = (len(expected) - len(BACK_END)) // len(MID_CONV)
    pooled_below = sizes["P"] - 2 * convs * sizes.get("C", 0)  # the back end's input columns cached as they are
    steps = layers.width - pooled_below
    fits = steps == 0 if not convs else pooled_below >= 0 and steps > 0 and steps % sizes["C"] == 0
    return None if fits else f"width {layers.width} does not fit the back end's input of {sizes['P']}"


def penultimate_size(layers: UpperLayers) -> int:
    """The width of the penultimate the classifier reads: musicnn's dense layer, or msdvgg's pooled last map."""
    if "conv5_weight" in layers.arrays:
        channels = len(layers.arrays["conv5_bias"])
        return channels * (layers.width // (VGG_POOL4_MELS * channels) // 4) * (VGG_POOL4_MELS // 4)
    return len(layers.arrays["dense_bias"])


@dataclass(frozen=True)
class UpperSoftmax:
    """The whole of a fitted upper head, as a saved model stores it: its classes, the fine-tuned ``layers`` above
    the cut and the classifier over the clip's mean penultimate. ``arrays()`` lays it out flat for ``heads.h5``
    (``from_arrays`` reads it back)."""

    classes: np.ndarray
    layers: UpperLayers
    classifier_weight: np.ndarray
    classifier_bias: np.ndarray

    BASE = ("classes", "patches", "width", "classifier_weight", "classifier_bias")

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "classes": self.classes,
            "patches": np.asarray(self.layers.patches),
            "width": np.asarray(self.layers.width),
            "classifier_weight": self.classifier_weight,
            "classifier_bias": self.classifier_bias,
            **self.layers.arrays,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> UpperSoftmax:
        layers = {name: np.asarray(a) for name, a in arrays.items() if name not in cls.BASE}
        layers_above = UpperLayers(layers, int(arrays["patches"]), int(arrays["width"]))
        return cls(np.asarray(arrays["classes"]), layers_above, arrays["classifier_weight"], arrays["classifier_bias"])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of clips ``X`` (clips, patches x width): an array, or rows a lazy matrix reads
        (``rows_of``) a chunk at a time."""
        width = self.layers.patches * self.layers.width
        if X.shape[1] != width:
            raise ConfigError(
                f"an upper head of the saved model reads {width} columns and its input gives {X.shape[1]}; retrain it"
                " with `mvemo fuse` on a cache of the same feature sets"
            )
        import torch

        with one_thread(), torch.no_grad():
            net = upper_net(self.layers, len(self.classes), 0.0)
            net.classifier.weight.copy_(torch.as_tensor(np.asarray(self.classifier_weight, np.float32)))
            net.classifier.bias.copy_(torch.as_tensor(np.asarray(self.classifier_bias, np.float32)))
            return _proba(net, X, np.arange(len(X)), self.layers.patches)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread: stage two runs fits side by side, one per worker."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def upper_net(layers: UpperLayers, n_classes: int, dropout: float) -> Any:
    """The layers above the cut with a classifier: (B, patches, width) -> (B, n_classes) logits of the clip's mean
    penultimate. Every array of ``layers`` is a parameter of ``net.layer`` by its name."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class UpperNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ParameterDict(  # copies: training must leave the published arrays as they are
                {
                    name: nn.Parameter(torch.tensor(np.asarray(a), dtype=torch.float32))
                    for name, a in layers.arrays.items()
                }
            )
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(penultimate_size(layers), n_classes)

        def penultimate(self, x: torch.Tensor) -> torch.Tensor:
            """(N, width) activations of N patches -> (N, hidden)."""
            p = self.layer
            if "conv5_weight" in p:  # msdvgg: the last block over the pool4 map
                channels = p["conv5_bias"].shape[0]
                h = self.dropout(x).reshape(len(x), -1, VGG_POOL4_MELS, channels).permute(0, 3, 1, 2)
                h = F.relu(F.conv2d(h, p["conv5_weight"], p["conv5_bias"], padding=1))
                h = F.max_pool2d(h * p["conv5_scale"][:, None, None] + p["conv5_shift"][:, None, None], 4, 4)
                return h.permute(0, 2, 3, 1).reshape(len(x), -1)  # TF's flattening order
            convs = [name for name in MID_CONVS if f"{name}_weight" in p]
            if convs:  # musicnn: the mid end's last convolutions, then each new map's max and mean over time
                channels = p[f"{convs[0]}_bias"].shape[0]
                below = x.shape[1] - (p["pool_scale"].shape[0] - 2 * channels * len(convs))
                h, pooled = x[:, :below].reshape(len(x), below // channels, channels).transpose(1, 2), [x[:, below:]]
                for name in convs:
                    k = p[f"{name}_weight"].shape[2]  # TF 'same': (k - 1) // 2 zeros before, k // 2 after
                    out = F.relu(F.conv1d(F.pad(h, ((k - 1) // 2, k // 2)), p[f"{name}_weight"], p[f"{name}_bias"]))
                    h = h + out * p[f"{name}_scale"][:, None] + p[f"{name}_shift"][:, None]
                    pooled.append(torch.stack([h.amax(dim=2), h.mean(dim=2)], dim=2).reshape(len(x), -1))
                x = torch.cat(pooled, dim=1)
            x = self.dropout(x * p["pool_scale"] + p["pool_shift"])
            return torch.relu(F.linear(x, p["dense_weight"], p["dense_bias"])) * p["bn_scale"] + p["bn_shift"]

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            """(B, patches, width) -> (B, hidden): the mean of the patches' penultimates."""
            return self.penultimate(x.reshape(-1, x.shape[2])).reshape(x.shape[0], x.shape[1], -1).mean(dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.embed(x))

    return UpperNet()


class UpperHead(ClassifierMixin, BaseEstimator):
    """A head that fine-tunes the published layers above a cut over cached per-patch activations (module doc).

    ``selected_`` holds the chosen ``lr``, ``weight_decay``, ``dropout`` and ``epochs``; ``inner_proba_`` the inner
    folds' out-of-fold probabilities at that setting.
    """

    def __init__(
        self,
        layers: UpperLayers | None = None,
        lr_grid: tuple[float, ...] = SelectionConfig.upper_lr_grid,
        weight_decay_grid: tuple[float, ...] = SelectionConfig.upper_weight_decay_grid,
        dropout_grid: tuple[float, ...] = (0.5,),
        max_epochs: int = SelectionConfig.upper_max_epochs,
        patience: int = 6,
        batch_size: int = 32,
        subset: int = 5,
        inner_folds: int = 3,
        scoring: str = "log_loss",
        random_state: int = 0,
    ) -> None:
        self.layers = layers
        self.lr_grid = lr_grid
        self.weight_decay_grid = weight_decay_grid
        self.dropout_grid = dropout_grid
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.subset = subset
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.random_state = random_state

    def chooses(self) -> bool:
        return True

    def fit(self, X: Any, y: Any, groups: Any = None) -> UpperHead:
        """Fit on clips ``X`` (clips, patches x width): an array, or rows a lazy matrix reads when a batch needs them
        (``rows_of``), so that a cut's activations need not be held whole."""
        y = np.asarray(y)
        self.classes_ = unique_labels(y)
        target = np.searchsorted(self.classes_, y)
        self._check_width(X)
        self.n_features_in_ = X.shape[1]
        groups = np.asarray(_groups(groups, len(y)))
        # split on y, not on its codes: a class with too few groups is then named by its label (the same splits)
        splits = inner_splits(y, list(groups), k=self.inner_folds, seed=self.random_state)
        with one_thread():
            probes = [self._probe(X, train, target[train], groups[train]) for train, _ in splits]
            best: tuple[float, dict[str, float], np.ndarray] | None = None
            for lr, decay, dropout in itertools.product(self.lr_grid, self.weight_decay_grid, self.dropout_grid):
                trained = [
                    self._train(X, target, train, val, probe, lr, decay, dropout, self.max_epochs)[1:]
                    for (train, val), probe in zip(splits, probes, strict=True)
                ]
                proba = cross_fitted_epochs(trained, [val for _, val in splits], (len(y), len(self.classes_)))
                score = inner_score(target, proba, self.scoring)
                if best is None or score > best[0]:
                    epochs = max(1, round(float(np.mean([epoch for epoch, _ in trained]))))
                    best = (score, {"lr": lr, "weight_decay": decay, "dropout": dropout, "epochs": epochs}, proba)
            assert best is not None  # the grids are non-empty
            _, self.selected_, self.inner_proba_ = best
            s = self.selected_
            every = np.arange(len(y))
            probe = self._probe(X, every, target, groups)
            net, _, _ = self._train(
                X, target, every, None, probe, s["lr"], s["weight_decay"], s["dropout"], int(s["epochs"])
            )
        layers = self._layers()
        tuned = {name: p.detach().numpy().copy() for name, p in net.layer.items()}
        self.upper_ = UpperSoftmax(
            classes=self.classes_,
            layers=UpperLayers(tuned, layers.patches, layers.width),
            classifier_weight=net.classifier.weight.detach().numpy().copy(),
            classifier_bias=net.classifier.bias.detach().numpy().copy(),
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.upper_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _layers(self) -> UpperLayers:
        if self.layers is None:
            raise ValueError("UpperHead(layers=None): give it the layers above the cut (fuse.heads.upper.UpperLayers)")
        return self.layers

    def _check_width(self, X: Any) -> None:
        layers = self._layers()
        width = layers.patches * layers.width
        if len(X.shape) != 2 or X.shape[1] != width:
            raise ConfigError(
                f"the layers above the cut read {layers.patches} patches of {layers.width} columns ({width}); the input"
                f" gives {X.shape[1:]}: compute it with the same net options as those layers"
            )

    def _probe(self, X: Any, rows: np.ndarray, target: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's start: the logistic head on the frozen penultimate of clips ``rows`` of ``X`` (``target``
        and ``groups`` theirs; C chosen on their inner folds, grouped), as (weight, bias) over the raw penultimate."""
        frozen = frozen_penultimate(self._layers(), X, rows)
        head = LogisticHead(scoring=self.scoring, random_state=self.random_state)
        linear = head.fit(frozen, target, groups=groups).linear_
        weight = np.zeros((len(self.classes_), frozen.shape[1]))
        bias = np.full(len(self.classes_), -10.0)  # a class these rows lack
        weight[linear.classes] = linear.weights / linear.scale
        bias[linear.classes] = linear.bias - weight[linear.classes] @ linear.mean
        return weight, bias

    def _train(
        self,
        X: Any,
        target: np.ndarray,
        train: np.ndarray,
        val: np.ndarray | None,
        probe: tuple[np.ndarray, np.ndarray],
        lr: float,
        decay: float,
        dropout: float,
        epochs: int,
    ) -> tuple[Any, int, list[np.ndarray]]:
        """The net trained on rows ``train`` of clips ``X`` for at most ``epochs`` epochs, the epoch kept (the one of
        least validation loss on rows ``val``, early stopping after ``patience`` worse epochs; else the last) and the
        probabilities of rows ``val`` after each epoch trained; a batch's rows are read as it needs them."""
        import torch
        import torch.nn.functional as F

        torch.manual_seed(self.random_state)
        generator = torch.Generator().manual_seed(self.random_state)
        net = upper_net(self._layers(), len(self.classes_), dropout)
        with torch.no_grad():
            net.classifier.weight.copy_(torch.from_numpy(probe[0]))
            net.classifier.bias.copy_(torch.from_numpy(probe[1]))
        start = [p.detach().clone() for p in net.parameters()]
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        yt = torch.from_numpy(target)
        n_patches = self._layers().patches
        keep = min(self.subset, n_patches)
        best, best_state, best_epoch, stale = np.inf, None, epochs, 0
        curve: list[np.ndarray] = []
        for epoch in range(1, epochs + 1):
            net.train()
            order = torch.from_numpy(train)[torch.randperm(len(train), generator=generator)]
            for first in range(0, len(order), self.batch_size):
                rows = order[first : first + self.batch_size]
                drawn = torch.rand(len(rows), n_patches, generator=generator).argsort(dim=1)[:, :keep]
                clips = torch.from_numpy(rows_of(X, rows.numpy()).reshape(len(rows), n_patches, -1))
                batch = clips[torch.arange(len(rows))[:, None], drawn]
                penalty = sum(((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), start, strict=True))
                loss = F.cross_entropy(net(batch), yt[rows]) + decay * penalty
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if val is None:
                continue
            curve.append(_proba(net, X, val, n_patches))
            score = float(-np.mean(np.log(np.clip(curve[-1][np.arange(len(val)), target[val]], 1e-300, 1.0))))
            if score < best - 1e-6:
                best, best_state, best_epoch, stale = (
                    score,
                    {k: v.clone() for k, v in net.state_dict().items()},
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        return net, best_epoch, curve


def rows_of(X: Any, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of clips ``X`` as a float32 array: an array's, or those a lazy matrix reads (an object with
    ``read(rows)``, as ``fuse.inputs.CutRows``)."""
    read = getattr(X, "read", None)
    return np.asarray(X[rows] if read is None else read(rows), dtype=np.float32)


def chunks(X: Any, rows: np.ndarray, patches: int) -> Iterator[np.ndarray]:
    """Clips ``rows`` of ``X`` as (clips, patches, width) arrays of at most ``CHUNK`` clips: a conv cut's maps of
    900 clips would take gigabytes."""
    for first in range(0, len(rows), CHUNK):
        part = rows[first : first + CHUNK]
        yield rows_of(X, part).reshape(len(part), patches, -1)


def frozen_penultimate(layers: UpperLayers, X: Any, rows: np.ndarray) -> np.ndarray:
    """The mean penultimate of clips ``rows`` of ``X`` (clips, patches x width) through the published layers,
    untrained: (len(rows), hidden)."""
    import torch

    with torch.no_grad():
        net = upper_net(layers, 2, 0.0).eval()
        return np.concatenate([net.embed(torch.from_numpy(part)).numpy() for part in chunks(X, rows, layers.patches)])


def _proba(net: Any, X: Any, rows: np.ndarray, patches: int) -> np.ndarray:
    """A trained net's class probabilities of clips ``rows`` of ``X`` (clips, patches x width), every patch read."""
    import torch

    net.eval()
    with torch.no_grad():
        logits = [net(torch.from_numpy(part)) for part in chunks(X, rows, patches)]
        return torch.softmax(torch.cat(logits), dim=1).numpy().astype(np.float64)
