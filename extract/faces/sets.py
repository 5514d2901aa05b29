"""The ``faces`` feature sets: the performers' faces in a clip's sampled frames, as a clip vector and per frame.

Each sampled frame (the same frames as the video nets', at their working size: short side 256, whole width) goes
through MTCNN. One face is kept per frame: the one that overlaps the face kept in the frame before, else the
largest (MTCNN's own ``select_largest``). It is cropped as face_classification crops it (the box's floor/ceil,
clipped to the frame), made gray and 64x64 (bilinear), and read by a FER2013 Xception.

``face_frames`` (n_frames x ``frame_columns``): per frame, the faces found, whether one was kept, its
probability, its box (centre and size as shares of the frame's width and height), its 7 expression probabilities
and the expression net's penultimate features. ``faces`` (one vector a clip, ``clip_columns``): the share of
frames with a face, faces per frame, a ``no_face`` flag, the expression probabilities' mean and std over the
frames with a face, the face's height (mean, std) and motion, the detector's mean probability, and the mean and
std of the penultimate features. A clip with no face in any frame has 0 in every column but ``no_face`` (1):
never NaN.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.extract.weights.registry import require_weights, sha256_of
from mvemo.manifests.errors import require

if TYPE_CHECKING:
    from mvemo.extract.faces.mtcnn import MTCNN, Faces
    from mvemo.extract.faces.xception import ExpressionNet

# The FER2013 nets' classes in output order (face_classification's src/utils/datasets.py)
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_PX = 64
MIN_FACE_PX = 20
EXTRACTOR_VERSION = "1"
DETECTOR_FILE = "faces_mtcnn.npz"
EXPRESSION_FILES = {"mini": "faces_fer2013_mini_xception.h5", "big": "faces_fer2013_big_xception.h5"}
FEATURE_DIMS = {"mini": 128, "big": 256}
# A face kept in one frame is followed into the next while their boxes overlap by this much (intersection over union)
TRACK_IOU = 0.3


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
        Where the weight files lie: set by ``--weights-dir`` (not a ``[faces]`` key), then ``$MVEMO_WEIGHTS`` and
        ``~/.cache/mvemo/weights`` are searched; not fingerprinted, the files' sha256 are.
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


def frame_columns(expression_net: str) -> tuple[str, ...]:
    """The ``face_frames`` columns, per frame: the faces found, the kept face's flag, probability, box and
    expression probabilities, and the expression net's penultimate features."""
    return (
        "faces_found",
        "has_face",
        "face_prob",
        "face_cx",
        "face_cy",
        "face_width",
        "face_height",
        *(f"expr_{c}" for c in FER_CLASSES),
        *(f"expr_feature_{k}" for k in range(FEATURE_DIMS[expression_net])),
    )


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
        *(f"expr_feature_mean_{k}" for k in range(FEATURE_DIMS[expression_net])),
        *(f"expr_feature_std_{k}" for k in range(FEATURE_DIMS[expression_net])),
    )


def face_specs(config: FaceConfig, n_frames: int, sampling: dict[str, Any]) -> list[FeatureSpec]:
    """The two sets' specs: their fingerprints cover the frame sampling, the config and both files' sha256."""
    files = config.weight_files()
    digests = "+".join(sha256_of(f) for f in files)
    names = "+".join(f.name for f in files)
    record = {
        **sampling,
        **config.to_json(),
        "crop": "box floor/ceil clipped, RGB2GRAY, bilinear 64x64",
        "kept": f"the largest face, followed while IoU >= {TRACK_IOU}",
    }
    return [
        FeatureSpec(
            "faces",
            (len(clip_columns(config.expression_net)),),
            "float32",
            "mvemo.faces",
            EXTRACTOR_VERSION,
            record,
            digests,
            clip_columns(config.expression_net),
            weights_file=names,
        ),
        FeatureSpec(
            "face_frames",
            (n_frames, len(frame_columns(config.expression_net))),
            "float32",
            "mvemo.face_frames",
            EXTRACTOR_VERSION,
            record,
            digests,
            frame_columns(config.expression_net),
            weights_file=names,
        ),
    ]


@functools.lru_cache(maxsize=2)
def _nets(config: FaceConfig) -> tuple[MTCNN, ExpressionNet]:
    """The detector and the expression net, loaded once a process (torch only now: ``import`` stays light)."""
    from mvemo.extract.faces.mtcnn import MTCNN
    from mvemo.extract.faces.xception import ExpressionNet

    detector_file, expression_file = config.weight_files()
    detector = MTCNN(min_face_px=config.min_face_px)
    detector.load_weights(detector_file)
    return detector, ExpressionNet(expression_file)


