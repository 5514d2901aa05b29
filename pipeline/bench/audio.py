"""``mvemo bench audio``: stage one's audio features per 30 s clip on one core, beside a naive path."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of_each
from mvemo.pipeline.executors import keep_freed_heap


def bench_audio(path: str | None = None, *, repeat: int = 5) -> dict[str, Any]:
    """mvemo's audio features of one 30 s clip on one core, beside openSMILE and a naive librosa path, each the
    best of ``repeat`` runs taking turns, in milliseconds:

    - ``steps_ms``: where each millisecond of the mel and the LLDs goes (decode, resample, mel, each family of
      LLDs), with ``bare_decode``, PyAV decoding the track's first 30 s and nothing else, as the floor; ``total_ms``
      the two sets from the file;
    - ``descriptors_ms``: the 514 descriptors from the 16 kHz audio, and ``descriptor_steps_ms`` each family of
      them on the clip's spectra (``extract.handcrafted.descriptors.FAMILIES``) after the spectra themselves;
      ``expressive_ms`` that set's;
    - ``sets_ms``: each set from the file, decoding included, and the three the ready-made models read together
      (``mel+lld+descriptors``);
    - ``opensmile``: openSMILE's eGeMAPS v02 and ComParE 2016 functionals of the same decoded 16 kHz audio (its
      decode not counted: the comparison favours openSMILE), and ``over_opensmile`` each of ``sets_ms`` over each;
      ``{"skipped": why}`` where ``mvemo[opensmile]`` is not installed;
    - ``naive_ms``: the same LLDs the way research code computes them (decode, ``librosa.resample``,
      ``melspectrogram``, ``mfcc``, a per-frame Python loop of ``librosa.lpc`` for residual phase and formants,
      ``librosa.yin``, ``chroma_stft`` and ``spectral_contrast``), run once first to compile librosa's numba code,
      and ``speedup``, it over ``total_ms``. It moves with librosa's version; openSMILE is the peer to compare with.

    Everything runs on one thread in a process set up as ``mvemo``'s (``keep_freed_heap``); both paths decode with
    PyAV (``librosa.load`` has no mp4 backend without ffmpeg).
    """
    from threadpoolctl import threadpool_limits

    keep_freed_heap()
    with threadpool_limits(1), tempfile.TemporaryDirectory() as tmp:
        source = Path(path) if path else _sample_clip(Path(tmp))
        _naive(source)  # compiles librosa's numba code
        y16 = _sound_at_16k(source)
        peers, opensmile = _opensmile(y16)
        runs = {
            **{f"step {name}": fn for name, fn in _steps(source).items()},
            **{f"descriptor {name}": fn for name, fn in _descriptor_steps(y16).items()},
            **{f"set {name}": fn for name, fn in _sets(source).items()},
            **{f"peer {name}": fn for name, fn in peers.items()},
            "naive": lambda: _naive(source),
        }
        ms = {name: round(s * 1e3, 2) for name, s in best_of_each(runs, repeat).items()}
    of = {kind: {name.split(" ", 1)[1]: v for name, v in ms.items() if name.startswith(f"{kind} ")} for kind in _KINDS}
    steps, descriptor_steps, sets, peer = of["step"], of["descriptor"], of["set"], of["peer"]
    return {
        "clip": str(source),
        "steps_ms": {name: steps[name] for name in steps if name not in ("descriptors", "expressive")},
        "total_ms": sets["mel+lld"],
        "descriptors_ms": steps["descriptors"],
        "descriptor_steps_ms": descriptor_steps,
        "expressive_ms": steps["expressive"],
        "sets_ms": sets,
        "opensmile": opensmile | {f"{name}_ms": v for name, v in peer.items()},
        "over_opensmile": {f"{ours} / {name}": round(sets[ours] / peer[name], 3) for ours in sets for name in peer},
        "naive_ms": ms["naive"],
        "speedup": round(ms["naive"] / sets["mel+lld"], 2),
    }


_KINDS = ("step", "descriptor", "set", "peer")
OUR_SETS = {
    "mel": ("mel",),
    "lld": ("lld",),
    "mel+lld": ("mel", "lld"),
    "descriptors": ("descriptors",),
    "mel+lld+descriptors": ("mel", "lld", "descriptors"),
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


def _ours(source: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    from mvemo.extract.audio import MelConfig, compute_audio_features
    from mvemo.extract.decode.audio import AudioWindow, decode_audio
    from mvemo.extract.handcrafted.descriptors import DescriptorConfig
    from mvemo.extract.handcrafted.lld import LldConfig

    configs = {"mel": MelConfig(), "lld": LldConfig(), "descriptors": DescriptorConfig()}
    decoded = decode_audio(source, AudioWindow())
    return compute_audio_features(decoded, names, configs)


def _sets(source: Path) -> dict[str, Callable[[], Any]]:
    return {name: functools.partial(_ours, source, names) for name, names in OUR_SETS.items()}


def _sound_at_16k(source: Path) -> np.ndarray:
    """The clip's sound at 16 kHz, as stage one gives it to the descriptors (and to openSMILE's sets)."""
    from mvemo.extract.decode.audio import AudioWindow, decode_audio, resample_exact
    from mvemo.extract.sound import sound_samples

    decoded = decode_audio(source, AudioWindow())
    y16 = resample_exact(decoded.y, decoded.sr, 16000, 30 * 16000)[: int(np.ceil(min(decoded.valid_s, 30) * 16000))]
    return y16[: sound_samples(y16)]


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
        "bare_decode": lambda: _bare_decode(source, 30.0),
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


def _descriptor_steps(y16: np.ndarray) -> dict[str, Callable[[], Any]]:
    """The descriptors' spectra, then each family on them."""
    from mvemo.extract.handcrafted import descriptors

    config = descriptors.DescriptorConfig()
    spectra = descriptors.spectra(y16, config)
    families = {name: functools.partial(family, spectra) for name, family in descriptors.FAMILIES.items()}
    return {"spectra": lambda: descriptors.spectra(y16, config), **families}


def _bare_decode(source: Path, seconds: float) -> None:
    """PyAV decoding the track's first ``seconds`` to arrays, nothing else: the floor of any decode."""
    import av

    with av.open(str(source)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            frame.to_ndarray()
            if frame.time is not None and frame.time >= seconds:
                break


def _opensmile(y16: np.ndarray) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """openSMILE's functionals of ``y16`` for each feature set and its version, or none and why."""
    try:
        import opensmile
    except ImportError:
        return {}, {"skipped": "openSMILE is not installed: pip install 'mvemo[opensmile]'"}
    sets = {"egemaps": opensmile.FeatureSet.eGeMAPSv02, "compare": opensmile.FeatureSet.ComParE_2016}
    runs: dict[str, Callable[[], Any]] = {
        name: functools.partial(
            opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals).process_signal,
            y16,
            16000,
        )
        for name, feature_set in sets.items()
    }
    return runs, {"version": str(opensmile.__version__)}


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
