"""The faces: MTCNN and the FER2013 Xceptions against the original frameworks' outputs on MVED frames, and the
``faces`` sets finite and flagged on frames with no face, several faces, and a face that enters mid-clip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvemo.extract.faces.mtcnn import MTCNN, Faces
from mvemo.extract.faces.sets import (
    FER_CLASSES,
    MIN_FACE_PX,
    FaceConfig,
    clip_columns,
    compute_face_sets,
    face_crop,
    face_specs,
    frame_columns,
    gray_faces,
    kept_faces,
)
from mvemo.extract.faces.xception import ExpressionNet
from mvemo.extract.weights.registry import WeightsError
from tests.conftest import SHARED
from tests.extract.references import face_patch, relative_error, shared_file

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

WEIGHTS = SHARED / "weights"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(shared_file(WEIGHTS / "reference" / "faces_reference.npz"), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


@pytest.fixture(scope="module")
def mtcnn() -> MTCNN:
    detector = MTCNN(MIN_FACE_PX)
    detector.load_weights(shared_file(WEIGHTS / "faces_mtcnn.npz"))
    return detector


@pytest.fixture(autouse=True)
def one_thread() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the reference was made
    yield
    torch.set_num_threads(threads)


def test_the_three_nets_give_the_reference_raw_outputs(mtcnn: MTCNN, reference: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        outputs = {
            "pnet": mtcnn.pnet(torch.from_numpy(reference["mtcnn/pnet_input"])),
            "rnet": mtcnn.rnet(torch.from_numpy(reference["mtcnn/rnet_input"])),
            "onet": mtcnn.onet(torch.from_numpy(reference["mtcnn/onet_input"])),
        }
    names = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"), "onet": ("reg", "landmarks", "prob")}
    for net, values in outputs.items():
        for name, value in zip(names[net], values):
            expected = reference[f"mtcnn/{net}_{name}"]
            assert np.allclose(value.numpy(), expected, rtol=1e-4, atol=1e-5), f"{net} {name}"


def test_detections_match_the_reference_frames(mtcnn: MTCNN, reference: dict[str, np.ndarray]) -> None:
    found = mtcnn.detect(reference["frames"])
    assert [len(f) for f in found] == list(reference["mtcnn/count"]), "1, 2, 6, 0, 1, 1, 1, 2 faces"
    for k, faces in enumerate(found):
        n = len(faces)
        assert np.abs(faces.boxes - reference["mtcnn/boxes"][k, :n]).max(initial=0) < 1e-2, f"frame {k}: boxes"
        assert np.abs(faces.probs - reference["mtcnn/probs"][k, :n]).max(initial=0) < 1e-4, f"frame {k}: probs"
        assert np.abs(faces.landmarks - reference["mtcnn/landmarks"][k, :n]).max(initial=0) < 1e-2, (
            f"frame {k}: landmarks"
        )


@pytest.mark.parametrize("size", ["mini", "big"])
def test_the_expression_nets_give_the_reference_outputs(size: str, reference: dict[str, np.ndarray]) -> None:
    net = ExpressionNet(shared_file(WEIGHTS / f"faces_fer2013_{size}_xception.h5"))
    x = torch.from_numpy(reference["fer/input"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        read = net(x)
    nhwc = {"features": read.feature_map, "class_map": read.class_map}
    for key, value in nhwc.items():
        assert relative_error(value.permute(0, 2, 3, 1).numpy(), reference[f"{size}/{key}"]) < 1e-4, key
    assert relative_error(read.logits.numpy(), reference[f"{size}/logits"]) < 1e-4
    assert np.abs(read.proba.numpy() - reference[f"{size}/softmax"]).max() < 1e-5
    assert tuple(str(c) for c in reference["fer/labels"]) == FER_CLASSES


def test_faces_are_cropped_and_normalised_as_the_reference(reference: dict[str, np.ndarray]) -> None:
    for row in np.flatnonzero(reference["fer/crop_face"] >= 0):
        frame, face = reference["fer/crop_frame"][row], reference["fer/crop_face"][row]
        crop = face_crop(reference["frames"][frame], reference["mtcnn/boxes"][frame, face])
        assert np.array_equal(crop, reference["fer/crop_gray64"][row])
    inputs = gray_faces(list(reference["fer/crop_gray64"])).numpy()
    assert np.array_equal(inputs[:, 0], reference["fer/input"][:15, ..., 0])


@pytest.fixture(scope="module")
def config() -> FaceConfig:
    shared_file(WEIGHTS / "faces_mtcnn.npz")
    return FaceConfig(weights_dir=str(WEIGHTS))


def pasted(
    reference: dict[str, np.ndarray], faces: list[tuple[int, int]], size: tuple[int, int] = (256, 455)
) -> np.ndarray:
    """A plain frame of ``size`` with the reference's faces (frame, face) pasted side by side, each with a margin."""
    frame = np.full((*size, 3), 90, np.uint8)
    left = 10
    for k, face in faces:
        patch = face_patch(reference, k, face, 0.25)
        frame[10 : 10 + len(patch), left : left + patch.shape[1]] = patch
        left += patch.shape[1] + 10
    return frame