def _clipped(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """The box as face_classification crops it: floor and ceil, clipped to the frame."""
    x1, y1 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    return x1, y1, min(math.ceil(box[2]), width), min(math.ceil(box[3]), height)


def face_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A face as the expression nets read it: the box (floor/ceil, clipped to the frame) in gray, 64x64 bilinear."""
    import cv2

    x1, y1, x2, y2 = _clipped(box, *frame.shape[:2])
    gray = cv2.cvtColor(np.ascontiguousarray(frame[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (INPUT_PX, INPUT_PX))


def gray_faces(crops: list[np.ndarray]) -> Any:
    """Gray uint8 face crops, each already 64x64, as the nets' input: a tensor (N, 1, 64, 64) in [-1, 1]."""
    import torch

    stacked = np.stack(crops).astype(np.float32) / 255.0
    return torch.from_numpy((stacked - 0.5) * 2.0).unsqueeze(1)


def kept_faces(found: list[Faces], height: int, width: int) -> dict[int, int]:
    """Per frame with a face, the one kept: the face that overlaps the one kept in the frame before (IoU >=
    ``TRACK_IOU``), else the largest; faces whose clipped box is empty (wholly outside the frame) are skipped."""
    kept: dict[int, int] = {}
    for k, faces in enumerate(found):
        visible = [i for i in range(len(faces)) if _area(_clipped(faces.boxes[i], height, width)) > 0]
        if not visible:
            continue
        chosen = visible[0]  # MTCNN lists the largest first
        if k - 1 in kept:
            overlaps = [_iou(faces.boxes[i], found[k - 1].boxes[kept[k - 1]]) for i in visible]
            if max(overlaps) >= TRACK_IOU:
                chosen = visible[int(np.argmax(overlaps))]
        kept[k] = chosen
    return kept


def _area(box: tuple[float, ...] | np.ndarray) -> float:
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return float(inter / (_area(a) + _area(b) - inter)) if inter > 0 else 0.0


def compute_face_sets(frames: np.ndarray, config: FaceConfig) -> dict[str, np.ndarray]:
    """``faces`` and ``face_frames`` of one clip's frames (T, H, W, 3) uint8 RGB.

    Torch runs on one thread here (the same floats whatever the executor); the process's count is restored after.
    """
    import torch

    detector, expression = _nets(config)
    height, width = frames.shape[1:3]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = detector.detect(frames)
        kept = kept_faces(found, height, width)
        crops = [face_crop(frames[k], found[k].boxes[i]) for k, i in kept.items()]
        with torch.no_grad():
            read = expression(gray_faces(crops)) if crops else None
    finally:
        torch.set_num_threads(threads)
    per_frame = np.zeros((len(frames), len(frame_columns(config.expression_net))), np.float32)
    per_frame[:, 0] = [len(faces) for faces in found]
    for row, (k, i) in enumerate(kept.items()):
        x1, y1, x2, y2 = found[k].boxes[i]
        box = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
        assert read is not None
        per_frame[k, 1:] = [1.0, found[k].probs[i], *box, *read.proba[row].numpy(), *read.features[row].numpy()]
    return {"face_frames": per_frame, "faces": _clip_vector(per_frame, (height, width))}


def _clip_vector(per_frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The ``faces`` vector (``clip_columns``) of a clip's ``face_frames``."""
    with_face = per_frame[per_frame[:, 1] > 0]
    n_classes = len(FER_CLASSES)
    expressions, features = with_face[:, 7 : 7 + n_classes], with_face[:, 7 + n_classes :]
    vector = np.zeros(3 + 2 * n_classes + 4 + 2 * features.shape[1], np.float32)
    vector[0] = len(with_face) / len(per_frame)
    vector[1] = per_frame[:, 0].mean()
    vector[2] = float(not len(with_face))
    if len(with_face):
        vector[3:] = np.concatenate(
            [
                expressions.mean(axis=0),
                expressions.std(axis=0),
                [with_face[:, 6].mean(), with_face[:, 6].std(), _motion(per_frame, size), with_face[:, 2].mean()],
                features.mean(axis=0),
                features.std(axis=0),
            ]
        )
    return vector


def _motion(per_frame: np.ndarray, size: tuple[int, int]) -> float:
    """The kept face's mean move between consecutive frames that both show one, in frame diagonals (0 for none)."""
    height, width = size
    both = (per_frame[1:, 1] > 0) & (per_frame[:-1, 1] > 0)
    if not both.any():
        return 0.0
    moves = np.diff(per_frame[:, 3:5] * [width, height], axis=0)[both]
    return float(np.linalg.norm(moves, axis=1).mean() / math.hypot(width, height))
