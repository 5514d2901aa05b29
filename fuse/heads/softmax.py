"""A fitted head, as a saved model stores it and ``predict`` runs it: plain numpy, without scikit-learn.

Every classification head of ``fuse.heads`` but the upper one (``fuse.heads.upper_net.UpperSoftmax``: layers of a
net) reduces to a softmax over a linear map of standardized inputs (``LinearSoftmax``) or over a kernel expansion of
them (``KernelSoftmax``); fitting them is the heads' own modules'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvemo.manifests.errors import ConfigError


@dataclass(frozen=True)
class LinearSoftmax:
    """p(y | x) = softmax(((x - mean) / scale) @ weights.T + bias), the whole of a fitted head."""

    classes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != len(self.mean):  # a saved head over inputs that now have another size
            raise ConfigError(
                f"a head of the saved model reads {len(self.mean)} columns and its inputs give {X.shape[1]}; retrain it"
                " with `mvemo fuse` on a cache of the same feature sets"
            )
        logits = ((X - self.mean) / self.scale) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


@dataclass
class KernelSoftmax:
    """p(y | x) = softmax(K(z, support) @ coef.T + bias), z = ((x - mean) / scale)[columns] and K(z, s) = exp(-gamma
    |z - s|^2): the whole of a fitted kernel head (its temperature folded into ``coef`` and ``bias``); ``columns``
    None: every column (a head saved before columns were selected holds none)."""

    classes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    support: np.ndarray
    coef: np.ndarray
    bias: np.ndarray
    gamma: np.ndarray
    columns: np.ndarray | None = None

    def logits(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != len(self.mean):
            raise ConfigError(
                f"a head of the saved model reads {len(self.mean)} columns and its inputs give {X.shape[1]}; retrain it"
                " with `mvemo fuse` on a cache of the same feature sets"
            )
        Z = (X - self.mean) / self.scale
        if self.columns is not None:
            Z = Z[:, self.columns]
        return rbf(self.support, Z, float(self.gamma)) @ self.coef.T + self.bias

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self.logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def rbf(support: np.ndarray, Z: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma |z - s|^2) for every row z of ``Z`` and s of ``support``: (n_rows, n_support)."""
    distances = (Z * Z).sum(axis=1)[:, None] + (support * support).sum(axis=1)[None, :] - 2 * Z @ support.T
    return np.exp(-gamma * np.maximum(distances, 0.0))
