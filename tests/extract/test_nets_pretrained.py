"""Each net's loader on the public weight files (../shared/weights) and on generated files of the same format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mvemo.extract.nets import get_net
from mvemo.extract.weights.io import read_weights
from mvemo.extract.weights.registry import KNOWN, WeightsError
from tests.conftest import SHARED
from tests.extract.references import relative_error, shared_file

WEIGHTS = SHARED / "weights"
REFERENCE = WEIGHTS / "reference" / "i3d_kinetics400_reference.npz"


def choi_path() -> Path:
    return shared_file(WEIGHTS / "choi_compact_cnn_msd.h5")


def i3d_path() -> Path:
    return shared_file(WEIGHTS / "i3d_rgb_kinetics400.npz")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- twodcnn: Choi's compact convnet ----------------------------------------------------------------------------------


def test_twodcnn_loads_every_conv_and_norm_weight_of_the_msd_file() -> None:
    path = choi_path()
    net = get_net("twodcnn", num_classes=6, weights=path)
    assert net.weights_sha256 == KNOWN["choi_compact_cnn_msd.h5"].sha256
    arrays = read_weights(path)
    for i, block in enumerate(net.blocks, start=1):
        np.testing.assert_array_equal(block[0].weight.detach().numpy(), arrays[f"ConvBNEluDr/convolution2d_{i}_W:0"])
        np.testing.assert_array_equal(block[0].bias.detach().numpy(), arrays[f"ConvBNEluDr/convolution2d_{i}_b:0"])
        np.testing.assert_array_equal(
            block[1].weight.detach().numpy(), arrays[f"ConvBNEluDr/batchnormalization_{i}_gamma:0"]
        )
        np.testing.assert_array_equal(
            block[1].bias.detach().numpy(), arrays[f"ConvBNEluDr/batchnormalization_{i}_beta:0"]
        )


def test_twodcnn_tells_a_sweep_from_noise() -> None:
    from mvemo.extract.audio import MelConfig, mel_spectrogram
    from mvemo.extract.decode.audio import AudioWindow

    net = get_net("twodcnn", num_classes=6, weights=choi_path()).eval()
    sr, seconds = 16000, 5.0
    t = np.arange(int(sr * seconds)) / sr
    sweep = np.sin(2 * np.pi * (100 + 700 * t) * t).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(t.size).astype(np.float32) * 0.3
    config = MelConfig(audio_window=AudioWindow(duration_s=seconds))
    (mels,) = net.prepare(np.stack([mel_spectrogram(sweep, config), mel_spectrogram(noise, config)]).astype(np.float16))
    with torch.no_grad():
        a, b = net.embed(mels)
    assert torch.linalg.norm(a - b) > 0.1 * torch.linalg.norm(a), "the pretrained net is not degenerate"
    assert torch.isfinite(a).all() and a.std() > 0


def choi_front_end(arrays: dict[str, np.ndarray], y: np.ndarray) -> np.ndarray:
    """The compact CNN's own kapre front end on mono audio ``y`` at 12 kHz, from the kernels of its weight file: STFT as
    strided windows times the stored windowed cos and sin kernels (n_dft 512, hop 256, TF "same" padding), power, the
    stored (257, 96) mel matrix, then dB re the maximum floored at -80: (96, frames), float32."""
    cos, sin = (arrays[f"melgram/Variable{suffix}:0"][:, 0, 0, :] for suffix in ("", "_1"))  # (512, 257) each
    frames = -(-len(y) // 256)
    total = max((frames - 1) * 256 + 512 - len(y), 0)
    x = np.pad(y.astype(np.float64), (total // 2, total - total // 2))
    windows = np.lib.stride_tricks.sliding_window_view(x, 512)[::256]
    power = (windows @ cos) ** 2 + (windows @ sin) ** 2  # (frames, 257)
    db = 10.0 * np.log10(np.maximum(power @ arrays["melgram/Variable_2:0"], 1e-10)).T
    return np.maximum(db - db.max(), -80.0).astype(np.float32)


def test_the_files_own_12khz_front_end_equals_mvemos_mel() -> None:
    """The sanity check of the cached mel: at 12 kHz, the file's STFT kernels and mel matrix give mvemo's mel
    spectrogram."""
    import librosa

    from mvemo.extract.audio import MelConfig, mel_spectrogram
    from mvemo.extract.decode.audio import AudioWindow

    path = choi_path()
    arrays = read_weights(path)
    fb = librosa.filters.mel(sr=12000, n_fft=512, n_mels=96, fmax=6000)
    np.testing.assert_allclose(
        arrays["melgram/Variable_2:0"], fb.T, atol=1e-8, err_msg="the same Slaney bands, 0-6 kHz"
    )
    sr, n = 12000, 12000 * 4
    t = np.arange(n) / sr
    y = (0.5 * np.sin(2 * np.pi * (200 + 600 * t) * t) + 0.05 * np.random.default_rng(0).standard_normal(n)).astype(
        np.float32
    )
    y[:1024] = y[-1024:] = 0.0  # silent ends: the two paddings (TF "same" vs centred) then see the same zeros
    theirs = choi_front_end(arrays, y)
    frames = -(-n // 256)
    shift = (
        256 - ((frames - 1) * 256 + 512 - n) // 2
    )  # centred frames start 256 samples early, TF "same" ones half its padding
    config = MelConfig(sample_rate_hz=12000, audio_window=AudioWindow(duration_s=n / sr), dtype="float32")
    ours = mel_spectrogram(np.concatenate([y[shift:], np.zeros(shift, np.float32)]), config)[:, : theirs.shape[1]]
    assert theirs.shape == ours.shape == (96, frames)
    np.testing.assert_allclose(theirs, ours, atol=2e-3, err_msg="dB of the two front ends")
    net = get_net("twodcnn", num_classes=6, weights=path).eval()
    with torch.no_grad():
        a, b = net.embed(torch.from_numpy(theirs)[None]), net.embed(torch.from_numpy(ours)[None])
    assert relative_error(b.numpy(), a.numpy()) < 1e-4


def test_float16_mel_leaves_the_msd_embeddings_in_place(mved_sample: Path) -> None:
    """The measurement behind caching the mel spectrogram as float16."""
    from mvemo.extract.audio import MelConfig, mel_spectrogram
    from mvemo.extract.decode.audio import AudioWindow, decode_audio, resample_exact

    window = AudioWindow(duration_s=10.0)
    files = sorted(mved_sample.glob("*/*.mp4"))[::30][:4]
    mels = []
    for path in files:
        decoded = decode_audio(path, window)
        mels.append(
            mel_spectrogram(resample_exact(decoded.y, decoded.sr, 16000, 160000), MelConfig(audio_window=window))
        )
    full = torch.from_numpy(np.stack(mels))
    half = torch.from_numpy(np.stack(mels).astype(np.float16).astype(np.float32))
    net = get_net("twodcnn", num_classes=6, weights=choi_path()).eval()
    with torch.no_grad():
        a, b = net.embed(full), net.embed(half)
    shift = torch.linalg.norm(a - b, dim=1)
    assert (shift / torch.linalg.norm(a, dim=1)).max() < 1e-3
    nearest = (torch.cdist(a, a) + torch.eye(len(files)) * 1e9).min(dim=1).values
    assert (nearest > 50 * shift).all()


def test_a_file_of_another_net_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(
        WeightsError, match=r"no array 'ConvBNEluDr/convolution2d_1_W:0'; twodcnn loads the Keras 1 HDF5"
    ):
        get_net("twodcnn", num_classes=2, weights=i3d_path())
    odd = tmp_path / "odd.npz"
    np.savez(odd, **{"ConvBNEluDr/convolution2d_1_W:0": np.zeros((32, 1, 5, 5), np.float32)})
    with pytest.raises(WeightsError, match=r"has shape \(32, 1, 5, 5\), twodcnn needs \(32, 1, 3, 3\)"):
        get_net("twodcnn", num_classes=2, weights=odd)


# --- i3d --------------------------------------------------------------------------------------------------------------


@pytest.mark.heavy
def test_i3d_matches_the_kinetics_reference() -> None:
    """The issue's must-pass parity: forward vs ``logits`` <= 1e-3, embed vs ``features`` <= 1e-4 (relative L2)."""
    weights, reference = i3d_path(), shared_file(REFERENCE)
    torch.set_num_threads(2)
    with np.load(reference, allow_pickle=False) as npz:
        ref = dict(npz)
    net = get_net("i3d", num_classes=400, weights=weights, kinetics_logits=True).eval()
    assert net.weights_sha256 == KNOWN["i3d_rgb_kinetics400.npz"].sha256
    (x,) = net.prepare(ref["input"])
    with torch.no_grad():
        per_time = net.per_time(x)
        features = net.embed(x).numpy()
        logits = net.head(torch.from_numpy(features)).numpy()
    assert relative_error(logits, ref["logits"]) <= 1e-3
    assert relative_error(features, ref["features"]) <= 1e-4
    assert relative_error(per_time.numpy(), ref["features_per_time"]) <= 1e-4
    assert np.argsort(-logits[0])[:5].tolist() == np.argsort(-ref["logits"][0])[:5].tolist()


