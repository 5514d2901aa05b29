"""The pretrained nets on a GPU: parity with their references in float32, and bf16 autocast against float32.

Marked ``gpu``: the default run leaves them out. They run on ``$MVEMO_TEST_DEVICE`` (default ``cuda``; the GPU
check's dry run sets ``cpu``) and need only torch and the weights, not PyAV, so a bare CUDA machine runs them.
Each measured error is recorded as a property of its test (``--junitxml``), which the GPU check reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from mvemo.extract.nets import get_net
from mvemo.extract.nets.base import EmotionNet
from tests.conftest import SHARED
from tests.extract.references import relative_error, shared_file

pytestmark = pytest.mark.gpu

WEIGHTS = SHARED / "weights"
REFERENCE = WEIGHTS / "reference"
MUSIC_FILES = {"musicnn": "musicnn_msd_musicnn.npz", "msdvgg": "musicnn_msd_vgg.npz"}
MUSIC_PREFIX = {"musicnn": "musicnn", "msdvgg": "vgg"}
FLOAT32_TOLERANCE = 1e-4  # relative L2 error against the reference frameworks' outputs
# bf16 keeps 8 bits of mantissa: its embeddings sit about 1e-2 (relative L2) from float32's (I3D on the reference
# clip: 0.0095); the bound leaves room for that and still fails a wrong cast or a lost layer.
BF16_TOLERANCE = 3e-2


@pytest.fixture
def device() -> Iterator[torch.device]:
    """The device under test, with TF32 off: float32 means float32 (cuDNN's convolutions use TF32 by default)."""
    device = torch.device(os.environ.get("MVEMO_TEST_DEVICE", "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(
            "no CUDA device here (MVEMO_TEST_DEVICE=cpu runs these on the CPU, as the GPU check's dry run does)"
        )
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield device
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def require_native_bf16(device: torch.device) -> None:
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bf16: emulated, one clip takes minutes")


def embed(net: EmotionNet, inputs: tuple[torch.Tensor, ...], *, bf16: bool) -> np.ndarray:
    with torch.no_grad(), torch.autocast(inputs[0].device.type, dtype=torch.bfloat16, enabled=bf16):
        return net.embed(*inputs).float().cpu().numpy()


@pytest.fixture(scope="module")
def i3d_reference() -> dict[str, np.ndarray]:
    with np.load(shared_file(REFERENCE / "i3d_kinetics400_reference.npz"), allow_pickle=False) as npz:
        return dict(npz)


def i3d_on(device: torch.device, reference: dict[str, np.ndarray]) -> tuple[EmotionNet, tuple[torch.Tensor, ...]]:
    weights = shared_file(WEIGHTS / "i3d_rgb_kinetics400.npz")
    net = get_net("i3d", num_classes=400, weights=weights, kinetics_logits=True).eval().to(device)
    return net, net.prepare(reference["input"], device=device)


def test_i3d_matches_the_kinetics_reference_in_float32(
    device: torch.device, i3d_reference: dict[str, np.ndarray], record_property: pytest.RecordProperty
) -> None:
    net, inputs = i3d_on(device, i3d_reference)
    with torch.no_grad():
        per_time = net.per_time(*inputs).cpu().numpy()
        features = net.embed(*inputs)
        logits = net.head(features).cpu().numpy()
    errors = {
        "features": relative_error(features.cpu().numpy(), i3d_reference["features"]),
        "features_per_time": relative_error(per_time, i3d_reference["features_per_time"]),
        "logits": relative_error(logits, i3d_reference["logits"]),
    }
    for key, error in errors.items():
        record_property(f"relative_error_{key}", error)
    assert max(errors.values()) <= FLOAT32_TOLERANCE, errors
    assert np.argsort(-logits[0])[:5].tolist() == np.argsort(-i3d_reference["logits"][0])[:5].tolist()


def test_i3d_under_bf16_autocast_stays_near_float32(
    device: torch.device, i3d_reference: dict[str, np.ndarray], record_property: pytest.RecordProperty
) -> None:
    require_native_bf16(device)
    net, inputs = i3d_on(device, i3d_reference)
    full, half = embed(net, inputs, bf16=False), embed(net, inputs, bf16=True)
    error = relative_error(half, full)
    record_property("relative_error_bf16", error)
    assert error <= BF16_TOLERANCE
    with torch.no_grad():
        logits = net.head(torch.from_numpy(half).to(device)).cpu().numpy()
    assert logits[0].argmax() == i3d_reference["logits"][0].argmax(), "the same top Kinetics class"


@pytest.fixture(scope="module")
def music_reference() -> dict[str, np.ndarray]:
    with np.load(shared_file(REFERENCE / "musicnn_msd_reference.npz"), allow_pickle=False) as npz:
        return dict(npz)


def music_encoder_on(device: torch.device, name: str) -> EmotionNet:
    return get_net(name, num_classes=6, weights=shared_file(WEIGHTS / MUSIC_FILES[name])).eval().to(device)


@pytest.mark.parametrize("name", ["musicnn", "msdvgg"])
def test_music_encoders_match_the_package_in_float32(
    device: torch.device, name: str, music_reference: dict[str, np.ndarray], record_property: pytest.RecordProperty
) -> None:
    net = music_encoder_on(device, name)
    with torch.no_grad():
        layers = net.patches.layers(torch.from_numpy(music_reference["input"]).to(device))
    keys = [k for k in music_reference if k.startswith(f"{MUSIC_PREFIX[name]}/")]
    assert len(keys) >= 7
    errors = {}
    for key in keys:
        expected = music_reference[key]
        errors[key] = relative_error(layers[key.split("/")[1]].cpu().numpy().reshape(expected.shape), expected)
    record_property("relative_error_max", max(errors.values()))
    assert max(errors.values()) < FLOAT32_TOLERANCE, errors


@pytest.mark.parametrize("name", ["musicnn", "msdvgg"])
def test_music_encoders_under_bf16_autocast_stay_near_float32(
    device: torch.device, name: str, music_reference: dict[str, np.ndarray], record_property: pytest.RecordProperty
) -> None:
    require_native_bf16(device)
    net = music_encoder_on(device, name)
    inputs = net.prepare(music_reference["logmel"].T[None], device=device)
    error = relative_error(embed(net, inputs, bf16=True), embed(net, inputs, bf16=False))
    record_property("relative_error_bf16", error)
    assert error <= BF16_TOLERANCE
