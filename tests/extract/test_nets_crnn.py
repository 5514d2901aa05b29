"""Paper 003's CRNN + Bi-LSTM and its improved center loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mvemo.extract.finetune.train import set_trainable
from mvemo.extract.nets import get_net
from mvemo.extract.nets.crnn import ImprovedCenterLoss, SoundBatchNorm2d
from mvemo.manifests import ConfigError


def center_loss_numpy(x: np.ndarray, y: np.ndarray, centers: np.ndarray) -> float:
    """The formula, term by term: 1/2 sum_i ||x_i - Q_{y_i}||^2 / (sum_{j != y_i} ||x_i - Q_j||^2 + 1)."""
    total = 0.0
    for i in range(len(x)):
        own = float(np.sum((x[i] - centers[y[i]]) ** 2))
        others = sum(float(np.sum((x[i] - centers[j]) ** 2)) for j in range(len(centers)) if j != y[i])
        total += own / (others + 1.0)
    return 0.5 * total


def test_improved_center_loss_matches_the_formula() -> None:
    torch.manual_seed(0)
    loss = ImprovedCenterLoss(num_classes=4, dim=5).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    expected = center_loss_numpy(x.numpy(), y.numpy(), loss.centers.detach().numpy())
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-12)
    mean = ImprovedCenterLoss(num_classes=4, dim=5, reduction="mean").double()
    mean.load_state_dict(loss.state_dict())
    assert mean(x, y).item() == pytest.approx(expected / 7, rel=1e-12)


def test_improved_center_loss_gradient() -> None:
    torch.manual_seed(0)
    loss = ImprovedCenterLoss(num_classes=3, dim=4).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 2, 0])
    centers = loss.centers.detach().clone().requires_grad_(True)

    def f(inputs: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"centers": c}, (inputs, y))

    assert torch.autograd.gradcheck(f, (x, centers))
    # also where a sample sits on its own centre (a square root of the distance would have no gradient there)
    on_centre = centers.detach()[y].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (on_centre, centers))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shift=st.floats(-5, 5))
def test_improved_center_loss_ignores_translation_and_batch_order(seed: int, shift: float) -> None:
    g = torch.Generator().manual_seed(seed)
    loss = ImprovedCenterLoss(num_classes=3, dim=4).double()
    x = torch.randn(6, 4, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)
    value = loss(x, y)
    order = torch.randperm(6, generator=g)
    torch.testing.assert_close(loss(x[order], y[order]), value)
    moved = torch.func.functional_call(loss, {"centers": loss.centers + shift}, (x + shift, y))
    torch.testing.assert_close(moved, value)
    assert value.item() >= 0


def test_the_loss_pulls_samples_to_their_centre_and_away_from_the_others() -> None:
    loss = ImprovedCenterLoss(num_classes=2, dim=2).double()
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0]]))
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    loss(x, torch.tensor([0])).backward()
    assert x.grad is not None
    step = -x.grad[0]
    assert step[0] < 0 and step[1] < 0, "towards its own centre (0, 0), away from (4, 0)"


def test_crnn_loss_adds_tau_times_the_center_loss() -> None:
    torch.manual_seed(0)
    net = get_net("crnn", num_classes=4, tau=0.5).eval()
    embedding = torch.randn(3, net.embedding_dim)
    y = torch.tensor([0, 3, 1])
    ce = torch.nn.functional.cross_entropy(net.head(embedding), y)
    torch.testing.assert_close(net.loss(embedding, y), ce + 0.5 * net.center_loss(embedding, y))
    assert net.center_loss.reduction == "mean"
    assert net.config["tau"] == 0.5


def test_the_crnn_s_class_centres_train_with_its_head_and_with_the_whole_net() -> None:
    net = get_net("crnn", num_classes=4)
    centers = net.center_loss.centers
    for finetune in ("last", "full"):
        trained = set_trainable(net, finetune)
        assert any(p is centers for p in trained) and centers.requires_grad, finetune
    assert all(p.requires_grad for p in net.parameters())
    set_trainable(net, "last")
    assert not net.conv2.weight.requires_grad, "the convolutions are frozen when the last block trains"


def test_crnn_reads_both_branches_and_checks_their_shapes() -> None:
    torch.manual_seed(0)
    net = get_net("crnn", num_classes=4, n_lld=10).eval()
    mel, lld = torch.rand(2, 96, 120) * -80, torch.randn(2, 30, 10)
    with torch.no_grad():
        base = net.embed(mel, lld)
        other_lld = net.embed(mel, torch.randn(2, 30, 10))
        other_mel = net.embed(torch.rand(2, 96, 120) * -80, lld)
    half = 2 * net.config["hidden"]
    assert torch.equal(base[:, :half], other_lld[:, :half]) and not torch.equal(base[:, half:], other_lld[:, half:])
    assert torch.equal(base[:, half:], other_mel[:, half:]) and not torch.equal(base[:, :half], other_mel[:, :half])
    with torch.no_grad():
        torch.testing.assert_close(
            net.embed(mel, lld * 1000.0 + 7.0), base, msg="LLD columns are standardized per clip"
        )
    with pytest.raises(
        ConfigError, match=r"lld \(2, 30, 63\): expected .* \(B, frames, 10\); build the net with n_lld="
    ):
        net.embed(mel, torch.randn(2, 30, 63))


def test_crnn_first_layer_has_a_time_kernel_and_a_frequency_kernel() -> None:
    """Paper 003's first convolution: one kernel along time, one along frequency, concatenated."""
    torch.manual_seed(0)
    net = get_net("crnn", num_classes=3, kernel=7).eval()
    impulse = torch.zeros(1, 1, 96, 40)
    impulse[0, 0, 48, 20] = 1.0
    with torch.no_grad():
        along_time = (net.conv_time(impulse) - net.conv_time.bias[None, :, None, None]).abs().sum(dim=1)[0]
        along_freq = (net.conv_freq(impulse) - net.conv_freq.bias[None, :, None, None]).abs().sum(dim=1)[0]
    rows, cols = torch.nonzero(along_time, as_tuple=True)
    assert set(rows.tolist()) == {48} and set(cols.tolist()) == set(range(17, 24))
    rows, cols = torch.nonzero(along_freq, as_tuple=True)
    assert set(cols.tolist()) == {20} and set(rows.tolist()) == set(range(45, 52))
    mel, lld = torch.rand(2, 96, 40) * -80, torch.randn(2, 40, 63)
    with torch.no_grad():
        before = net.embed(mel, lld)
        net.conv_freq.weight.zero_()
        assert not torch.allclose(net.embed(mel, lld), before), "the frequency branch feeds the embedding"


