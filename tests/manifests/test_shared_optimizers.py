"""The one optimizer factory of fine-tuning and the softmax head."""

from __future__ import annotations

import pytest
import torch

from mvemo.manifests import ConfigError
from mvemo.manifests.shared_optimizers import OPTIMIZERS, make_optimizer


@pytest.mark.parametrize(
    ("name", "kind", "momentum"),
    [("adam", torch.optim.Adam, None), ("sgd", torch.optim.SGD, 0.5), ("rmsprop", torch.optim.RMSprop, 0.5)],
)
def test_each_name_builds_its_optimizer_with_the_momentum_it_has(name: str, kind: type, momentum: float | None) -> None:
    optimizer = make_optimizer(name, torch.nn.Linear(3, 2).parameters(), lr=0.01, momentum=0.5)
    assert type(optimizer) is kind and optimizer.param_groups[0]["lr"] == 0.01
    assert optimizer.param_groups[0].get("momentum") == momentum, "momentum reaches SGD and RMSprop alike"


def test_an_unknown_optimizer_lists_the_choices() -> None:
    assert OPTIMIZERS == ("adam", "sgd", "rmsprop")
    with pytest.raises(ConfigError, match="'adagrad': choose one of adam, sgd, rmsprop"):
        make_optimizer("adagrad", torch.nn.Linear(3, 2).parameters(), lr=0.01)
