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
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels

from mvemo.fuse.heads.linear import LogisticHead, _groups, cross_fitted_epochs
from mvemo.fuse.heads.upper_net import (
    UpperLayers,
    UpperSoftmax,
    frozen_penultimate,
    net_proba,
    one_thread,
    rows_of,
    upper_net,
)
from mvemo.fuse.selection import SelectionConfig, inner_score
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.folds import inner_splits


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
            raise ValueError(
                "UpperHead(layers=None): give it the layers above the cut (fuse.heads.upper_net.UpperLayers)"
            )
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
            curve.append(net_proba(net, X, val, n_patches))
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
