"""A fitted value model as a saved model holds it: a weighted sum of parts, each a linear map (``LinearPart``) or a
kernel expansion (``KernelPart``) of concatenated inputs, run in plain numpy (``fuse.targets.regression`` fits them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from mvemo.fuse.fitted import concatenated
from mvemo.fuse.heads.softmax import rbf
from mvemo.fuse.heads.standardize import standardized


class LinearPart(NamedTuple):
    """One term of a fitted model's predictions: ``weight * (clip(X, low, high) @ coef.T + intercept)`` with ``X``
    the inputs' concatenated columns, ``low`` and ``high`` (d,) their range in the rows fitted, ``coef`` (m, d) and
    ``intercept`` (m,) for m dimensions of values."""

    inputs: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    weight: float
    low: np.ndarray
    high: np.ndarray

    def values(self, X: np.ndarray) -> np.ndarray:
        """The part's values of rows ``X`` (n, d), its weight aside: shape (n, m)."""
        return np.clip(X, self.low, self.high) @ self.coef.T + self.intercept


class KernelPart(NamedTuple):
    """One term of a fitted model's predictions: ``weight * (rbf(support, z) @ coef.T + intercept)`` with ``z`` the
    inputs' concatenated columns clipped to ``low`` and ``high`` (d,) and standardized by ``mean`` and ``scale`` (d,),
    ``rbf`` the kernel exp(-gamma |z - s|^2) with each row s of ``support`` (k, d), ``coef`` (m, k) and ``intercept``
    (m,) (``fuse.targets.value_heads.KernelRidgeHead``: one dimension's row nonzero)."""

    inputs: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    weight: float
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    support: np.ndarray
    gamma: float

    def values(self, X: np.ndarray) -> np.ndarray:
        """The part's values of rows ``X`` (n, d), its weight aside: shape (n, m)."""
        Z = standardized(np.clip(X, self.low, self.high), self.mean, self.scale)
        return rbf(self.support, Z, self.gamma) @ self.coef.T + self.intercept


Part = LinearPart | KernelPart


def predict_parts(parts: Sequence[Part], blocks: Mapping[str, np.ndarray]) -> np.ndarray:
    """The sum of ``parts`` on rows ``blocks`` (input -> (n, d_i)): shape (n, m)."""
    return np.sum([part.weight * part.values(concatenated(blocks, part.inputs)) for part in parts], axis=0)
