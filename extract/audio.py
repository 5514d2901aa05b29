"""Audio features: waveform and mel spectrogram (papers 001 and 003), log-mel (the MSD encoders), and the pass that
computes them with the LLDs and the handcrafted sets of one vector per clip (``extract.handcrafted.registry``).

All configs are frozen dataclasses validated on construction; their fields go
into the cache's fingerprints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.extract.decode.audio import AUDIO48K_HZ, AudioWindow, Decoded, resample_exact
from mvemo.extract.handcrafted.lld import LldConfig, low_level_descriptors
from mvemo.extract.handcrafted.registry import HANDCRAFTED
from mvemo.extract.handcrafted.spectra import DB_AMIN, mel_filterbank, n_frames, power_blocks
from mvemo.extract.sound import sound_samples
from mvemo.manifests.errors import ConfigError, require

# Raised whenever a change moves a feature's values: its rows of another version then fail the fingerprint (the
# handcrafted sets' versions are in their registry). lld 5: the frames of the clip's sound (``extract.sound``), not
# of digital silence at its end.
EXTRACTOR_VERSIONS = {"waveform": "3", "audio48k": "1", "mel": "3", "lld": "5", "logmel": "1"}


@dataclass(frozen=True)
class WaveformConfig:
    """The 1D CNN's input (paper 001): ``duration_s`` of mono audio at ``sample_rate_hz``.

    Cached as float16: its rounding noise (about -70 dB re full scale, measured in
    ``tests/extract/test_audio.py``) lies below the AAC codec noise of the sources.
    """

    sample_rate_hz: int = 16000
    audio_window: AudioWindow = field(default_factory=AudioWindow)
    dtype: str = "float16"

    def __post_init__(self) -> None:
        require(4000 <= self.sample_rate_hz <= 192000, f"sample_rate_hz={self.sample_rate_hz}: expected 4000..192000")
        require(self.dtype in ("float16", "float32"), f"dtype={self.dtype!r}: expected 'float16' or 'float32'")

    @property
    def n_samples(self) -> int:
        return self.audio_window.n_samples(self.sample_rate_hz)


@dataclass(frozen=True)
class Audio48kConfig(WaveformConfig):
    """The audio of the nets that read the whole band at 48 kHz (CLAP, ``extract.nets.clap``), cached as float16 like
    the waveform (2.9 MB for 30 s; CLAP's processor makes the mel spectrograms its checkpoint asks for from it)."""

    sample_rate_hz: int = AUDIO48K_HZ

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.sample_rate_hz == AUDIO48K_HZ, f"[audio48k] sample_rate_hz={self.sample_rate_hz}: it is {AUDIO48K_HZ}"
        )


@dataclass(frozen=True)
class MelConfig:
    """Mel spectrogram for the 2D music CNN (paper 001; Choi et al. 2017's front end at 16 kHz).

    96 Slaney mel bands from 0 to 6 kHz, so band frequencies equal those of the
    MSD compact CNN (its 12 kHz front end spans 0-6 kHz too); n_fft 512, hop 256,
    periodic Hann, centred frames: 96 x 1876 for 30 s. Power in dB, minus the
    clip's maximum, floored at ``-top_db``: values in [-80, 0], as that model
    expects (its maximum was taken per batch; per clip keeps rows independent).
    Cached as float16: rounding of at most 1/32 dB over [-80, 0] moved the MSD CNN's
    embeddings of 20 mved-sample clips by at most 3.6e-4 of their norm, 360x less
    than the distance to the nearest other clip, at half the bytes.
    """

    sample_rate_hz: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    fmin_hz: float = 0.0
    fmax_hz: float = 6000.0
    top_db: float = 80.0
    audio_window: AudioWindow = field(default_factory=AudioWindow)
    dtype: str = "float16"

    def __post_init__(self) -> None:
        require_stft(self.n_fft, self.hop_length, "[mel]")
        require(
            0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate_hz / 2,
            f"fmin_hz={self.fmin_hz}, fmax_hz={self.fmax_hz}: expected 0 <= fmin < fmax <= sample_rate_hz / 2",
        )
        require(self.top_db > 0, f"top_db={self.top_db}: expected > 0")
        require(self.dtype in ("float16", "float32"), f"dtype={self.dtype!r}: expected 'float16' or 'float32'")

    @property
    def n_frames(self) -> int:
        return 1 + self.audio_window.n_samples(self.sample_rate_hz) // self.hop_length


