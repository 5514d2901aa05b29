"""The ``faces`` feature sets: the performers' faces in a clip's sampled frames, as a clip vector and per frame.

Each sampled frame (the same frames as the video nets', at their working size: short side 256, whole width) goes
through MTCNN; the largest face is kept (MTCNN's own ``select_largest``), cropped as face_classification crops it
(the box's floor/ceil, clipped to the frame), made gray and 64x64 (bilinear), and read by a FER2013 Xception.

``face_frames`` (n_frames x 14): per frame, the faces found, whether one was kept, its probability, its box
(centre and size as shares of the frame's width and height) and the 7 expression probabilities.
``faces`` (one vector a clip): the share of frames with a face, faces per frame, a ``no_face`` flag, the
expression probabilities' mean and std over the frames with a face, the face's height (mean, std) and motion,
the detector's mean probability, and the mean of the expression net's penultimate features. A clip with no face
in any frame has 0 in every column but ``no_face`` (1), and the video nets' clips are unchanged: never NaN.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.extract.weights.registry import require_weights, sha256_of
from mvemo.manifests.errors import require

if TYPE_CHECKING:
    from mvemo.extract.faces.mtcnn import MTCNN, Faces
    from mvemo.extract.faces.xception import ExpressionNet

FACE_FEATURES = ("faces", "face_frames")
# The FER2013 nets' classes in output order (face_classification's src/utils/datasets.py)
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_PX = 64
MIN_FACE_PX = 20
EXTRACTOR_VERSION = "1"
DETECTOR_FILE = "faces_mtcnn.npz"
EXPRESSION_FILES = {"mini": "faces_fer2013_mini_xception.h5", "big": "faces_fer2013_big_xception.h5"}
FEATURE_DIMS = {"mini": 128, "big": 256}
FRAME_COLUMNS = (
    "faces_found", "has_face", "face_prob", "face_cx", "face_cy", "face_width", "face_height", *(f"expr_{c}" for c in FER_CLASSES)
)  # fmt: skip


@dataclass(frozen=True)
class FaceConfig:
    """The ``[faces]`` table.

    Parameters
    ----------
    expression_net : str
        ``mini`` (58k parameters, the default) or ``big`` (209k) FER2013 Xception.
    min_face_px : int
        MTCNN's smallest face, in pixels of the working-size frame (its default: 20).
    weights_dir : str or None
        Where the weight files lie (also ``--weights-dir``, ``$MVEMO_WEIGHTS``); not fingerprinted, their sha256 is.
    """

    expression_net: str = "mini"
    min_face_px: int = MIN_FACE_PX
    weights_dir: str | None = None

    def __post_init__(self) -> None:
        require(
            self.expression_net in EXPRESSION_FILES,
            f"[faces] expression_net = {self.expression_net!r}: expected one of {list(EXPRESSION_FILES)}",
        )
        require(
            isinstance(self.min_face_px, int) and 12 <= self.min_face_px <= 1024,
            f"[faces] min_face_px = {self.min_face_px!r}: expected an integer in 12..1024 (MTCNN: 20)",
        )

    def weight_files(self) -> tuple[Path, Path]:
        """The detector's and the expression net's files, checked against their published sha256.

        Raises
        ------
        WeightsError
            A file missing (naming where it was looked for and the fetch command) or corrupt.
        """
        hint = "the faces sets need both; they have no random initialisation"
        return (
            require_weights(DETECTOR_FILE, self.weights_dir, hint=hint),
            require_weights(EXPRESSION_FILES[self.expression_net], self.weights_dir, hint=hint),
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "weights_dir"}


def clip_columns(expression_net: str) -> tuple[str, ...]:
    """The ``faces`` vector's columns."""
    return (
        "face_share",
        "faces_per_frame",
        "no_face",
        *(f"expr_mean_{c}" for c in FER_CLASSES),
        *(f"expr_std_{c}" for c in FER_CLASSES),
        "face_height_mean",
        "face_height_std",
        "face_motion",
        "face_prob_mean",
        *(f"expr_feature_{k}" for k in range(FEATURE_DIMS[expression_net])),
    )


def face_specs(config: FaceConfig, n_frames: int, sampling: dict[str, Any]) -> list[FeatureSpec]:
    """The two sets' specs: their fingerprints cover the frame sampling, the config and both files' sha256."""
    files = config.weight_files()
    digests = "+".join(sha256_of(f) for f in files)
    names = "+".join(f.name for f in files)
    record = {**sampling, **config.to_json(), "crop": "box floor/ceil clipped, RGB2GRAY, bilinear 64x64"}
    return [
        FeatureSpec(
            "faces", (len(clip_columns(config.expression_net)),), "float32", "mvemo.faces", EXTRACTOR_VERSION, record,
            digests, clip_columns(config.expression_net), weights_file=names,
        ),
        FeatureSpec(
            "face_frames", (n_frames, len(FRAME_COLUMNS)), "float32", "mvemo.face_frames", EXTRACTOR_VERSION, record,
            digests, FRAME_COLUMNS, weights_file=names,
        ),
    ]  # fmt: skip