def test_a_short_clip_is_embedded_from_its_sound_whatever_the_window() -> None:
    """A clip's sound (300 mel frames, 40 LLD frames) in a short window and in the whole one (the mel padded at its
    floor, the LLDs with the cache's zero rows) embeds alike, alone or between clips that fill the window; those embed
    as alone, and the LLD rows alone (as predict computes them) as padded. Before, both LSTMs read the padding to the
    window's end, and the LLDs' statistics counted it."""
    torch.manual_seed(0)
    net = get_net("crnn", num_classes=2, n_lld=10).eval()
    mel, lld = torch.rand(1, 96, 300) * -70, torch.randn(1, 40, 10)
    full_mel, full_lld = torch.rand(1, 96, 400) * -70, torch.randn(1, 60, 10)

    def padded(mel_frames: int, lld_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        return F.pad(mel, (0, mel_frames - 300), value=-80.0), F.pad(lld, (0, 0, 0, lld_frames - 40))

    with torch.no_grad():
        short = net.embed(*padded(400, 60))
        torch.testing.assert_close(net.embed(*padded(1876, 1292)), short)
        torch.testing.assert_close(net.embed(padded(400, 60)[0], lld), short, msg="predict's LLDs: its rows alone")
        for frames in (300, 304, 313):  # windows that end within the receptive field of the sound's last step
            torch.testing.assert_close(net.embed(*padded(frames, 40)), short, msg=f"a window of {frames} frames")
        batch = net.embed(*(torch.cat([full, part, full]) for full, part in zip((full_mel, full_lld), padded(400, 60))))
        torch.testing.assert_close(batch[1:2], short)
        alone = net.embed(full_mel, full_lld)
        for row in (0, 2):
            torch.testing.assert_close(batch[row : row + 1], alone)
        silent = net.embed(torch.full((1, 96, 400), -80.0), torch.zeros(1, 60, 10))
        torch.testing.assert_close(
            silent, net.embed(torch.full((1, 96, 100), -80.0), torch.zeros(1, 5, 10)), msg="one step"
        )
    assert net.embedding_version == "3", (
        "embeddings of the padded windows (1) or of a CRNN fine-tuned on their statistics (2) are older versions'"
    )


def test_crnn_trains_on_a_batch_of_short_and_full_clips() -> None:
    torch.manual_seed(0)
    net = get_net("crnn", num_classes=2, n_lld=10).train()
    mel = torch.cat([F.pad(torch.rand(1, 96, 100) * -70, (0, 300), value=-80.0), torch.rand(1, 96, 400) * -70])
    lld = torch.cat([F.pad(torch.randn(1, 20, 10), (0, 0, 0, 40)), torch.randn(1, 60, 10)])
    net.loss(net.embed(mel, lld), torch.tensor([0, 1])).backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for p in (net.mel_lstm.weight_hh_l0, net.lld_lstm.weight_ih_l0)
    )