def require_stft(n_fft: int, hop_length: int, table: str) -> None:
    require(
        n_fft >= 16 and n_fft % 2 == 0 and hop_length >= 1,
        f"{table} n_fft={n_fft}, hop_length={hop_length}: expected an even n_fft >= 16, hop >= 1",
    )


@dataclass(frozen=True)
class LogMelConfig:
    """The input of the MSD music encoders (musicnn and its VGG, Pons & Serra 2019): log10(10000 x + 1) of a
    Slaney mel power spectrogram, 96 bands over the whole band (0-8 kHz at 16 kHz), n_fft 512, hop 256,
    periodic Hann, centred frames with zero padding: 96 x 1876 for 30 s.

    Computed in float32 (the original package casts the power to float16 first, which overflows to inf on loud
    bins) and cached as float32: float16 moved musicnn's clip embedding by 6.9e-4 and the VGG's by 1.4e-3 of
    their norm on the parity clip.
    """

    sample_rate_hz: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    audio_window: AudioWindow = field(default_factory=AudioWindow)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        require_stft(self.n_fft, self.hop_length, "[logmel]")
        require(self.dtype in ("float16", "float32"), f"[logmel] dtype={self.dtype!r}: expected 'float16' or 'float32'")

    @property
    def n_frames(self) -> int:
        return 1 + self.audio_window.n_samples(self.sample_rate_hz) // self.hop_length


def config_dict(config: object) -> dict:
    """A config as plain JSON-ready data (nested dataclasses included)."""
    return asdict(config)  # type: ignore[call-overload]


def config_from_dict(name: str, data: dict) -> Any:
    """The inverse of ``config_dict`` for the config of audio set ``name`` (its nested ``AudioWindow`` included).

    A key the config does not have (a config stored by another mvemo version) raises ``ConfigError``."""
    cls = audio_configs()[name]
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(
            f"the {name} config holds keys {unknown} this version does not know (it was stored by another mvemo"
            f" version); compute the set again with `mvemo extract --recompute {name}`, then retrain with `mvemo fuse`"
        )
    values = {k: AudioWindow(**v) if isinstance(v, dict) else v for k, v in data.items()}
    return cls(**values)


def waveform(decoded: Decoded, config: WaveformConfig) -> np.ndarray:
    """The 1D CNN's input, shape (n_samples,), float32 (cast to ``config.dtype`` when cached)."""
    return resample_exact(decoded.y, decoded.sr, config.sample_rate_hz, config.n_samples)


def mel_spectrogram(y: np.ndarray, config: MelConfig, *, sound_samples: int | None = None) -> np.ndarray:
    """Mel spectrogram in dB re the clip's maximum, shape (n_mels, n_frames), float32 in [-top_db, 0].

    ``y`` is mono audio at ``config.sample_rate_hz``, already of the window's length; ``sound_samples``: as
    ``mel_power``'s.
    """
    mel = mel_power(
        y,
        config.sample_rate_hz,
        config.n_fft,
        config.hop_length,
        config.n_mels,
        config.fmin_hz,
        config.fmax_hz,
        sound_samples=sound_samples,
    )
    db = 10.0 * np.log10(np.maximum(mel, DB_AMIN))
    return np.maximum(db - db.max(), -config.top_db).astype(np.float32)


def log_mel_spectrogram(y: np.ndarray, config: LogMelConfig, *, sound_samples: int | None = None) -> np.ndarray:
    """log10(10000 x + 1) of the mel power spectrogram, shape (n_mels, n_frames), float32, from mono audio ``y`` at
    ``config.sample_rate_hz`` already of the window's length; ``sound_samples``: as ``mel_power``'s."""
    sr = config.sample_rate_hz
    mel = mel_power(y, sr, config.n_fft, config.hop_length, config.n_mels, 0.0, sr / 2, sound_samples=sound_samples)
    return np.log10(10000.0 * mel + 1.0, dtype=np.float32)