def test_no_face_several_faces_and_a_face_entering_give_finite_flagged_sets(
    reference: dict[str, np.ndarray], config: FaceConfig
) -> None:
    blank = np.full((8, 256, 455, 3), 90, np.uint8)
    one, two = pasted(reference, [(0, 0)]), pasted(reference, [(0, 0), (1, 0)])
    cases = {
        "no face": blank,
        "several faces": np.stack([two] * 8),
        "a face entering at frame 5": np.concatenate([blank[:5], np.stack([one] * 3)]),
    }
    columns, per_frame_columns = clip_columns("mini"), frame_columns("mini")
    for name, frames in cases.items():
        sets = compute_face_sets(frames, config)
        vector, per_frame = sets["faces"], sets["face_frames"]
        assert vector.shape == (len(columns),) and per_frame.shape == (8, len(per_frame_columns)), name
        assert np.isfinite(vector).all() and np.isfinite(per_frame).all(), name
        at = {c: vector[i] for i, c in enumerate(columns)}
        if name == "no face":
            assert at["no_face"] == 1 and not vector[columns.index("no_face") + 1 :].any() and at["face_share"] == 0
        elif name == "several faces":
            assert at["no_face"] == 0 and at["face_share"] == 1 and at["faces_per_frame"] >= 2
            assert at["face_motion"] < 1e-3, "a still face does not move"
            kept_width = per_frame[0, per_frame_columns.index("face_width")] * 455
            assert kept_width > 100, "the larger face (123 px, the other 93 px) is kept"
            means = [at[f"expr_feature_mean_{k}"] for k in range(128)]
            assert at["expr_feature_std_0"] < 1e-5 and any(means), "a still face: its features, each frame the same"
        else:
            assert list(per_frame[:, 1]) == [0] * 5 + [1] * 3 and math.isclose(at["face_share"], 3 / 8)
            expressions = [at[f"expr_mean_{c}"] for c in FER_CLASSES]
            assert math.isclose(sum(expressions), 1, rel_tol=1e-5) and at["expr_mean_happy"] == max(expressions)


def test_a_missing_weight_file_names_it_and_the_fetch_command(tmp_path) -> None:
    with pytest.raises(WeightsError, match=r"weights 'faces_mtcnn.npz' not found.*mvemo weights fetch faces_mtcnn.npz"):
        FaceConfig(weights_dir=str(tmp_path)).weight_files()


def test_a_face_is_followed_and_a_box_outside_the_frame_is_never_kept() -> None:
    def faces(*boxes: tuple[float, float, float, float]) -> Faces:
        return Faces(
            np.array(boxes, np.float32), np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2), np.float32)
        )

    found = [
        faces((10, 10, 60, 60), (200, 10, 230, 40)),  # the largest first
        faces((195, 10, 250, 65), (12, 12, 60, 60)),  # a larger face enters; the first one is followed
        faces((-80, -80, -20, -20), (14, 12, 62, 60)),  # a box wholly outside the frame is skipped
        faces((-80, -80, -20, -20)),
        faces((300, 100, 340, 140)),  # nothing to follow: the largest
    ]
    assert kept_faces(found, 200, 400) == {0: 0, 1: 1, 2: 1, 4: 0}


def test_the_fingerprints_follow_the_config_and_the_files_not_where_they_lie(monkeypatch: pytest.MonkeyPatch) -> None:
    shared_file(WEIGHTS / "faces_mtcnn.npz")

    def fingerprints(config: FaceConfig) -> list[str]:
        return [spec.fingerprint for spec in face_specs(config, 32, {"n_frames": 32})]

    here = fingerprints(FaceConfig(weights_dir=str(WEIGHTS)))
    monkeypatch.setenv("MVEMO_WEIGHTS", str(WEIGHTS))
    assert fingerprints(FaceConfig()) == here
    assert fingerprints(FaceConfig(expression_net="big")) != here
    assert fingerprints(FaceConfig(min_face_px=40, weights_dir=str(WEIGHTS))) != here
