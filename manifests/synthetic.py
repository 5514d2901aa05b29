"""Writing real media files from arrays: the ground of the synthetic demo set and of test fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor


def write_media(
    path: str | os.PathLike[str],
    *,
    frames: np.ndarray | None = None,
    fps: float = 25.0,
    y: np.ndarray | None = None,
    sr: int = 44100,
    video_codec: str = "libx264",
    audio_codec: str | None = None,
    pix_fmt: str = "yuv420p",
    rotation_deg: int = 0,
) -> Path:
    """Encode frames and/or audio into one container chosen by the file's suffix.

    Parameters
    ----------
    path : path-like
        Output file (``.mp4``, ``.mkv``, ``.m4a``, ``.wav``, ...).
    frames : ndarray, optional
        Video, shape (n_frames, height, width, 3), RGB uint8.
    fps : float
        Frame rate of ``frames``.
    y : ndarray, optional
        Audio, shape (n_samples,) or (n_samples, channels), float32 in [-1, 1].
    sr : int
        Sample rate of ``y`` in Hz.
    video_codec, pix_fmt : str
        Video encoder and the encoded pixel format.
    audio_codec : str, optional
        Audio encoder; default by suffix (PCM for .wav, FLAC for .flac and .ogg, Opus for .opus, MP3 for .mp3, AAC
        otherwise).
    rotation_deg : int
        Display rotation written into the video stream's metadata.
    """
    if frames is None and y is None:
        raise ConfigError(f"write_media({str(path)!r}): give frames, audio (y) or both")
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = _add_video(container, frames, fps, video_codec, pix_fmt, rotation_deg) if frames is not None else None
        audio = (
            _add_audio(container, y, sr, audio_codec or _AUDIO_CODECS.get(path.suffix.lower(), "aac"))
            if y is not None
            else None
        )
        if video is not None and frames is not None:
            for image in frames:
                container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
            container.mux(video.encode())
        if audio is not None and y is not None:
            _encode_audio(container, audio, y, sr)
    return path


_AUDIO_CODECS = {".wav": "pcm_s16le", ".flac": "flac", ".ogg": "flac", ".opus": "libopus", ".mp3": "libmp3lame"}


def _add_video(container: Any, frames: np.ndarray, fps: float, codec: str, pix_fmt: str, rotation_deg: int) -> Any:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"frames must be (n, height, width, 3) uint8, got {frames.shape} {frames.dtype}")
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = pix_fmt
    if codec == "libx264":
        # x264's macroblock-tree rate control carried state from one encoder to the next in a process: the same
        # seed wrote other bytes for half the clips of a set. Without it, a set is written the same every time.
        stream.options = {"x264-params": "mbtree=0"}
    if rotation_deg:
        stream.set_display_rotation(rotation_deg)
    return stream


def _add_audio(container: Any, y: np.ndarray, sr: int, codec: str) -> Any:
    channels = 1 if y.ndim == 1 else y.shape[1]
    stream = container.add_stream(codec, rate=sr)
    stream.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, f"{channels}c")
    if codec == "aac":
        # FFmpeg's AAC encoder searches its quantizers in two loops by default: 0.23 s for a demo clip's 10 s, more
        # than its video's 0.17 s. Its fast coder writes AAC-LC too, in 0.06 s.
        stream.options = {"aac_coder": "fast"}
    return stream


def _encode_audio(container: Any, stream: Any, y: np.ndarray, sr: int) -> None:
    samples = np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0)
    planar = samples[None, :] if samples.ndim == 1 else samples.T
    block = 4096
    for start in range(0, planar.shape[1], block):
        chunk = np.ascontiguousarray(planar[:, start : start + block])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.layout.name)
        frame.sample_rate = sr
        frame.pts = start
        frame.time_base = Fraction(1, sr)
        for packet in stream.encode(frame):
            container.mux(packet)
    container.mux(stream.encode())


@dataclass(frozen=True)
class AudioCues:
    """Musical cues of one clip: the means of a class, drawn per clip with noise."""

    tempo_bpm: float
    minor: bool
    loudness: float  # peak amplitude, 0..1
    brightness: float  # harmonic roll-off: 0 dull .. 1 bright
    regularity: float  # 1 = on the beat .. 0 = onsets jittered by half a beat
    dissonance: float  # 0..1: level of a clashing voice a minor second up


@dataclass(frozen=True)
class VideoCues:
    """Visual cues of one clip."""

    motion: float  # shape speed in frame widths per second
    warmth: float  # hue from cold (0, blue) to warm (1, orange)
    brightness: float  # 0..1 value of the background
    cuts_per_s: float  # scene changes per second


# Complementary evidence by design: Exciting and Tension share their pictures and
# differ in sound; Relaxation and Neutral share their sound and differ in
# pictures; so do Sad and Fear. Neither modality alone separates all six.
_AUDIO_PROFILES = {
    "bright": AudioCues(tempo_bpm=140, minor=False, loudness=0.8, brightness=0.8, regularity=0.95, dissonance=0.0),
    "tense": AudioCues(tempo_bpm=140, minor=True, loudness=0.8, brightness=0.8, regularity=0.4, dissonance=0.6),
    "calm": AudioCues(tempo_bpm=80, minor=False, loudness=0.4, brightness=0.45, regularity=0.9, dissonance=0.0),
    "dark": AudioCues(tempo_bpm=66, minor=True, loudness=0.3, brightness=0.25, regularity=0.7, dissonance=0.15),
}
_VIDEO_PROFILES = {
    "action": VideoCues(motion=0.9, warmth=0.8, brightness=0.75, cuts_per_s=1.0),
    "relax": VideoCues(motion=0.1, warmth=0.85, brightness=0.6, cuts_per_s=0.1),
    "plain": VideoCues(motion=0.3, warmth=0.45, brightness=0.55, cuts_per_s=0.2),
    "sad": VideoCues(motion=0.1, warmth=0.1, brightness=0.3, cuts_per_s=0.1),
    "fear": VideoCues(motion=0.8, warmth=0.2, brightness=0.2, cuts_per_s=1.2),
}
CLASS_PROFILES = {
    "Exciting": ("bright", "action"),
    "Fear": ("dark", "fear"),
    "Neutral": ("calm", "plain"),
    "Relaxation": ("calm", "relax"),
    "Sad": ("dark", "sad"),
    "Tension": ("tense", "action"),
}
DEMO_CLASSES = tuple(CLASS_PROFILES)
# The demo's other targets follow from each clip's drawn cues (``cue_targets``): tags heard or seen, and valence
# and arousal on [-1, 1].
DEMO_TAGS = ("energetic", "dark", "calm", "warm", "restless")
DEMO_SCALE = (-1.0, 1.0)


def cue_targets(audio: AudioCues, video: VideoCues) -> tuple[tuple[str, ...], float, float]:
    """A clip's tags, valence and arousal from how it was made: energetic (fast and loud), dark (minor), calm (slow
    and soft), warm (warm colours), restless (fast motion or many cuts); arousal from tempo, loudness and motion,
    valence from mode, consonance and colour warmth, both on [-1, 1]."""
    tempo = (audio.tempo_bpm - 40.0) / 180.0
    arousal = 2 * (0.4 * tempo + 0.35 * audio.loudness + 0.25 * min(video.motion, 1.0)) - 1
    valence = 2 * (0.45 * (not audio.minor) + 0.3 * (1 - audio.dissonance) + 0.25 * video.warmth) - 1
    on = {
        "energetic": audio.tempo_bpm > 110 and audio.loudness > 0.6,
        "dark": audio.minor,
        "calm": audio.tempo_bpm < 95 and audio.loudness < 0.5,
        "warm": video.warmth > 0.6,
        "restless": video.motion > 0.6 or video.cuts_per_s > 0.7,
    }
    clip = float(np.clip(valence, -1, 1)), float(np.clip(arousal, -1, 1))
    return tuple(t for t in DEMO_TAGS if on[t]), *clip


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and spread of the synthetic set; ``spread`` scales the per-clip noise around each class's cues."""

    clips_per_class: int = 12
    duration_s: float = 10.0
    fps: float = 25.0
    width: int = 160
    height: int = 120
    sr: int = 22050
    spread: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clips_per_class < 1 or self.duration_s <= 0 or self.fps <= 0 or self.spread < 0:
            raise ConfigError(f"{self}: clips_per_class >= 1, duration_s > 0, fps > 0 and spread >= 0 are required")
        if self.width % 2 or self.height % 2 or self.width < 16 or self.height < 16:
            raise ConfigError(f"width={self.width}, height={self.height}: even sizes of at least 16 (h264, yuv420p)")


