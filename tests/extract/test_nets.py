from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extract.nets import NET_NAMES, get_net
from extract.nets.crnn import ImprovedCenterLoss
from extract.weights import KNOWN, find_weights
from manifests import ConfigError
from tests.conftest import SHARED

WEIGHTS = SHARED / "weights"
INPUTS = {
    "twodcnn": lambda b: (torch.rand(b, 96, 400) * -80,),
    "onedcnn": lambda b: (torch.randn(b, 16000) * 0.1,),
    "crnn": lambda b: (torch.rand(b, 96, 400) * -80, torch.randn(b, 200, 63)),
    "i3d": lambda b: (torch.rand(b, 3, 9, 193, 193) * 2 - 1,),
}


@pytest.mark.parametrize("name", NET_NAMES)
def test_shapes_and_embedding_dims(name: str) -> None:
    torch.manual_seed(0)
    net = get_net(name, num_classes=6).eval()
    inputs = INPUTS[name](3)
    with torch.no_grad():
        embedding, logits = net.embed(*inputs), net(*inputs)
    assert embedding.shape == (3, net.embedding_dim) and logits.shape == (3, 6)
    assert torch.isfinite(embedding).all() and net.weights_sha256 == ""
    with torch.no_grad():
        alone = net.embed(*(x[:1] for x in inputs))
    torch.testing.assert_close(alone, embedding[:1], rtol=1e-4, atol=1e-5, msg="a clip's embedding ignores its batch neighbours")


def test_unknown_net_and_bad_options() -> None:
    with pytest.raises(ConfigError, match=r"net 'vggish': choose one of"):
        get_net("vggish", num_classes=2)
    with pytest.raises(ConfigError, match=r"activation='tanh'"):
        get_net("twodcnn", num_classes=2, activation="tanh")


@pytest.fixture
def choi() -> Path:
    path = WEIGHTS / "choi_compact_cnn_msd.h5"
    if not path.is_file():
        pytest.skip(f"{path} is absent (a user's clone has no ../shared)")
    return path


def test_twodcnn_loads_the_msd_weights_and_tells_a_sweep_from_noise(choi: Path) -> None:
    from extract.audio import MelConfig, mel_spectrogram
    from extract.media import AudioWindow

    net = get_net("twodcnn", num_classes=6, weights=choi).eval()
    assert net.weights_sha256 == KNOWN["choi_compact_cnn_msd.h5"].sha256
    import h5py

    with h5py.File(choi) as f:
        np.testing.assert_array_equal(net.blocks[2][0].weight.detach().numpy(), f["ConvBNEluDr/convolution2d_3_W:0"][()])
    sr, seconds = 16000, 5.0
    t = np.arange(int(sr * seconds)) / sr
    sweep = np.sin(2 * np.pi * (100 + 700 * t) * t).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(t.size).astype(np.float32) * 0.3
    config = MelConfig(window=AudioWindow(duration_s=seconds))
    mels = torch.from_numpy(np.stack([mel_spectrogram(sweep, config), mel_spectrogram(noise, config)]))
    with torch.no_grad():
        a, b = net.embed(mels)
    assert torch.linalg.norm(a - b) > 0.1 * torch.linalg.norm(a), "the pretrained net is not degenerate"


def test_find_weights_checks_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MVEMO_WEIGHTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_weights("choi_compact_cnn_msd.h5", tmp_path / "empty") is None
    (tmp_path / "choi_compact_cnn_msd.h5").write_bytes(b"not the weights")
    with pytest.raises(ConfigError, match=r"sha256 .* is not the expected .*keunwoochoi"):
        find_weights("choi_compact_cnn_msd.h5", tmp_path)


def center_loss_numpy(x: np.ndarray, y: np.ndarray, centers: np.ndarray) -> float:
    total = 0.0
    for i in range(len(x)):
        distances = ((x[i] - centers) ** 2).sum(axis=1)
        total += distances[y[i]] / (distances.sum() - distances[y[i]] + 1.0)
    return 0.5 * total


def test_improved_center_loss_matches_the_formula_and_its_gradient() -> None:
    torch.manual_seed(0)
    loss = ImprovedCenterLoss(num_classes=4, dim=5).double()
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    value = loss(x, y)
    assert value.item() == pytest.approx(
        center_loss_numpy(x.detach().numpy(), y.numpy(), loss.centers.detach().numpy()), rel=1e-10
    )
    centers = loss.centers.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda inputs, c: torch.func.functional_call(loss, {"centers": c}, (inputs, y)), (x, centers))


def test_i3d_matches_the_kinetics_reference() -> None:
    weights, reference = WEIGHTS / "i3d_rgb_kinetics400.npz", WEIGHTS / "reference" / "i3d_kinetics400_reference.npz"
    if not weights.is_file() or not reference.is_file():
        pytest.skip(f"{weights} or {reference} is absent (a user's clone has no ../shared)")
    torch.set_num_threads(2)
    ref = np.load(reference, allow_pickle=False)
    net = get_net("i3d", num_classes=6, weights=weights, kinetics_logits=True).eval()
    assert net.weights_sha256 == KNOWN["i3d_rgb_kinetics400.npz"].sha256
    (x,) = net.prepare(ref["input"])
    with torch.no_grad():
        logits, features = net(x).numpy(), net.embed(x).numpy()
    assert np.linalg.norm(logits - ref["logits"]) / np.linalg.norm(ref["logits"]) <= 1e-3
    assert np.linalg.norm(features - ref["features"]) / np.linalg.norm(ref["features"]) <= 1e-4
    assert np.argsort(-logits[0])[:5].tolist() == np.argsort(-ref["logits"][0])[:5].tolist()


def test_i3d_small_inputs_need_global_pooling() -> None:
    torch.manual_seed(0)
    frames = torch.rand(1, 3, 8, 112, 112) * 2 - 1
    with pytest.raises(ConfigError, match=r"smaller than 9 frames and 193 pixels.*pool='global'"):
        get_net("i3d", num_classes=6).embed(frames)
    net = get_net("i3d", num_classes=6, pool="global").eval()
    with torch.no_grad():
        assert net.embed(frames).shape == (1, 1024) and net(frames).shape == (1, 6)
    (prepared,) = net.prepare(np.full((2, 4, 8, 8, 3), 255, dtype=np.uint8))
    assert prepared.shape == (2, 3, 4, 8, 8) and torch.allclose(prepared, torch.ones(1))


def test_float16_mel_leaves_the_msd_embeddings_in_place(choi: Path, mved_sample: Path) -> None:
    """The measurement behind caching the mel spectrogram as float16."""
    from extract.audio import MelConfig, mel_spectrogram
    from extract.media import AudioWindow, decode_audio, resample_exact

    window = AudioWindow(duration_s=10.0)
    files = sorted(mved_sample.glob("*/*.mp4"))[::30][:4]
    mels = []
    for path in files:
        decoded = decode_audio(path, window)
        mels.append(mel_spectrogram(resample_exact(decoded.y, decoded.sr, 16000, 160000), MelConfig(window=window)))
    full = torch.from_numpy(np.stack(mels))
    half = torch.from_numpy(np.stack(mels).astype(np.float16).astype(np.float32))
    net = get_net("twodcnn", num_classes=6, weights=choi).eval()
    with torch.no_grad():
        a, b = net.embed(full), net.embed(half)
    shift = torch.linalg.norm(a - b, dim=1)
    assert (shift / torch.linalg.norm(a, dim=1)).max() < 1e-3
    nearest = (torch.cdist(a, a) + torch.eye(len(files)) * 1e9).min(dim=1).values
    assert (nearest > 50 * shift).all()