def jax_to_pytorch_i3d(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The npz under pytorch-i3d's names and layouts (README mapping), as that port's state dict holds them."""
    from mvemo.extract.nets.i3d import BRANCHES

    to_jax = {v: k for k, v in BRANCHES.items()}
    state: dict[str, torch.Tensor] = {}
    for key, value in arrays.items():
        _, *scope, layer, leaf = key.split("/")
        if scope[0] == "Logits":
            state[f"logits.conv3d.{leaf}"] = torch.from_numpy(
                value.transpose(4, 3, 0, 1, 2).copy() if leaf == "kernel" else value
            )
            continue
        name = scope[0] if len(scope) == 1 else f"{scope[0]}.{to_jax['/'.join(scope[1:])]}"
        if layer == "Conv_0":
            state[f"{name}.conv3d.weight"] = torch.from_numpy(value.transpose(4, 3, 0, 1, 2).copy())
        else:
            field = {"bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]
            state[f"{name}.bn.{field}"] = torch.from_numpy(value.reshape(-1).copy())
            if leaf == "bias":
                state[f"{name}.bn.weight"] = torch.ones_like(state[f"{name}.bn.bias"])
    if "logits.conv3d.kernel" in state:
        state["logits.conv3d.weight"] = state.pop("logits.conv3d.kernel")
    return state


@pytest.mark.heavy
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_i3d_loads_the_pytorch_i3d_state_dict_format(tmp_path: Path, zip_format: bool) -> None:
    state = jax_to_pytorch_i3d(read_weights(i3d_path()))
    assert len(state) == 57 * 5 + 2, "conv + BN weight, bias, mean, var of 57 units, and the logits"
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    frames = torch.rand(1, 3, 8, 64, 64) * 2 - 1
    nets = [
        get_net("i3d", num_classes=400, weights=w, pool="global", kinetics_logits=True).eval()
        for w in (i3d_path(), path)
    ]
    with torch.no_grad():
        torch.testing.assert_close(nets[1](frames), nets[0](frames), rtol=0, atol=0)
    assert nets[1].weights_sha256 != nets[0].weights_sha256


# --- c3d --------------------------------------------------------------------------------------------------------------

# DavideA/c3d-pytorch C3D_model.py: every tensor of its Sports-1M state dict, by name and shape.
C3D_PORT = {
    **{
        f"{name}.weight": (c_out, c_in, 3, 3, 3)
        for name, c_in, c_out in [
            ("conv1", 3, 64),
            ("conv2", 64, 128),
            ("conv3a", 128, 256),
            ("conv3b", 256, 256),
            ("conv4a", 256, 512),
            ("conv4b", 512, 512),
            ("conv5a", 512, 512),
            ("conv5b", 512, 512),
        ]
    },
    **{
        f"{name}.bias": (c,)
        for name, c in [
            ("conv1", 64),
            ("conv2", 128),
            ("conv3a", 256),
            ("conv3b", 256),
            ("conv4a", 512),
            ("conv4b", 512),
            ("conv5a", 512),
            ("conv5b", 512),
        ]
    },
    "fc6.weight": (4096, 8192),
    "fc6.bias": (4096,),
    "fc7.weight": (4096, 4096),
    "fc7.bias": (4096,),
    "fc8.weight": (487, 4096),
    "fc8.bias": (487,),
}


def generated_c3d_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The port's names and shapes, each tensor a broadcast of a few random values (so the file stays small)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in C3D_PORT.items():
        values = torch.randn(shape[0], generator=generator)
        state[key] = values.view(-1, *([1] * (len(shape) - 1))).expand(shape)
    return state


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_c3d_loads_the_sports1m_state_dict_of_the_pytorch_port(tmp_path: Path, zip_format: bool) -> None:
    state = generated_c3d_state_dict()
    path = tmp_path / "c3d.pickle"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    assert path.stat().st_size < 1_000_000
    torch.manual_seed(0)
    net = get_net("c3d", num_classes=6, weights=path, n_frames=16, crop_px=32)
    for name in ("conv1", "conv3b", "conv5b"):
        conv = net.features.get_submodule(name)
        torch.testing.assert_close(conv.weight, state[f"{name}.weight"], rtol=0, atol=0)
        torch.testing.assert_close(conv.bias, state[f"{name}.bias"], rtol=0, atol=0)
    assert net.fc6.weight.shape == (1024, 512 * 1 * 2 * 2), "fc6 is paper 001's, not the port's 4096 x 8192"
    assert len(net.weights_sha256) == 64


def test_c3d_refuses_a_state_dict_without_its_convolutions(tmp_path: Path) -> None:
    state = generated_c3d_state_dict()
    del state["conv4a.weight"]
    torch.save(state, tmp_path / "c3d.pt")
    with pytest.raises(
        WeightsError, match=r"no array 'conv4a.weight'; c3d loads the PyTorch C3D port's Sports-1M state dict"
    ):
        get_net("c3d", num_classes=6, weights=tmp_path / "c3d.pt", n_frames=16, crop_px=32)


# --- torchvision's video ResNets --------------------------------------------------------------------------------------


def test_torchvision_video_net_loads_its_state_dict(tmp_path: Path) -> None:
    from torchvision.models.video import mc3_18

    torch.manual_seed(5)
    reference = mc3_18(weights=None, num_classes=400).eval()
    path = tmp_path / "mc3_18-a90a0ba3.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(0)
    net = get_net("mc3_18", num_classes=6, weights=path).eval()
    reference.fc = torch.nn.Identity()
    frames = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.embed(frames), reference(frames), rtol=0, atol=0)


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18"])
def test_torchvision_video_nets_check_names_and_shapes(tmp_path: Path, name: str) -> None:
    from torchvision.models import video

    state = {
        k: torch.zeros(()).expand(v.shape) if v.is_floating_point() else v
        for k, v in getattr(video, name)().state_dict().items()
    }
    torch.save(state, tmp_path / "ok.pth")
    get_net(name, num_classes=2, weights=tmp_path / "ok.pth")
    state["layer9.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(WeightsError, match=rf"\['layer9.weight'\]... are not {name} names"):
        get_net(name, num_classes=2, weights=tmp_path / "odd.pth")
