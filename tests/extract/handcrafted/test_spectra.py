"""Blocks of frames and banded filterbanks: the same numbers as the plain whole-matrix products."""

from __future__ import annotations

import itertools

import librosa
import numpy as np
import pytest

from mvemo.extract.audio import mel_spectrogram
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.handcrafted import spectra
from mvemo.extract.handcrafted.lld import LldConfig, lpc_llds, spectral_llds
from mvemo.extract.handcrafted.spectra import Filterbank, chroma_filterbank, mel_filterbank, row_blocks, running_median
from tests.extract.test_audio import MEL, music


@pytest.mark.parametrize(
    "basis",
    [
        librosa.filters.mel(sr=44100, n_fft=2048, n_mels=128),
        librosa.filters.mel(sr=16000, n_fft=512, n_mels=96, fmax=6000.0),
        librosa.filters.mel(sr=16000, n_fft=750, n_mels=40),
        librosa.filters.chroma(sr=44100, n_fft=2048, tuning=0.0),
    ],
    ids=["mel128", "mel96-6k", "mel40", "chroma"],
)
def test_a_banded_filterbank_gives_the_dense_product(basis: np.ndarray, rng: np.random.Generator) -> None:
    power = rng.random((37, basis.shape[1]), dtype=np.float32)
    bank = Filterbank.of(basis)
    np.testing.assert_allclose(bank.apply(power), power @ basis.T, rtol=1e-5, atol=1e-7 * np.abs(power @ basis.T).max())
    covered = sum((bands.stop - bands.start) * (bins.stop - bins.start) for bands, bins, _ in bank.groups)
    if basis.shape[0] > 12:
        assert covered < basis.size / 3, "a mel filterbank is multiplied on the bins its bands touch, not all"


def test_bands_without_any_bin_give_zero(rng: np.random.Generator) -> None:
    basis = np.zeros((20, 30), dtype=np.float32)
    basis[3, 4:7] = 1.0
    power = rng.random((5, 30), dtype=np.float32)
    out = Filterbank.of(basis).apply(power)
    np.testing.assert_allclose(out, power @ basis.T)
    assert not out[:, 16:].any()


def test_a_spectrum_of_another_length_is_refused(rng: np.random.Generator) -> None:
    bank = mel_filterbank(16000, 512, 96, 0.0, 6000.0)
    with pytest.raises(ValueError, match="300 bins given to a filterbank of 257"):
        bank.apply(rng.random((3, 300), dtype=np.float32))


def test_the_cached_filterbanks_are_librosas() -> None:
    eye = np.eye(1025, dtype=np.float32)
    np.testing.assert_allclose(
        mel_filterbank(44100, 2048, 128, 0.0, None).apply(eye).T, librosa.filters.mel(sr=44100, n_fft=2048)
    )
    chroma = librosa.filters.chroma(sr=44100, n_fft=2048, tuning=0.0)
    np.testing.assert_allclose(chroma_filterbank(44100, 2048, 12).apply(eye).T, chroma)


def test_row_blocks_cover_every_row_once_within_the_byte_budget() -> None:
    blocks = list(row_blocks(1292, 743))
    assert blocks[0].start == 0 and blocks[-1].stop == 1292
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
    assert all(4 * 743 * (b.stop - b.start) <= spectra.BLOCK_BYTES for b in blocks)
    assert [b.stop - b.start for b in row_blocks(3, 10**9)] == [1, 1, 1]


def test_features_do_not_depend_on_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    lld = LldConfig(audio_window=AudioWindow(duration_s=3.0))
    y44, y16 = music(44100), music(16000)
    whole = lpc_llds(y16, lld), spectral_llds(y44, lld), mel_spectrogram(y16, MEL)
    monkeypatch.setattr(spectra, "BLOCK_BYTES", 4 * 2048 * 7)  # 7 frames of 2048, 19 of 743, 28 of 512 per block
    blocked = lpc_llds(y16, lld), spectral_llds(y44, lld), mel_spectrogram(y16, MEL)
    for ours, theirs in zip((*whole[0], *whole[1], whole[2]), (*blocked[0], *blocked[1], blocked[2])):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("shape", "width", "axis"),
    [
        ((64, 300), 17, 1),
        ((64, 300), 17, 0),
        ((3, 5), 17, 1),
        ((5, 3), 7, 0),
        ((4, 1), 17, 1),
        ((3, 2), 17, 1),
        ((3, 4), 33, 1),
        ((3, 9), 17, 1),
        ((2, 10), 1, 1),
        ((2, 0), 5, 1),
    ],
)
def test_running_median_equals_ndimages_reflected_median_filter(shape: tuple[int, int], width: int, axis: int) -> None:
    """Ties (small integers), rows shorter than the window (odd and even, some shorter than half of it), a window of
    one, and empty rows."""
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(width + axis)
    for x in (rng.integers(0, 4, shape).astype(np.float32), (rng.random(shape) ** 4).astype(np.float64)):
        size = [1, 1]
        size[axis] = width
        expected = median_filter(x, size=size, mode="reflect")
        got = running_median(x, width, axis)
        assert got.dtype == x.dtype and np.array_equal(got, expected)


def test_running_median_refuses_an_even_window() -> None:
    with pytest.raises(ValueError, match="width 4; expected an odd number"):
        running_median(np.zeros((2, 10)), 4, 1)
