"""The layers of a music encoder above a cut, as a fitted upper head holds them and ``predict`` runs them: which
arrays they are (``layers_problem``), the net they make with a classifier over the clip's mean penultimate
(``upper_net``), and the saved head (``UpperSoftmax``). Training them is ``fuse.heads.upper``'s; this module needs
torch only when a net is built, and never scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from mvemo.manifests.errors import ConfigError

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
            return net_proba(net, X, np.arange(len(X)), self.layers.patches)


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


def net_proba(net: Any, X: Any, rows: np.ndarray, patches: int) -> np.ndarray:
    """A trained net's class probabilities of clips ``rows`` of ``X`` (clips, patches x width), every patch read."""
    import torch

    net.eval()
    with torch.no_grad():
        logits = [net(torch.from_numpy(part)) for part in chunks(X, rows, patches)]
        return torch.softmax(torch.cat(logits), dim=1).numpy().astype(np.float64)
