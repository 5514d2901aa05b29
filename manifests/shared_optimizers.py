"""The optimizers that stage one's fine-tuning and stage two's softmax head train with, built by one function.

It lives here, below both stages, because ``extract`` and ``fuse`` never import each
other; torch is imported on call, so the clip table's package stays light.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mvemo.manifests.errors import ConfigError

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def make_optimizer(name: str, params: Iterable[Any], *, lr: float, momentum: float = 0.0) -> Any:
    """A torch optimizer by name: Adam, or SGD and RMSprop with ``momentum``.

    Parameters
    ----------
    name : {"adam", "sgd", "rmsprop"}
    params : iterable
        Parameters or parameter groups, as torch optimizers take them.
    lr : float
        Learning rate (a group's own ``lr`` overrides it).
    momentum : float
        For SGD and RMSprop; Adam has none.
    """
    import torch

    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum)
    raise ConfigError(f"optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
