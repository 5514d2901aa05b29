"""Upper-layer fine-tuning from cached activations: a music encoder's layers above a cut, trained in stage two
as a head.

Stage one caches each clip's per-patch activations at the cut once (``[net.musicnn.upper] layer = "pooled",
pool = "patches"``: the back end's input, 1,506 values per 3-s patch). The layers above it (musicnn's
batch-normalized dense layer of 200, its penultimate) start from the published weights and train here, per
outer fold, with a new classifier over the clip's mean penultimate: the whole net with its lower layers
frozen, without running them (``tests/fuse/test_upper.py`` checks outputs and gradients against the net).

- The classifier starts as a linear probe: the logistic head fitted to the frozen penultimate (linear probing
  then fine-tuning, Kumar et al. 2022, keeps the pretrained features from being torn by a random head).
- Each step draws ``subset`` of a clip's patches: an augmentation; a clip is scored on all of them.
- Weight decay pulls every parameter toward where it started (L2-SP, Li et al. 2018), not toward 0.
- Learning rate, weight decay and dropout are chosen on ``inner_folds`` inner folds of the training rows
  (grouped, stratified, as every head's), each fold trained with early stopping on its validation rows and the
  setting of best pooled out-of-fold score kept; its epochs are the mean of its folds' best epochs. Then the
  head trains on every training row for that many epochs. Three inner folds, not five, and one dropout: the
  time of a fold on 900 clips (``mvemo bench upper``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels

from mvemo.fuse.heads import LogisticHead, _groups
from mvemo.fuse.selection import inner_score
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.folds import inner_splits

UPPER_ARRAYS = ("pool_scale", "pool_shift", "dense_weight", "dense_bias", "bn_scale", "bn_shift")


@dataclass(frozen=True)
class UpperLayers:
    """The published layers above the cut (``UPPER_ARRAYS``, from ``extract.nets.musicnn.MusicnnPatches.
    upper_layers``) and the patches per clip of the cached activations they read."""

    arrays: Mapping[str, np.ndarray]
    patches: int


@dataclass(frozen=True)
class UpperSoftmax:
    """The whole of a fitted upper head, as a saved model stores it (``fuse.saved_check.UPPER_HEAD_ARRAYS``):
    p(y | clip) = softmax(classifier(mean over the clip's patches of bn_scale * relu(dense(pool_scale * x +
    pool_shift)) + bn_shift)), in numpy."""

    classes: np.ndarray
    pool_scale: np.ndarray
    pool_shift: np.ndarray
    dense_weight: np.ndarray
    dense_bias: np.ndarray
    bn_scale: np.ndarray
    bn_shift: np.ndarray
    classifier_weight: np.ndarray
    classifier_bias: np.ndarray
    patches: np.ndarray  # a 0-d integer

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        width = int(self.patches) * len(self.pool_scale)
        if X.shape[1] != width:
            raise ConfigError(
                f"an upper head of the saved model reads {width} columns and its input gives {X.shape[1]}; retrain it"
                " with `mvemo fuse` on a cache of the same feature sets"
            )
        x = X.reshape(len(X), int(self.patches), -1) * self.pool_scale + self.pool_shift
        hidden = np.maximum(x @ self.dense_weight.T + self.dense_bias, 0.0) * self.bn_scale + self.bn_shift
        return softmax(hidden.mean(axis=1) @ self.classifier_weight.T + self.classifier_bias, axis=1)


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


def upper_net(arrays: Mapping[str, np.ndarray], n_classes: int, dropout: float) -> Any:
    """The layers above the cut with a classifier: (B, patches, 1506) -> (B, n_classes) logits of the clip's mean
    penultimate."""
    import torch
    from torch import nn

    class UpperNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            tensor = {name: torch.as_tensor(np.asarray(arrays[name], dtype=np.float32)) for name in UPPER_ARRAYS}
            self.pool_scale, self.pool_shift = nn.Parameter(tensor["pool_scale"]), nn.Parameter(tensor["pool_shift"])
            hidden, width = tensor["dense_weight"].shape
            self.dense = nn.Linear(width, hidden)
            with torch.no_grad():
                self.dense.weight.copy_(tensor["dense_weight"])
                self.dense.bias.copy_(tensor["dense_bias"])
            self.bn_scale, self.bn_shift = nn.Parameter(tensor["bn_scale"]), nn.Parameter(tensor["bn_shift"])
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(hidden, n_classes)

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.dense(self.dropout(x * self.pool_scale + self.pool_shift)))
            return (h * self.bn_scale + self.bn_shift).mean(dim=1)

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
        lr_grid: tuple[float, ...] = (3e-4, 1e-3),
        weight_decay_grid: tuple[float, ...] = (1e-3, 1e-2),
        dropout_grid: tuple[float, ...] = (0.5,),
        max_epochs: int = 40,
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
        y = np.asarray(y)
        self.classes_ = unique_labels(y)
        target = np.searchsorted(self.classes_, y)
        patches = self._patches(X)
        self.n_features_in_ = np.asarray(X).shape[1]
        groups = np.asarray(_groups(groups, len(y)))
        splits = inner_splits(target, list(groups), k=self.inner_folds, seed=self.random_state)
        with one_thread():
            probes = [self._probe(patches[train], target[train], groups[train]) for train, _ in splits]
            best: tuple[float, dict[str, float], np.ndarray] | None = None
            for lr, decay, dropout in itertools.product(self.lr_grid, self.weight_decay_grid, self.dropout_grid):
                trained = [
                    self._train(patches, target, train, val, probe, lr, decay, dropout, self.max_epochs)[1:]
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
            probe = self._probe(patches, target, groups)
            net, _, _ = self._train(
                patches, target, np.arange(len(y)), None, probe, s["lr"], s["weight_decay"], s["dropout"], int(s["epochs"])
            )
        values = {name.replace(".", "_"): p.detach().numpy().astype(np.float64) for name, p in net.named_parameters()}
        layers = self._layers()
        self.upper_ = UpperSoftmax(
            classes=self.classes_,
            patches=np.asarray(layers.patches),
            **{name: values[name] for name in (*UPPER_ARRAYS, "classifier_weight", "classifier_bias")},
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.upper_.predict_proba(np.asarray(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _layers(self) -> UpperLayers:
        if self.layers is None:
            raise ValueError("UpperHead(layers=None): give it the layers above the cut (fuse.upper.UpperLayers)")
        return self.layers

    def _patches(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        layers = self._layers()
        width = layers.patches * len(layers.arrays["pool_scale"])
        if X.ndim != 2 or X.shape[1] != width:
            raise ConfigError(
                f"the layers above the cut read {layers.patches} patches of {len(layers.arrays['pool_scale'])} columns"
                f" ({width}); the input gives {X.shape[1:]}: compute it with the same net options as those layers"
            )
        return X.reshape(len(X), layers.patches, -1)

    def _probe(self, patches: np.ndarray, target: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's start: the logistic head on the frozen penultimate of these rows (C chosen on their inner
        folds, grouped), as (weight, bias) over the raw penultimate."""
        import torch

        with torch.no_grad():
            net = upper_net(self._layers().arrays, len(self.classes_), 0.0).eval()
            frozen = net.embed(torch.from_numpy(patches)).numpy()
        head = LogisticHead(scoring=self.scoring, random_state=self.random_state)
        linear = head.fit(frozen, target, groups=groups).linear_
        weight = np.zeros((len(self.classes_), frozen.shape[1]))
        bias = np.full(len(self.classes_), -10.0)  # a class these rows lack
        weight[linear.classes] = linear.weights / linear.scale
        bias[linear.classes] = linear.bias - weight[linear.classes] @ linear.mean
        return weight, bias

    def _train(
        self,
        patches: np.ndarray,
        target: np.ndarray,
        train: np.ndarray,
        val: np.ndarray | None,
        probe: tuple[np.ndarray, np.ndarray],
        lr: float,
        decay: float,
        dropout: float,
        epochs: int,
    ) -> tuple[Any, int, list[np.ndarray]]:
        """The net trained on rows ``train`` for at most ``epochs`` epochs, the epoch kept (the one of least
        validation loss on rows ``val``, early stopping after ``patience`` worse epochs; else the last) and the
        probabilities of rows ``val`` after each epoch trained."""
        import torch
        import torch.nn.functional as F

        torch.manual_seed(self.random_state)
        generator = torch.Generator().manual_seed(self.random_state)
        net = upper_net(self._layers().arrays, len(self.classes_), dropout)
        with torch.no_grad():
            net.classifier.weight.copy_(torch.from_numpy(probe[0]))
            net.classifier.bias.copy_(torch.from_numpy(probe[1]))
        start = [p.detach().clone() for p in net.parameters()]
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        X, yt = torch.from_numpy(patches), torch.from_numpy(target)
        n_patches, keep = X.shape[1], min(self.subset, X.shape[1])
        best, best_state, best_epoch, stale = np.inf, None, epochs, 0
        curve: list[np.ndarray] = []
        for epoch in range(1, epochs + 1):
            net.train()
            order = torch.from_numpy(train)[torch.randperm(len(train), generator=generator)]
            for first in range(0, len(order), self.batch_size):
                rows = order[first : first + self.batch_size]
                drawn = torch.rand(len(rows), n_patches, generator=generator).argsort(dim=1)[:, :keep]
                batch = X[rows[:, None], drawn]
                penalty = sum(((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), start, strict=True))
                loss = F.cross_entropy(net(batch), yt[rows]) + decay * penalty
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if val is None:
                continue
            curve.append(_proba(net, patches[val]))
            score = float(-np.mean(np.log(np.clip(curve[-1][np.arange(len(val)), target[val]], 1e-300, 1.0))))
            if score < best - 1e-6:
                best, best_state, best_epoch, stale = score, {k: v.clone() for k, v in net.state_dict().items()}, epoch, 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        return net, best_epoch, curve


def cross_fitted_epochs(
    trained: list[tuple[int, list[np.ndarray]]], vals: list[np.ndarray], shape: tuple[int, int]
) -> np.ndarray:
    """Out-of-fold probabilities of inner folds trained with early stopping, each fold's rows read at the epoch the
    other folds chose (their mean best epoch, or its last epoch where it stopped before): read at the epoch chosen
    on them, its own rows would flatter the setting."""
    proba = np.zeros(shape)
    for k, ((_, curve), val) in enumerate(zip(trained, vals, strict=True)):
        others = [epoch for j, (epoch, _) in enumerate(trained) if j != k] or [trained[k][0]]
        proba[val] = curve[min(max(1, round(float(np.mean(others)))), len(curve)) - 1]
    return proba


def _proba(net: Any, patches: np.ndarray) -> np.ndarray:
    """A trained net's class probabilities of clips given as (clips, patches, columns), every patch read."""
    import torch

    net.eval()
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(patches)), dim=1).numpy().astype(np.float64)