@functools.lru_cache(maxsize=2)
def _nets(config: FaceConfig) -> tuple[MTCNN, ExpressionNet]:
    """The detector and the expression net, loaded once a process (torch only now: ``import`` stays light)."""
    from mvemo.extract.faces.mtcnn import MTCNN
    from mvemo.extract.faces.xception import ExpressionNet

    detector_file, expression_file = config.weight_files()
    detector = MTCNN(min_face_px=config.min_face_px)
    detector.load_weights(detector_file)
    return detector, ExpressionNet(expression_file)


def face_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A face as the expression nets read it: the box (floor/ceil, clipped to the frame) in gray, 64x64 bilinear."""
    height, width = frame.shape[:2]
    x1, y1 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    x2, y2 = min(math.ceil(box[2]), width), min(math.ceil(box[3]), height)
    gray = cv2.cvtColor(np.ascontiguousarray(frame[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (INPUT_PX, INPUT_PX))


def gray_faces(crops: list[np.ndarray]) -> Any:
    """Gray uint8 face crops, each already 64x64, as the nets' input: a tensor (N, 1, 64, 64) in [-1, 1]."""
    import torch

    stacked = np.stack(crops).astype(np.float32) / 255.0
    return torch.from_numpy((stacked - 0.5) * 2.0).unsqueeze(1)


def compute_face_sets(frames: np.ndarray, config: FaceConfig) -> dict[str, np.ndarray]:
    """``faces`` and ``face_frames`` of one clip's frames (T, H, W, 3) uint8 RGB."""
    import torch

    detector, expression = _nets(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same floats whatever the executor
    try:
        found = detector.detect(frames)
        kept = [k for k, faces in enumerate(found) if len(faces)]
        with torch.no_grad():
            read = expression(gray_faces([face_crop(frames[k], found[k].boxes[0]) for k in kept])) if kept else None
    finally:
        torch.set_num_threads(threads)
    per_frame = _per_frame(found, frames.shape[1:3], kept, None if read is None else read.proba.numpy())
    features = np.zeros((0, FEATURE_DIMS[config.expression_net]), np.float32) if read is None else read.features.numpy()
    return {"face_frames": per_frame, "faces": _clip_vector(per_frame, features, frames.shape[1:3])}


def _per_frame(found: list[Faces], size: tuple[int, int], kept: list[int], proba: np.ndarray | None) -> np.ndarray:
    height, width = size
    rows = np.zeros((len(found), len(FRAME_COLUMNS)), np.float32)
    rows[:, 0] = [len(faces) for faces in found]
    for row, k in enumerate(kept):
        x1, y1, x2, y2 = found[k].boxes[0]
        rows[k, 1:7] = [
            1.0,
            found[k].probs[0],
            (x1 + x2) / 2 / width,
            (y1 + y2) / 2 / height,
            (x2 - x1) / width,
            (y2 - y1) / height,
        ]
        assert proba is not None
        rows[k, 7:] = proba[row]
    return rows


def _clip_vector(per_frame: np.ndarray, features: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    with_face = per_frame[per_frame[:, 1] > 0]
    n_classes = len(FER_CLASSES)
    vector = np.zeros(3 + 2 * n_classes + 4 + features.shape[1], np.float32)
    vector[0] = len(with_face) / len(per_frame)
    vector[1] = per_frame[:, 0].mean()
    vector[2] = float(not len(with_face))
    if len(with_face):
        expressions = with_face[:, 7:]
        vector[3 : 3 + n_classes] = expressions.mean(axis=0)
        vector[3 + n_classes : 3 + 2 * n_classes] = expressions.std(axis=0)
        at = 3 + 2 * n_classes
        vector[at : at + 2] = with_face[:, 6].mean(), with_face[:, 6].std()
        vector[at + 2] = _motion(per_frame, size)
        vector[at + 3] = with_face[:, 2].mean()
        vector[at + 4 :] = features.mean(axis=0)
    return vector


def _motion(per_frame: np.ndarray, size: tuple[int, int]) -> float:
    """The kept face's mean move between consecutive frames that both show one, in frame diagonals (0 for none)."""
    height, width = size
    both = (per_frame[1:, 1] > 0) & (per_frame[:-1, 1] > 0)
    if not both.any():
        return 0.0
    moves = np.diff(per_frame[:, 3:5] * [width, height], axis=0)[both]
    return float(np.linalg.norm(moves, axis=1).mean() / math.hypot(width, height))
