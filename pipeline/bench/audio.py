"""``mvemo bench audio``: stage one's audio features per 30 s clip on one core, beside a naive path."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of_each
from mvemo.pipeline.executors import keep_freed_heap


def bench_audio(path: str | None = None, *, repeat: int = 5) -> dict[str, Any]:
    """Per-step and total milliseconds of mvemo's audio features for one 30 s clip, beside the naive path, and
    ``descriptors_ms`` and ``expressive_ms``: those sets from the decoded 16 kHz audio (not part of the total).

    The naive path computes the same descriptors the way research code does:
    decode, ``librosa.resample``, ``melspectrogram``, ``mfcc``, a per-frame Python
    loop of ``librosa.lpc`` for residual phase and formants, ``librosa.yin``,
    ``chroma_stft`` and ``spectral_contrast``. (``librosa.load`` has no mp4
    backend without ffmpeg, so both paths decode with PyAV.) Both run on one
    thread in a process set up as ``mvemo``'s (``keep_freed_heap``); the steps, the
    total and the naive path take turns, each best of ``repeat``, after one naive run
    that compiles librosa's numba code.
    """
    from threadpoolctl import threadpool_limits

    keep_freed_heap()
    with threadpool_limits(1), tempfile.TemporaryDirectory() as tmp:
        source = Path(path) if path else _sample_clip(Path(tmp))
        _naive(source)  # compiles librosa's numba code
        seconds = best_of_each(
            {**_steps(source), "total": lambda: _ours(source), "naive": lambda: _naive(source)}, repeat
        )
    ms = {name: round(s * 1e3, 2) for name, s in seconds.items()}
    total_ms, naive_ms = ms.pop("total"), ms.pop("naive")
    descriptors_ms, expressive_ms = ms.pop("descriptors"), ms.pop("expressive")
    return {
        "clip": str(source),
        "steps_ms": ms,
        "descriptors_ms": descriptors_ms,
        "expressive_ms": expressive_ms,
        "total_ms": total_ms,
        "naive_ms": naive_ms,
        "speedup": round(naive_ms / total_ms, 2),
    }


def _sample_clip(tmp: Path) -> Path:
    clips = sorted(SHARED_SAMPLE.glob("*/*.mp4"))
    if clips:
        return clips[0]
    from mvemo.manifests.synthetic import write_media

    rng = np.random.default_rng(0)
    t = np.arange(30 * 44100) / 44100
    y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    frames = np.zeros((30, 240, 320, 3), dtype=np.uint8)
    return write_media(tmp / "clip.mp4", frames=frames, fps=1, y=np.stack([y, y], 1).astype(np.float32), sr=44100)


def _ours(source: Path) -> dict[str, np.ndarray]:
    from mvemo.extract.audio import MelConfig, compute_audio_features
    from mvemo.extract.decode.audio import AudioWindow, decode_audio
    from mvemo.extract.handcrafted.lld import LldConfig

    decoded = decode_audio(source, AudioWindow())
    return compute_audio_features(decoded, ("mel", "lld"), {"mel": MelConfig(), "lld": LldConfig()})


def _steps(source: Path) -> dict[str, Callable[[], Any]]:
    """Each step of ``_ours`` alone: the MFCC, spectral contrast and chroma share one STFT pass,
    the residual phase, formants and F0 one pass over the 16 kHz frames."""
    from mvemo.extract import audio
    from mvemo.extract.decode.audio import AudioWindow, decode_audio, resample_exact
    from mvemo.extract.handcrafted import descriptors, expressive, lld

    mel, lld_config = audio.MelConfig(), lld.LldConfig()
    decoded = decode_audio(source, AudioWindow())
    y44 = resample_exact(decoded.y, decoded.sr, 44100, 30 * 44100)
    y16 = resample_exact(decoded.y, decoded.sr, 16000, 30 * 16000)
    return {
        "decode": lambda: decode_audio(source, AudioWindow()),
        "resample": lambda: (
            resample_exact(decoded.y, decoded.sr, 44100, 30 * 44100),
            resample_exact(decoded.y, decoded.sr, 16000, 30 * 16000),
        ),
        "mel": lambda: audio.mel_spectrogram(y16, mel),
        "mfcc_contrast_chroma": lambda: lld.spectral_llds(y44, lld_config),
        "rp_formants_f0": lambda: lld.lpc_llds(y16, lld_config),
        "descriptors": lambda: descriptors.descriptors(y16, descriptors.DescriptorConfig()),
        "expressive": lambda: expressive.expressive(y16, expressive.ExpressiveConfig()),
    }


def _naive(source: Path) -> None:
    import av
    import librosa
    import scipy.signal

    with av.open(str(source)) as container:
        stream = container.streams.audio[0]
        sr = stream.codec_context.sample_rate
        y = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(stream)])[: 30 * sr]
    y44 = librosa.resample(y, orig_sr=sr, target_sr=44100)
    y16 = librosa.resample(y, orig_sr=sr, target_sr=16000)
    mel = librosa.feature.melspectrogram(y=y16, sr=16000, n_fft=512, hop_length=256, n_mels=96, fmax=6000)
    librosa.power_to_db(mel, ref=np.max)
    librosa.feature.mfcc(y=y44, sr=44100, n_mfcc=20, n_fft=2048, hop_length=1024, window="blackmanharris")
    hop16, length16 = 1024 * 16000 / 44100, 743
    padded = np.pad(y16, (length16 // 2, length16))
    rp_frames = []
    for k in range(1 + y44.size // 1024):
        frame = padded[round(k * hop16) : round(k * hop16) + length16].astype(np.float64)
        a = librosa.lpc(frame * np.hamming(length16) + 1e-9, order=18)
        residual = scipy.signal.lfilter(a, [1.0], frame)
        rp = residual / (np.abs(scipy.signal.hilbert(residual)) + 1e-12)
        rp_frames.append(rp)
        roots = [r for r in np.roots(a) if np.imag(r) > 0]
        sorted(np.angle(roots) * 16000 / (2 * np.pi))[:3]
    rp_power = np.abs(np.fft.rfft(np.array(rp_frames) * np.blackman(length16), axis=1)) ** 2
    rp_mel = librosa.filters.mel(sr=16000, n_fft=2 * (rp_power.shape[1] - 1), n_mels=40) @ rp_power.T
    librosa.feature.mfcc(S=librosa.power_to_db(rp_mel), n_mfcc=20)
    librosa.yin(y16, fmin=65, fmax=1050, sr=16000, frame_length=1024, hop_length=372)
    stft = np.abs(librosa.stft(y44, n_fft=2048, hop_length=1024, window="blackmanharris"))
    librosa.feature.chroma_stft(S=stft**2, sr=44100)
    librosa.feature.spectral_contrast(S=stft, sr=44100, fmin=200)