def test_sound_batch_norm_counts_each_clip_s_sound_alone() -> None:
    """In training, its statistics (and the running ones it keeps) are a plain batch norm's over the frames of sound
    laid end to end; in evaluation it is a plain batch norm."""
    torch.manual_seed(0)
    norm, plain = SoundBatchNorm2d(3), torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2), norm.bias.uniform_(-1, 1)
    plain.load_state_dict(norm.state_dict())
    x = (torch.randn(2, 3, 4, 10) * 3 + 1).requires_grad_(True)
    frames = torch.tensor([6, 12])  # the second clip's sound outlasts the map
    out = norm(x, frames)
    expected = plain(torch.cat([x[0, :, :, :6], x[1]], dim=2)[None])
    got = torch.cat([out[0, :, :, :6], out[1]], dim=2)[None]
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(norm.running_mean, plain.running_mean)
    torch.testing.assert_close(norm.running_var, plain.running_var)
    assert int(norm.num_batches_tracked) == 1
    upstream = torch.randn_like(expected)
    ours = torch.autograd.grad((got * upstream).sum(), [x, norm.weight, norm.bias])
    theirs = torch.autograd.grad((expected * upstream).sum(), [x, plain.weight, plain.bias])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="need 2 or more"):
        norm(x, torch.tensor([0, 0]))
    norm.eval(), plain.eval()
    torch.testing.assert_close(norm(x, frames), plain(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as GPU fine-tuning runs it
        assert SoundBatchNorm2d(3)(x.to(torch.bfloat16), frames).dtype == torch.bfloat16


def test_in_training_the_batch_norms_count_no_padding() -> None:
    """A short clip (300 frames of sound, then the window's padding at the floor) beside a full one: each batch norm
    of the mel branch learns its statistics from the frames its LSTM steps cover (38 steps of 8 frames for the short
    clip), never from the padding between them and the full clip's end."""
    torch.manual_seed(0)
    net = get_net("crnn", num_classes=2, n_lld=10).train()
    mel = torch.cat([F.pad(torch.rand(1, 96, 300) * -70, (0, 1576), value=-80.0), torch.rand(1, 96, 1876) * -70])
    lld = torch.cat([F.pad(torch.randn(1, 40, 10), (0, 0, 0, 1252)), torch.randn(1, 1292, 10)])
    inputs: dict[str, torch.Tensor] = {}
    for name in ("bn1", "bn2"):
        getattr(net, name).register_forward_pre_hook(
            lambda _, args, name=name: inputs.__setitem__(name, args[0].detach())
        )
    net.embed(mel, lld)
    steps = (38, 235)  # ceil(300 / 8), ceil(1876 / 8)
    for name, frames_a_step in (("bn1", 8), ("bn2", 2)):
        x = inputs[name]
        sound = torch.cat([x[row, :, :, : count * frames_a_step] for row, count in enumerate(steps)], dim=2)
        torch.testing.assert_close(getattr(net, name).running_mean, 0.1 * sound.mean(dim=(1, 2)), msg=name)