def draw_cues(label: str, rng: np.random.Generator, spread: float = 1.0) -> tuple[AudioCues, VideoCues]:
    """One clip's cues: its class's profile with Gaussian noise (clipped to valid ranges)."""
    audio_name, video_name = CLASS_PROFILES[label]
    a, v = _AUDIO_PROFILES[audio_name], _VIDEO_PROFILES[video_name]

    def jitter(value: float, sd: float, lo: float = 0.0, hi: float = 1.0) -> float:
        return float(np.clip(value + spread * sd * rng.standard_normal(), lo, hi))

    audio = AudioCues(
        tempo_bpm=jitter(a.tempo_bpm, 12.0, 40.0, 220.0),
        minor=a.minor if rng.random() > 0.15 * spread else not a.minor,
        loudness=jitter(a.loudness, 0.12, 0.05, 1.0),
        brightness=jitter(a.brightness, 0.15),
        regularity=jitter(a.regularity, 0.15),
        dissonance=jitter(a.dissonance, 0.15),
    )
    video = VideoCues(
        motion=jitter(v.motion, 0.2, 0.0, 2.0),
        warmth=jitter(v.warmth, 0.15),
        brightness=jitter(v.brightness, 0.12, 0.05, 1.0),
        cuts_per_s=jitter(v.cuts_per_s, 0.25, 0.0, 3.0),
    )
    return audio, video