def mel_power(
    y: np.ndarray,
    sr: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    fmin_hz: float,
    fmax_hz: float,
    *,
    sound_samples: int | None = None,
) -> np.ndarray:
    """Slaney mel power of periodic-Hann centred frames, shape (n_mels, n_frames), float32.

    ``sound_samples``: how many of ``y``'s samples are the clip's sound (``extract.sound``), the rest zero (None:
    all): only the frames that reach into the sound are computed, every later one is zero power, as it would be
    computed."""
    bank = mel_filterbank(sr, n_fft, n_mels, fmin_hz, fmax_hz)
    mel = np.zeros((n_frames(y, hop_length), n_mels), dtype=np.float32)
    # the last frame that reaches into the sound is centred half a frame after it
    reach = y if sound_samples is None else y[: sound_samples + n_fft // 2]
    for rows, power in power_blocks(reach, n_fft, hop_length, "hann"):
        mel[rows] = bank.apply(power)
    return mel.T


def feature_specs(configs: Mapping[str, Any]) -> list[FeatureSpec]:
    """The cache's feature sets of the audio ``configs``, by set name."""
    return [_spec(name, config) for name, config in configs.items()]


def _spec(name: str, config: Any) -> FeatureSpec:
    extractor, record = f"mvemo.{name}", config_dict(config)
    if name in HANDCRAFTED:
        entry = HANDCRAFTED[name]
        columns = entry.columns(config)
        return FeatureSpec(
            name, (len(columns),), "float32", extractor, entry.extractor_version(), record, columns=columns
        )
    version = EXTRACTOR_VERSIONS[name]
    if isinstance(config, WaveformConfig):
        return FeatureSpec(name, (config.n_samples,), config.dtype, extractor, version, record)
    if name in ("mel", "logmel"):
        return FeatureSpec(name, (config.n_mels, config.n_frames), config.dtype, extractor, version, record)
    shape = (config.n_frames, len(config.columns))  # lld
    return FeatureSpec(name, shape, "float32", extractor, version, record, columns=config.columns, variable_length=True)


# The audio sets of every clip's analysis window but the handcrafted vectors of the registry
SIGNAL_CONFIGS: dict[str, type] = {
    "waveform": WaveformConfig,
    "audio48k": Audio48kConfig,
    "mel": MelConfig,
    "logmel": LogMelConfig,
    "lld": LldConfig,
}


def audio_configs() -> dict[str, type]:
    """Every audio set's config class by set name: the signals', then the handcrafted registry's."""
    return SIGNAL_CONFIGS | {name: entry.config for name, entry in HANDCRAFTED.items()}


def audio_features() -> tuple[str, ...]:
    """Every audio set's name (``audio_configs``)."""
    return tuple(audio_configs())


def compute_audio_features(
    decoded: Decoded, names: tuple[str, ...], configs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The requested audio feature sets of one decoded clip, as cached (dtype cast, LLD cut to its valid frames),
    from ``configs`` by set name.

    Each target rate is resampled once and shared (the 16 kHz copy feeds the waveform, both mel spectrograms,
    the LPC analysis and the descriptors). Every set is computed from the clip's sound alone (``extract.sound``: its
    samples up to its last that is not zero), so that its cost follows the sound: the handcrafted sets of the registry
    read it alone, the LLDs are its frames, and a spectrogram's frames past it are the zero power of the window's zero
    padding, as computing them would give.
    """
    copies: dict[int, np.ndarray] = {}

    def at(sr: int, window: AudioWindow) -> np.ndarray:
        if sr not in copies:
            copies[sr] = resample_exact(decoded.y, decoded.sr, sr, window.n_samples(sr))
        return copies[sr]

    def sound_of(sr: int, window: AudioWindow) -> int:
        """How many of the window's samples at ``sr`` are the clip's sound: of those it decoded (the rest is the
        window's zero padding), up to the last that is not zero."""
        decoded_samples = int(np.ceil(min(decoded.valid_s, window.duration_s) * sr))
        return sound_samples(at(sr, window)[:decoded_samples])

    def sound(sr: int, window: AudioWindow) -> np.ndarray:
        return at(sr, window)[: sound_of(sr, window)]

    out: dict[str, np.ndarray] = {}
    for name in names:
        config = configs[name]
        window = config.audio_window
        sr = config.sample_rate_hz
        samples = sound_of(sr, window)
        if isinstance(config, WaveformConfig):
            out[name] = at(sr, window).astype(config.dtype)
        elif name == "mel":
            out[name] = mel_spectrogram(at(sr, window), config, sound_samples=samples).astype(config.dtype)
        elif name == "logmel":
            out[name] = log_mel_spectrogram(at(sr, window), config, sound_samples=samples).astype(config.dtype)
        elif name == "lld":
            valid = max(1, min(int(np.ceil(samples / config.hop_length)), config.n_frames))
            out[name] = low_level_descriptors(
                sound(sr, window), sound(config.lpc_sample_rate_hz, window), config, valid
            )
        else:
            out[name] = HANDCRAFTED[name].compute(sound(sr, window), config)
    return out
