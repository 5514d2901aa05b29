"""What the tests of the pretrained nets share: the files of ../shared (or $MVEMO_SHARED), and the error measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def shared_file(path: Path) -> Path:
    """``path``, or a skip where a clone has no ../shared (the GPU check sets $MVEMO_SHARED)."""
    if not path.is_file():
        pytest.skip(f"{path} is absent (a clone without ../shared)")
    return path


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """The relative L2 error of ``a`` against the reference ``b``, in float64."""
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


def face_patch(reference: dict[str, np.ndarray], frame: int, face: int, margin: float) -> np.ndarray:
    """A face of the faces reference (its MTCNN box in one of its frames) with ``margin`` box widths around it,
    cut at the frame's edges."""
    x1, y1, x2, y2 = (int(v) for v in reference["mtcnn/boxes"][frame, face])
    pad = int((x2 - x1) * margin)
    return reference["frames"][frame][max(y1 - pad, 0) : y2 + pad, max(x1 - pad, 0) : x2 + pad]
