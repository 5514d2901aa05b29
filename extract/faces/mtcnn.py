"""MTCNN face detection (Zhang et al. 2016), a torch port of facenet-pytorch's cascade and nets.

Three nets in a cascade: PNet scores 12x12 cells over an image pyramid, RNet rescores 24x24 crops of its boxes,
ONet 48x48 crops, with landmarks. The steps follow facenet-pytorch (``models/utils/detect_face.py``) as
``../shared/weights/README.md`` sets them out, so that detections match its reference: thresholds 0.6 (``>=``),
0.7 and 0.7 (``>``), area resampling, Matlab-style 1-based crops clipped at the border, IoU NMS 0.5 per scale
and 0.7 after, and the last NMS on the overlap over the smaller box. Weights: ``faces_mtcnn.npz``
(facenet-pytorch's state dicts as plain arrays, ``pnet/``, ``rnet/``, ``onet/`` + the state-dict name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from mvemo.extract.weights.io import read_weights
from mvemo.extract.weights.registry import WeightsError

THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125


class PNet(nn.Module):
    """Proposal net: per 12x12 cell (stride 2), box regression (N, 4, h, w) and face probability (N, 2, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    """Flattened in (W, H, C) order, as the TF original's dense layers read it."""
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


class RNet(nn.Module):
    """Refinement net on 24x24 crops: box regression (N, 4) and face probability (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net on 48x48 crops: box regression (N, 4), landmarks (N, 10: five x then five y, box-relative) and
    face probability (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


@dataclass
class Faces:
    """One frame's detections, largest box first: boxes (n, 4) as x1, y1, x2, y2 in pixels, probabilities (n,) and
    landmarks (n, 5, 2) as x, y (eyes, nose, mouth corners)."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


class MTCNN(nn.Module):
    """The cascade: ``detect(frames)`` finds the faces of at least ``min_face_px`` (facenet-pytorch: 20) in each RGB
    uint8 frame (N, H, W, 3)."""

    def __init__(self, min_face_px: int, thresholds: tuple[float, float, float] = THRESHOLDS) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.min_face_px, self.thresholds = min_face_px, thresholds
        self.eval()

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load ``faces_mtcnn.npz``: every net's every parameter, nothing left over."""
        arrays = read_weights(path)
        stray = sorted(k for k in arrays if k.split("/", 1)[0] not in ("pnet", "rnet", "onet"))
        if stray:
            raise WeightsError(f"weights {path}: arrays {stray[:3]} belong to no MTCNN net; give faces_mtcnn.npz")
        for name, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
            state = {k.split("/", 1)[1]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(f"{name}/")}
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise WeightsError(f"weights {path}: {name} does not fit MTCNN ({err}); give faces_mtcnn.npz") from None

    @torch.no_grad()
    def detect(self, frames: np.ndarray) -> list[Faces]:
        """The faces in each frame of ``frames`` (N, H, W, 3) uint8 RGB, of one size."""
        images = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        boxes, image = self._propose(images)
        boxes, image = self._refine(images, boxes, image)
        boxes, image, landmarks = self._output(images, boxes, image)
        found = []
        for k in range(len(frames)):
            mine = (image == k).numpy()
            box, points = boxes[mine].numpy(), landmarks[mine].numpy()
            order = np.argsort((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))[::-1]
            found.append(Faces(box[order, :4], box[order, 4], points[order]))
        return found

    def _scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face_px
        side, scales = min(height, width) * scale, []
        while side >= 12:
            scales.append(scale)
            scale, side = scale * PYRAMID_FACTOR, side * PYRAMID_FACTOR
        return scales

    def _propose(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: PNet over the pyramid; boxes (n, 5: x1, y1, x2, y2, prob), calibrated and squared, and their
        image."""
        height, width = images.shape[2:]
        boxes, image = [torch.zeros(0, 9)], [torch.zeros(0, dtype=torch.long)]
        for scale in self._scales(height, width):
            level = F.interpolate(images, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
            regression, prob = self.pnet(_normalise(level))
            keep = prob[:, 1] >= self.thresholds[0]
            where = keep.nonzero()
            cells = where[:, 1:].flip(1).float()  # (x, y) of each cell
            found = torch.cat(
                [
                    ((2 * cells + 1) / scale).floor(),
                    ((2 * cells + 12) / scale).floor(),
                    prob[:, 1][keep].unsqueeze(1),
                    regression.permute(0, 2, 3, 1)[keep],
                ],
                dim=1,
            )
            pick = batched_nms(found[:, :4], found[:, 4], where[:, 0], 0.5)
            boxes.append(found[pick])
            image.append(where[pick, 0])
        found, image_of = torch.cat(boxes), torch.cat(image)
        pick = batched_nms(found[:, :4], found[:, 4], image_of, 0.7)
        found, image_of = found[pick], image_of[pick]
        size = (found[:, 2:4] - found[:, 0:2]).repeat(1, 2)
        calibrated = torch.cat([found[:, :4] + found[:, 5:9] * size, found[:, 4:5]], dim=1)
        return _square(calibrated), image_of

    def _crops(
        self, images: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor, side: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each box's pixels (1-based, clipped at the border, not padded), area-resampled to ``side`` and
        normalised; boxes wholly outside their frame are dropped. Returns the crops, the boxes and their images."""
        height, width = images.shape[2:]
        corners = boxes[:, :4].trunc().int().numpy()
        x1, y1 = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
        x2, y2 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
        inside = np.flatnonzero((x2 > x1 - 1) & (y2 > y1 - 1))
        if not inside.size:
            return torch.zeros(0, 3, side, side), boxes[:0], image[:0]
        crops = [
            F.interpolate(
                images[image[k], :, y1[k] - 1 : y2[k], x1[k] - 1 : x2[k]].unsqueeze(0), size=(side, side), mode="area"
            )
            for k in inside
        ]
        return _normalise(torch.cat(crops)), boxes[inside], image[inside]

    def _refine(
        self, images: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: RNet rescores 24x24 crops; the boxes it keeps, calibrated and squared."""
        crops, boxes, image = self._crops(images, boxes, image, 24)
        if not len(boxes):
            return boxes, image
        regression, prob = self.rnet(crops)
        keep = prob[:, 1] > self.thresholds[1]
        boxes = torch.cat([boxes[keep, :4], prob[keep, 1:2]], dim=1)
        image, regression = image[keep], regression[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image, 0.7)
        return _square(_calibrate(boxes[pick], regression[pick])), image[pick]

    def _output(
        self, images: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3: ONet rescores 48x48 crops and places the landmarks; the boxes kept after a 'Min' NMS."""
        crops, boxes, image = self._crops(images, boxes, image, 48)
        if not len(boxes):
            return boxes, image, torch.zeros(0, 5, 2)
        regression, points, prob = self.onet(crops)
        keep = prob[:, 1] > self.thresholds[2]
        boxes = torch.cat([boxes[keep, :4], prob[keep, 1:2]], dim=1)
        image, regression, points = image[keep], regression[keep], points[keep]
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        landmarks = torch.stack(
            [size[:, :1] * points[:, :5] + boxes[:, :1] - 1, size[:, 1:2] * points[:, 5:] + boxes[:, 1:2] - 1], dim=2
        )
        boxes = _calibrate(boxes, regression)
        pick = _nms_min(boxes, image, 0.7)
        return boxes[pick], image[pick], landmarks[pick]


def _calibrate(boxes: torch.Tensor, regression: torch.Tensor) -> torch.Tensor:
    """Boxes moved by their regression, scaled by their size counted inclusively (+1)."""
    size = (boxes[:, 2:4] - boxes[:, 0:2] + 1).repeat(1, 2)
    return torch.cat([boxes[:, :4] + regression * size, boxes[:, 4:]], dim=1)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box made a square of its longer side about its centre."""
    size = boxes[:, 2:4] - boxes[:, 0:2]
    side = size.max(dim=1, keepdim=True).values
    corner = boxes[:, 0:2] + size * 0.5 - side * 0.5
    return torch.cat([corner, corner + side, boxes[:, 4:]], dim=1)


def _nms_min(boxes: torch.Tensor, image: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS per image on the overlap over the smaller box (areas counted inclusively), best score first."""
    if not len(boxes):
        return torch.zeros(0, dtype=torch.long)
    shifted = (boxes[:, :4] + (image.to(boxes) * (boxes[:, :4].max() + 1))[:, None]).numpy()
    x1, y1, x2, y2 = shifted.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(boxes[:, 4].numpy())
    picked = []
    while order.size:
        best, rest = order[-1], order[:-1]
        picked.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        order = rest[(w * h) / np.minimum(area[best], area[rest]) <= threshold]
    return torch.as_tensor(picked, dtype=torch.long)
