"""musicnn and its VGG: parity with the musicnn 0.1.0 package's intermediates, the log-mel they read, the clip
pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvemo.extract.audio import LogMelConfig, log_mel_spectrogram
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.nets import get_net
from mvemo.extract.nets.musicnn_patches import PATCH_FRAMES
from mvemo.extract.weights.registry import KNOWN, WeightsError, sha256_of
from mvemo.manifests import ConfigError
from tests.conftest import SHARED
from tests.extract.references import relative_error, shared_file

WEIGHTS = SHARED / "weights"
REFERENCE = WEIGHTS / "reference" / "musicnn_msd_reference.npz"
FILES = {
    "musicnn": "musicnn_msd_musicnn.npz",
    "msdvgg": "musicnn_msd_vgg.npz",
    "mttmusicnn": "musicnn_mtt_musicnn.npz",
    "mttvgg": "musicnn_mtt_vgg.npz",
}
PREFIX = {"musicnn": "musicnn", "msdvgg": "vgg", "mttmusicnn": "musicnn", "mttvgg": "vgg"}
# each net's parity reference: made with musicnn's own TensorFlow code from its checkpoint, on the same clip and patches
REFERENCES = {name: WEIGHTS / "reference" / f"musicnn_{FILES[name].split('_')[1]}_reference.npz" for name in FILES}


def test_the_log_mel_of_the_reference_waveform_matches_the_package_in_float32() -> None:
    reference = np.load(shared_file(REFERENCE), allow_pickle=False)
    logmel = log_mel_spectrogram(reference["waveform_16k"], LogMelConfig())
    assert logmel.shape == (96, 1876) and logmel.dtype == np.float32
    assert relative_error(logmel.T, reference["logmel"]) < 1e-4
    loud = np.full(16000, 1.3, dtype=np.float32)  # float16 power overflowed to inf in the original
    assert np.isfinite(log_mel_spectrogram(loud, LogMelConfig())).all()


@pytest.mark.parametrize("name", list(FILES))
def test_every_intermediate_matches_the_package(name: str) -> None:
    reference = np.load(shared_file(REFERENCES[name]), allow_pickle=False)
    net = get_net(name, num_classes=6, weights=shared_file(WEIGHTS / FILES[name])).eval()
    assert net.weights_sha256 == KNOWN[FILES[name]].sha256
    with torch.no_grad():
        layers = net.patches.layers(torch.from_numpy(reference["input"]))
    keys = [k for k in reference.files if k.startswith(f"{PREFIX[name]}/")]
    assert len(keys) >= 7
    for key in keys:
        expected = reference[key]
        got = layers[key.split("/")[1]].numpy().reshape(expected.shape)
        assert relative_error(got, expected) < 1e-4, key


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("name", "layer", "dim"), [("musicnn", "penultimate", 200), ("musicnn", "taggram", 50), ("msdvgg", "pool5", 256)]
)
def test_a_clip_pools_its_patches_layer(name: str, layer: str, dim: int) -> None:
    torch.manual_seed(0)
    logmel = torch.rand(2, 96, 1876) * 4
    pools = ("mean", "max", "meanmax", "patches")
    nets = {pool: get_net(name, num_classes=3, layer=layer, pool=pool).eval() for pool in pools}
    for net in nets.values():
        net.patches.load_state_dict(nets["mean"].patches.state_dict())
    with torch.no_grad():
        patches = (
            logmel[:, :, : 10 * PATCH_FRAMES]
            .reshape(2, 96, 10, PATCH_FRAMES)
            .permute(0, 2, 3, 1)
            .reshape(20, PATCH_FRAMES, 96)
        )
        key = "pool5_flat" if layer == "pool5" else layer
        per_patch = nets["mean"].patches.layers(patches)[key].reshape(2, 10, dim)
        embedded = {pool: net.embed(*net.prepare(logmel.numpy())) for pool, net in nets.items()}
    # the clip runs its patches two at a time on a CPU, where oneDNN sums in another order than for all twenty at once
    torch.testing.assert_close(embedded["mean"], per_patch.mean(dim=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(embedded["max"], per_patch.amax(dim=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(embedded["meanmax"], torch.cat([embedded["mean"], embedded["max"]], dim=1))
    torch.testing.assert_close(embedded["patches"], per_patch.reshape(2, 10 * dim), rtol=1e-5, atol=1e-5)
    assert nets["patches"].embedding_dim == 10 * dim and nets["patches"].config["patches"] == 10
    assert "patches" not in nets["mean"].config, (
        "the other pools' configs, in the cache's fingerprints, stay as they were"
    )
    with pytest.raises(ConfigError, match="holds 5 patches of 3 s, the variant keeps 10; set patches = 5"):
        nets["patches"].embed(*nets["patches"].prepare(logmel[:, :, : 5 * PATCH_FRAMES].numpy()))
    assert nets["meanmax"].embedding_dim == 2 * dim and nets["meanmax"](
        *nets["meanmax"].prepare(logmel.numpy())
    ).shape == (2, 3)
    with torch.no_grad():
        short = nets["mean"].embed(*nets["mean"].prepare(logmel[:, :, :100].numpy()))
    assert short.shape == (2, dim) and torch.isfinite(short).all(), "a clip shorter than a patch is zero-padded to one"


def test_options_and_files_that_do_not_fit_are_refused(tmp_path: Path) -> None:

    with pytest.raises(ConfigError, match=r"musicnn layer='pool5': expected one of \['penultimate'"):
        get_net("musicnn", num_classes=2, layer="pool5")
    with pytest.raises(ConfigError, match=r"msdvgg pool='median'"):
        get_net("msdvgg", num_classes=2, pool="median")
    vgg = shared_file(WEIGHTS / FILES["msdvgg"])
    with pytest.raises(WeightsError, match=r"no array 'conv2d/kernel'; musicnn loads musicnn_msd_musicnn.npz"):
        get_net("musicnn", num_classes=2, weights=vgg)
    assert sha256_of(vgg) == KNOWN[FILES["msdvgg"]].sha256


def test_the_tag_probabilities_are_named_columns() -> None:
    from mvemo.extract.nets.musicnn_patches import MSD_TAGS, MTT_TAGS

    net = get_net("musicnn", num_classes=2, layer="taggram", pool="meanmax")
    assert (
        len(net.columns) == net.embedding_dim == 100
        and net.columns[0] == "rock (mean)"
        and net.columns[50] == "rock (max)"
    )
    assert get_net("musicnn", num_classes=2).columns == () and len(MSD_TAGS) == 50
    tags = SHARED / "weights" / "msd50_tags.txt"
    if tags.is_file():
        assert tuple(tags.read_text().split("\n")[:50]) == MSD_TAGS
    mtt = get_net("mttvgg", num_classes=2, layer="taggram", pool="mean")
    assert mtt.columns[:2] == ("guitar (mean)", "classical (mean)") and len(MTT_TAGS) == 50
    mtt_tags = SHARED / "weights" / "mtt50_tags.txt"
    if mtt_tags.is_file():
        assert tuple(mtt_tags.read_text().split("\n")[:50]) == MTT_TAGS


def test_a_blocks_folded_norm_and_early_max_equal_the_blocks_layers_as_written() -> None:
    """Channels of negative, zero and positive scale; musicnn's max over mel and msdvgg's overlapping pooling."""
    from functools import partial

    import torch.nn.functional as F

    from mvemo.extract.nets.musicnn_patches import BatchNorm2dOf1d, max_of_bn_relu, max_over_mel, max_pool

    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(1, 6, (3, 5)), BatchNorm2dOf1d(6)
    with torch.no_grad():
        bn.bn.weight.copy_(torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0]))
        bn.bn.bias.normal_()
        bn.bn.running_mean.normal_()
        bn.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 1, 40, 30)
    for pool in (max_over_mel, partial(max_pool, window=(4, 1), stride=(2, 2))):
        bn.eval()
        with torch.no_grad():
            written = pool(bn(F.relu(conv(x))))
            folded = max_of_bn_relu(conv, bn, x, pool)
        torch.testing.assert_close(folded, written, rtol=1e-5, atol=1e-5)
    nchw = torch.randn(2, 3, 11, 9)
    torch.testing.assert_close(max_pool(nchw, (2, 2), (2, 2)), F.max_pool2d(nchw, 2, 2))


@pytest.mark.parametrize("name", ["musicnn", "msdvgg"])
def test_training_runs_a_clips_patches_as_one_batch_whatever_their_count(name: str) -> None:
    """Two patches at a time is for inference on a CPU: in training a batch norm would see one patch's statistics
    (musicnn's dense norms refuse a batch of one, as with an odd number of patches) and differ from a GPU's."""
    torch.manual_seed(0)
    net = get_net(name, num_classes=3).train()
    logmel = torch.rand(1, 96, 3 * PATCH_FRAMES) * 4
    assert net.embed(logmel).shape == (1, net.embedding_dim)
    layer = "pool5_flat" if name == "msdvgg" else net.config["layer"]
    patches = logmel.reshape(1, 96, 3, PATCH_FRAMES).permute(0, 2, 3, 1).reshape(3, PATCH_FRAMES, 96)
    torch.manual_seed(1)
    whole = net.patches.layers(patches)[layer].reshape(1, 3, -1)
    torch.manual_seed(1)
    embedded = net.embed(logmel)
    pooled = {"mean": [whole.mean(dim=1)], "meanmax": [whole.mean(dim=1), whole.amax(dim=1)]}[net.config["pool"]]
    torch.testing.assert_close(embedded, torch.cat(pooled, dim=1), msg="the three patches went through as one batch")


def sounding_clip(seconds: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of 16-kHz tones in noise, none of it digital silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("name", ["musicnn", "msdvgg"])
def test_a_short_clip_is_embedded_from_its_sound_whatever_the_window(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4.8-s clip (one whole patch of sound and most of a second) in windows of 5, 6, 6.04 and 30 s, each padded
    with zeros after it, and as a 30-s file of it followed by digital silence: one embedding, of its one whole patch
    of sound; that patch alone runs through the net."""
    torch.manual_seed(0)
    net = get_net(name, num_classes=3).eval()
    y = sounding_clip(4.8)

    def in_window(seconds: float) -> np.ndarray:
        window = AudioWindow(duration_s=seconds)
        padded = np.pad(y, (0, window.n_samples(16000) - y.size))
        return log_mel_spectrogram(padded, LogMelConfig(audio_window=window), sound_samples=y.size)

    windows = {f"{seconds:g}-s window": in_window(seconds) for seconds in (5.0, 6.0, 6.04, 30.0)}
    windows["file padded with silence"] = log_mel_spectrogram(np.pad(y, (0, 30 * 16000 - y.size)), LogMelConfig())
    run: list[int] = []
    layers = net.patches.layers
    monkeypatch.setattr(net.patches, "layers", lambda x: run.append(len(x)) or layers(x))
    with torch.no_grad():
        embedded = {where: net.embed(*net.prepare(logmel[None])) for where, logmel in windows.items()}
        run.clear()
        net.embed(*net.prepare(windows["30-s window"][None]))
    for where, value in embedded.items():
        torch.testing.assert_close(value, embedded["5-s window"], rtol=1e-5, atol=1e-5, msg=where)
    assert run == [1], "the 30-s window ran its one whole patch of sound, not its ten"


def test_patches_of_sound_are_the_sound_in_whole_patches() -> None:
    """The frames of sound in whole patches, the last partial one dropped, one at least; a clip's silent middle is
    sound all the same; the window's own patches bound them."""
    from mvemo.extract.nets.musicnn import sound_patches

    logmel = torch.zeros(5, 96, 10 * PATCH_FRAMES)
    for clip, frames in enumerate((10, 280, 2 * PATCH_FRAMES - 1, 2 * PATCH_FRAMES, 10 * PATCH_FRAMES)):
        logmel[clip, :, :frames] = 1.0
    logmel[4, :, 400:800] = 0.0
    assert sound_patches(logmel).tolist() == [1, 1, 1, 2, 10]
    versions = {pool: get_net("musicnn", num_classes=2, pool=pool).embedding_version for pool in ("mean", "patches")}
    assert versions == {"mean": "3", "patches": "1"}, "every patch kept: the rows of before, the fingerprints of before"