def synthesize_audio(cues: AudioCues, duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A chord progression with a beat: mono float32, shape (round(duration_s * sr),)."""
    n = round(duration_s * sr)
    beat_s = 60.0 / cues.tempo_bpm
    root_hz = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    third = 3 if cues.minor else 4
    progression = [0, 5, 7, 0] if not cues.minor else [0, 8, 5, 7]
    y = np.zeros(n, dtype=np.float64)
    onsets = np.arange(0.0, duration_s, beat_s)
    onsets = onsets + (1 - cues.regularity) * beat_s * 0.5 * rng.uniform(-1, 1, onsets.size)
    partials = np.arange(1, 7)
    partial_gain = (cues.brightness + 0.05) ** (partials - 1)
    for b, start in enumerate(np.clip(onsets, 0, duration_s)):
        i0 = int(start * sr)
        length = min(int(beat_s * sr), n - i0)
        if length <= 0:
            continue
        t = np.arange(length) / sr
        envelope = np.exp(-t / (0.35 * beat_s))
        step = progression[(b // 4) % len(progression)]
        notes = [step, step + third, step + 7] + ([step + 1] if cues.dissonance > 0.05 else [])
        levels = [1.0, 0.8, 0.8] + ([cues.dissonance] if cues.dissonance > 0.05 else [])
        chord = np.zeros(length)
        for note, level in zip(notes, levels):
            f = root_hz * 2 ** (note / 12)
            tones = np.sin(2 * np.pi * f * partials[:, None] * t[None, :]) * partial_gain[:, None]
            chord += level * tones[f * partials < sr / 2].sum(axis=0)
        click = rng.standard_normal(length) * np.exp(-t / 0.01) * (0.5 + cues.brightness)
        y[i0 : i0 + length] += envelope * chord + click
    y = y / (np.abs(y).max() + 1e-9) * cues.loudness
    return y.astype(np.float32)


def synthesize_video(
    cues: VideoCues, duration_s: float, fps: float, size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Moving shapes over a coloured background with scene cuts: (n_frames, height, width, 3) uint8."""
    width, height = size
    n_frames = max(1, round(duration_s * fps))
    cut_frames = set(np.flatnonzero(rng.random(n_frames) < cues.cuts_per_s / fps).tolist())
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    scene = _new_scene(cues, rng, width, height)
    for i in range(n_frames):
        if i in cut_frames:
            scene = _new_scene(cues, rng, width, height)
        background, shapes = scene
        frame = frames[i]
        frame[:] = background
        for x0, y0, vx, vy, side, colour in shapes:
            x = int((x0 + vx * i / fps * width) % (width - side))
            y = int((y0 + vy * i / fps * height) % (height - side))
            frame[y : y + side, x : x + side] = colour
    return frames


def _new_scene(
    cues: VideoCues, rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    def colour(value: float) -> np.ndarray:
        warm = np.array([255, 140, 40], dtype=float)
        cold = np.array([40, 110, 255], dtype=float)
        rgb = cues.warmth * warm + (1 - cues.warmth) * cold
        return np.clip(rgb * value * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)

    background = colour(cues.brightness)
    shapes = []
    for _ in range(3):
        angle = rng.uniform(0, 2 * np.pi)
        side = int(rng.integers(height // 8, height // 3))
        shapes.append(
            (
                rng.uniform(0, width),
                rng.uniform(0, height),
                cues.motion * np.cos(angle),
                cues.motion * np.sin(angle),
                side,
                colour(min(1.0, cues.brightness + 0.35)),
            )
        )
    return background, shapes


def write_synthetic_set(
    root: str | os.PathLike[str],
    config: SyntheticConfig | None = None,
    *,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Write ``root/<class>/<n>.mp4`` music videos (h264 + AAC) for the six classes of paper 001.

    Each clip draws its musical and visual cues from its class's distributions
    (``draw_cues``), seeded per clip, so the same config writes the same set, on
    ``executor``'s workers or in this process (None).
    ``progress(clips, total)``, if given, wraps the clips as they are written.

    Returns
    -------
    list of dict
        Per clip: ``path``, ``label``, every drawn cue (``audio_*``, ``video_*``) and the targets that follow from
        them (``tags``, ``valence``, ``arousal``: ``cue_targets``).
    """
    config = config or SyntheticConfig()
    classes = [c for c in range(len(DEMO_CLASSES)) for _ in range(config.clips_per_class)]
    indices = [i for _ in DEMO_CLASSES for i in range(config.clips_per_class)]
    jobs = ([Path(root).absolute()] * len(classes), [config] * len(classes), classes, indices)
    results = map(write_synthetic_clip, *jobs) if executor is None else executor.map(write_synthetic_clip, *jobs)
    written = []
    for result in progress(results, len(classes)) if progress else results:
        if isinstance(result, BaseException):  # a worker's error, as the executor hands it back
            raise result
        written.append(result)
    return written


def write_synthetic_clip(root: Path, config: SyntheticConfig, c: int, i: int) -> dict[str, Any]:
    """The ``i``-th clip of the ``c``-th class of ``write_synthetic_set``, written, and its row."""
    label = DEMO_CLASSES[c]
    folder = root / label
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, c, i])
    audio, video = draw_cues(label, rng, config.spread)
    y = synthesize_audio(audio, config.duration_s, config.sr, rng)
    frames = synthesize_video(video, config.duration_s, config.fps, (config.width, config.height), rng)
    path = write_media(folder / f"{i:03d}.mp4", frames=frames, fps=config.fps, y=y, sr=config.sr)
    cues = {f"audio_{k}": v for k, v in asdict(audio).items()} | {f"video_{k}": v for k, v in asdict(video).items()}
    tags, valence, arousal = cue_targets(audio, video)
    return {"path": path, "label": label, **cues, "tags": tags, "valence": valence, "arousal": arousal}
