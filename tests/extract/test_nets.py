"""Every net on small CPU inputs: shapes, embedding dims, configs, batch independence, prepare, errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvemo.extract.nets import NET_NAMES, get_net, input_kind, net_from_config, net_options
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.registry import net_class
from mvemo.manifests import ConfigError

# The nets mvemo builds itself; a net of a checkpoint's own architecture (clap) is built from its folder and tested
# with one (tests/extract/test_clap.py).
BUILT = tuple(name for name in NET_NAMES if not net_class(name).pretrained_only)

# Small inputs per net, with the options that make them small; B clips.
SMALL: dict[str, tuple[dict, Callable[[int], tuple[torch.Tensor, ...]]]] = {
    "onedcnn": ({}, lambda b: (torch.randn(b, 16000) * 0.1,)),
    "twodcnn": ({}, lambda b: (torch.rand(b, 96, 300) * -80,)),
    "c3d": ({"n_frames": 16, "crop_px": 32}, lambda b: (torch.rand(b, 3, 16, 32, 32) * 255,)),
    "i3d": ({"pool": "global"}, lambda b: (torch.rand(b, 3, 8, 64, 64) * 2 - 1,)),
    "crnn": ({}, lambda b: (torch.rand(b, 96, 300) * -80, torch.randn(b, 40, 63))),
    "musicnn": ({}, lambda b: (torch.rand(b, 96, 400) * 4,)),
    "msdvgg": ({}, lambda b: (torch.rand(b, 96, 400) * 4,)),
    "mttmusicnn": ({}, lambda b: (torch.rand(b, 96, 400) * 4,)),
    "mttvgg": ({}, lambda b: (torch.rand(b, 96, 400) * 4,)),
    "r3d_18": ({}, lambda b: (torch.randn(b, 3, 4, 32, 32),)),
    "r2plus1d_18": ({}, lambda b: (torch.randn(b, 3, 4, 32, 32),)),
    "mc3_18": ({}, lambda b: (torch.randn(b, 3, 4, 32, 32),)),
}
# What the cache holds for each input kind (B clips), as prepare receives it.
CACHED: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "waveform": lambda rng, b: (rng.standard_normal((b, 16000)) * 0.1).astype(np.float16),
    "mel": lambda rng, b: (rng.random((b, 96, 300)) * -80).astype(np.float16),
    "lld": lambda rng, b: rng.standard_normal((b, 40, 63)).astype(np.float32),
    "logmel": lambda rng, b: (rng.random((b, 96, 400)) * 4).astype(np.float32),
    "frames112": lambda rng, b: rng.integers(0, 256, (b, 16, 32, 32, 3), dtype=np.uint8),
    "frames224": lambda rng, b: rng.integers(0, 256, (b, 8, 64, 64, 3), dtype=np.uint8),
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_net(name: str, num_classes: int = 6, seed: int = 0) -> EmotionNet:
    torch.manual_seed(seed)
    return get_net(name, num_classes=num_classes, **SMALL[name][0]).eval()


def kinds(net: EmotionNet) -> tuple[str, ...]:
    return (net.input_kind,) if isinstance(net.input_kind, str) else net.input_kind


def test_every_net_of_the_issue_is_registered() -> None:
    nets = {
        "onedcnn",
        "twodcnn",
        "c3d",
        "i3d",
        "crnn",
        "musicnn",
        "msdvgg",
        "mttmusicnn",
        "mttvgg",
        "clap",
        "r3d_18",
        "r2plus1d_18",
        "mc3_18",
    }
    assert set(NET_NAMES) == nets and set(BUILT) == nets - {"clap"} == set(SMALL)


@pytest.mark.heavy
@pytest.mark.parametrize("name", BUILT)
def test_shapes_dims_and_batch_independence(name: str) -> None:
    net = small_net(name)
    torch.manual_seed(1)
    inputs = SMALL[name][1](3)
    with torch.no_grad():
        embedding, logits = net.embed(*inputs), net(*inputs)
        alone = net.embed(*(x[:1] for x in inputs))
    assert embedding.shape == (3, net.embedding_dim) and logits.shape == (3, 6)
    assert embedding.dtype == torch.float32 and torch.isfinite(embedding).all() and torch.isfinite(logits).all()
    assert net.weights_sha256 == ""
    torch.testing.assert_close(
        alone, embedding[:1], rtol=1e-4, atol=1e-5, msg="a clip's embedding ignores its batch neighbours"
    )
    assert embedding.std(dim=0).max() > 0, "different clips give different embeddings"


def test_embedding_dims_of_the_papers() -> None:
    dims = {
        name: get_net(name, num_classes=2, **SMALL[name][0]).embedding_dim for name in ("twodcnn", "c3d", "i3d", "crnn")
    }
    assert dims == {"twodcnn": 5 * 32, "c3d": 512, "i3d": 1024, "crnn": 4 * 64}


@pytest.mark.parametrize("name", BUILT)
def test_prepare_turns_cached_batches_into_the_nets_input(name: str) -> None:
    net = small_net(name)
    rng = np.random.default_rng(0)
    arrays = [CACHED[kind](rng, 2) for kind in kinds(net)]
    prepared = net.prepare(*arrays)
    assert len(prepared) == len(arrays) and all(t.dtype == torch.float32 for t in prepared)
    with torch.no_grad():
        assert net.embed(*prepared).shape == (2, net.embedding_dim)
    with pytest.raises(ConfigError, match=rf"{name}\.prepare: .*expected"):
        net.prepare(*(a[0] for a in arrays))  # a clip without its batch axis


def test_prepare_of_the_video_nets_scales_as_their_weights_expect() -> None:
    white = np.full((1, 16, 32, 32, 3), 255, dtype=np.uint8)
    white[..., 0] = 0  # no red
    (i3d,) = small_net("i3d").prepare(white)
    assert i3d.shape == (1, 3, 16, 32, 32) and i3d[:, 0].eq(-1).all() and i3d[:, 1:].eq(1).all()
    (c3d,) = small_net("c3d").prepare(white)
    assert c3d[:, 0].eq(0).all() and c3d[:, 1:].eq(255).all()
    (r3d,) = small_net("r3d_18").prepare(white)
    torch.testing.assert_close(
        r3d[0, :, 0, 0, 0], torch.tensor([-0.43216 / 0.22803, (1 - 0.394666) / 0.22145, (1 - 0.37645) / 0.216989])
    )
    with pytest.raises(ConfigError, match=r"expected a uint8 batch \(B, T, H, W, 3\)"):
        small_net("i3d").prepare(white.astype(np.float32))


@pytest.mark.heavy
@pytest.mark.parametrize("name", BUILT)
def test_config_is_json_and_rebuilds_the_same_net(name: str) -> None:
    net = small_net(name, seed=3)
    config = json.loads(json.dumps(net.config))
    assert config["net"] == name and config["num_classes"] == 6
    # a music encoder's patch count means something only where it keeps its patches: recorded there alone, so that
    # the sets cached before the option existed keep their fingerprints
    unrecorded = {"patches"} if config.get("pool") in ("mean", "max", "meanmax") else set()
    assert set(config) == {"net", "num_classes", *net_options(name)} - unrecorded
    torch.manual_seed(3)
    again = net_from_config(config).eval()
    assert again.config == net.config and type(again) is type(net) and again.input_kind == input_kind(name)
    for (key, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, msg=key)


@pytest.mark.parametrize("name", ["onedcnn", "twodcnn", "crnn", "i3d"])
def test_seeded_embeddings_do_not_depend_on_the_number_of_classes(name: str) -> None:
    torch.manual_seed(0)
    inputs = SMALL[name][1](2)
    with torch.no_grad():
        a, b = small_net(name, num_classes=2).embed(*inputs), small_net(name, num_classes=9).embed(*inputs)
    torch.testing.assert_close(a, b)


def test_unknown_net_and_bad_options_name_the_value_and_the_fix() -> None:
    with pytest.raises(
        ConfigError, match=r"net 'vggish': not a known net or a variant of one .*; nets are onedcnn, twodcnn"
    ):
        get_net("vggish", num_classes=2)
    with pytest.raises(
        ConfigError, match=r"net 'twodcnn': unknown option pool; its options \(defaults\) are: activation='elu'"
    ):
        get_net("twodcnn", num_classes=2, pool="global")
    with pytest.raises(ConfigError, match=r"activation='tanh': expected 'elu' .* or 'relu'"):
        get_net("twodcnn", num_classes=2, activation="tanh")
    with pytest.raises(ConfigError, match=r"num_classes=0: expected a positive int"):
        get_net("onedcnn", num_classes=0)
    with pytest.raises(ConfigError, match=r"pooled_blocks=9: expected 1..n_blocks \(8\)"):
        get_net("onedcnn", num_classes=2, pooled_blocks=9)
    with pytest.raises(ConfigError, match=r"kinetics_logits=True with num_classes=6.*pass num_classes=400"):
        get_net("i3d", num_classes=6, kinetics_logits=True)
    with pytest.raises(ConfigError, match=r"crnn kernel=4: expected an odd size"):
        get_net("crnn", num_classes=4, kernel=4)


def test_twodcnn_relu_switch_and_per_clip_statistics_in_training_too() -> None:
    torch.manual_seed(0)
    elu, relu = get_net("twodcnn", num_classes=2).eval(), get_net("twodcnn", num_classes=2, activation="relu").eval()
    mel = torch.rand(2, 96, 200) * -80
    with torch.no_grad():
        assert (relu.embed(mel) >= 0).all() and (elu.blocks[0][:3](mel[:, None]) < 0).any()
        evaluated = elu.embed(mel)
        trained = elu.train().embed(mel)
    torch.testing.assert_close(trained, evaluated, msg="no batch statistics, no running statistics: train = eval")


SOUND_ONLY = {  # a clip's sound and a clip that fills a short window, and what pads a short clip to a window
    "twodcnn": (torch.rand(1, 96, 300) * -70, torch.rand(1, 96, 400) * -70, -80.0, 1876),  # dB mel, its floor
    "onedcnn": (torch.rand(1, 32_000) * 2 - 1, torch.rand(1, 48_000) * 2 - 1, 0.0, 480_000),  # waveform, zeros
}


@pytest.mark.parametrize("name", list(SOUND_ONLY))
def test_a_short_clip_is_embedded_from_its_sound_whatever_the_window(name: str) -> None:
    """A clip's sound padded to a short window and to the whole window (as a short clip's padding is: the mel's floor,
    the waveform's zeros) embeds as the sound alone, in a batch between clips that fill the window too, those as
    alone; the clips of one length run as one batch; silence embeds as one step. Before, the padding entered the
    normalizations and the pools."""
    sound, full, floor, window = SOUND_ONLY[name]
    torch.manual_seed(0)
    net = get_net(name, num_classes=2).eval()
    padded = [F.pad(sound, (0, steps - sound.shape[-1]), value=floor) for steps in (full.shape[-1], window)]
    with torch.no_grad():
        alone = net.embed(sound)
        assert net._embed(padded[1]).sub(alone).abs().max() > 1e-3, "the padding moved it before"
        torch.testing.assert_close(net.embed(padded[1]), alone)
        batch = net.embed(torch.cat([full, padded[0], full]))
        torch.testing.assert_close(batch[1:2], alone)
        for row in (0, 2):
            torch.testing.assert_close(batch[row : row + 1], net._embed(full), msg="a full clip: as it always was")
        silent = torch.full_like(full, floor)
        torch.testing.assert_close(net.embed(silent), net._embed(silent[..., :1]), msg="silence: one step")
    calls = []
    counted = net._embed
    net._embed = lambda x: calls.append(tuple(x.shape)) or counted(x)  # type: ignore[method-assign]
    with torch.no_grad():
        net.embed(torch.cat([padded[0], full, padded[0]]))
    assert sorted(calls) == [(1, *full.shape[1:]), (2, *sound.shape[1:])], "the clips of one length as one batch"
    assert net.embedding_version == "2", "cached embeddings of the padded windows are another version's"


def test_i3d_small_inputs_need_global_pooling() -> None:
    frames = torch.rand(1, 3, 8, 112, 112) * 2 - 1
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match=r"\(8, 112, 112\) .*smaller than 9 frames and 193 pixels.*use pool='global'"):
        get_net("i3d", num_classes=6).eval().embed(frames)
    net = small_net("i3d")
    with torch.no_grad():
        assert net.embed(frames).shape == (1, 1024) and net(frames).shape == (1, 6)


def test_i3d_reads_the_frames_its_option_names() -> None:
    assert get_net("i3d", num_classes=2).input_kind == "frames224"
    small = get_net("i3d", num_classes=2, pool="global", frames="frames112")
    assert small.input_kind == "frames112" and net_from_config(small.config).input_kind == "frames112"
    uint8 = np.zeros((1, 4, 112, 112, 3), dtype=np.uint8)
    (prepared,) = small.prepare(uint8)
    assert prepared.shape == (1, 3, 4, 112, 112) and float(prepared.min()) == -1.0
    with pytest.raises(ConfigError, match=r"i3d frames='frames64'"):
        get_net("i3d", num_classes=2, frames="frames64")
    with pytest.raises(ConfigError, match=r"i3d frames='frames112' with pool='reference'.*set pool = 'global'"):
        get_net("i3d", num_classes=2, frames="frames112")


@pytest.mark.heavy
def test_i3d_reference_pooling_at_its_smallest_input_averages_one_window() -> None:
    torch.manual_seed(0)
    net = get_net("i3d", num_classes=3).eval()
    frames = torch.rand(1, 3, 9, 193, 193) * 2 - 1
    with torch.no_grad():
        features = net.mixed_5c(frames)
        per_time = net.per_time(frames)
        assert features.shape[2:] == (2, 7, 7) and per_time.shape == (1, 1, 1024)
        torch.testing.assert_close(
            net.embed(frames), features.mean(dim=(2, 3, 4)), msg="one (2, 7, 7) window = the global mean"
        )
        torch.testing.assert_close(net(frames), net.head(net.embed(frames)))


def test_c3d_checks_its_input_size() -> None:
    net = small_net("c3d")
    with pytest.raises(
        ConfigError, match=r"fc6 was built for \(3, 16, 32, 32\); build the net with n_frames and crop_px"
    ):
        net.embed(torch.zeros(1, 3, 32, 32, 32))
    full = get_net("c3d", num_classes=6)
    assert full.fc6.in_features == 512 * 2 * 4 * 4, "32 frames of 112x112 leave (512, 2, 4, 4) after pool5"


@pytest.mark.heavy
@pytest.mark.parametrize("name", BUILT)
def test_loss_and_last_block_support_fine_tuning(name: str) -> None:
    net = small_net(name, num_classes=3).train()
    inputs = SMALL[name][1](2)
    y = torch.tensor([0, 2])
    embedding = net.embed(*inputs)
    loss = net.loss(embedding, y)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    trained = {id(p) for module in net.last_block() for p in module.parameters()}
    assert trained and all(
        p.grad is not None for module in net.last_block() for p in module.parameters() if p.requires_grad
    )
    assert not trained & {id(p) for p in net.head.parameters()}
