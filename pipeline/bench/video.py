"""``mvemo bench video``: milliseconds per 30 s clip to get the 32 preprocessed frames, beside decoding every frame.

Also the measurement behind ``extract.decode.video``'s strategy,
``compare_strategies`` (PyAV seek per target, PyAV sequential decode with
skipped conversions, OpenCV ``grab``/``retrieve`` and ``CAP_PROP_POS_FRAMES``
seeks, and mvemo's planned decode), run by hand::

    .venv/bin/python -m mvemo.pipeline.bench.video --strategies [--clips 8]   # prints JSON
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.pipeline.bench.common import SHARED_SAMPLE, best_of, best_of_each

FPS = 30
DURATION_S = 30
GOP_S = 2
X264 = {
    "preset": "veryfast",
    "crf": "23",
    "x264-params": f"keyint={GOP_S * FPS}:min-keyint={GOP_S * FPS}:scenecut=0:bframes=3",
}
GENERATED_GOP = (
    f"{GOP_S * FPS} frames ({GOP_S} s at {FPS} fps), closed, no scene-cut keyframes; 3 B-frames (b-pyramid normal);"
    " x264 veryfast crf 23, High profile, yuv420p"
)
SIZES = {"240p": (426, 240), "720p": (1280, 720), "1080p": (1920, 1080)}


def bench_video(
    path: str | None = None, *, repeat: int = 3, sizes: tuple[str, ...] = tuple(SIZES), folder: str | None = None
) -> dict[str, Any]:
    """The figures of ``mvemo bench video --json``.

    ``ms_per_clip``: ``extract.frame_sets.compute_video_features`` with the default
    ``FrameConfig`` (32 frames, decoding in its worker process, already started;
    frames224 and frames112 both made), best of ``repeat``. ``decode_all_ms``:
    PyAV decoding every frame of the same file without converting any, taking
    turns with it, with the same FFmpeg thread setting (automatic). 240p is ``path``,
    else the first clip of the shared sample, else a generated clip; 720p and
    1080p (of ``sizes``) are 30 s h264 clips generated into a temporary folder (about a minute
    of encoding: a textured picture that pans, zooms and changes every 3 s,
    with grain, and a moving block), keyframe every 2 s (``gop``).

    ``floor``: the share of the clip's frames that any exact sampler must decode, from the codec's structure: a
    sampled frame needs every reference frame from its GOP's keyframe up to it (``extract.decode.video``), so the
    sampler decodes ``decoded_frames`` of them (the non-reference frames it may skip left out) where decoding all
    decodes every one. At a like cost per frame no sampler's ``ratio`` can go below it; ``ratio_over_floor`` is how
    far above it the sampler lies (the rest: converting and cropping the 32 frames, the worker's hand-over, and
    keyframes costing more to decode than the B-frames it skips).
    """
    from mvemo.extract.frame_sets import FrameConfig, compute_video_features, sample_frames
    from mvemo.manifests.schema import Clip

    config = FrameConfig()
    in_process = FrameConfig(isolate=False)
    out: dict[str, Any] = {
        key: {}
        for key in (
            "ms_per_clip",
            "decode_all_ms",
            "ratio",
            "in_process_ms",
            "decoded_frames",
            "floor",
            "ratio_over_floor",
        )
    }
    out.update(gop={}, clips={}, bitrate_mbps={})
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for name in sizes:
            width, height = SIZES[name]
            source = (
                _clip_240p(path, Path(tmp))
                if name == "240p"
                else generate_clip(Path(tmp) / f"{name}.mp4", width, height)
            )
            clip = Clip(name, "bench", video=source)
            compute_video_features(clip, config)  # starts the worker, warms the page cache
            seconds = best_of_each(
                {
                    "ms": functools.partial(compute_video_features, clip, config),
                    "in_process": functools.partial(sample_frames, source, in_process),
                    "decode_all": functools.partial(decode_all, source),
                },
                repeat,
            )
            ms, ms_in, all_ms = (seconds[k] * 1e3 for k in ("ms", "in_process", "decode_all"))
            sample = sample_frames(source, in_process)
            out["ms_per_clip"][name] = round(ms, 1)
            out["decode_all_ms"][name] = round(all_ms, 1)
            out["ratio"][name] = round(ms / all_ms, 3)
            out["in_process_ms"][name] = round(ms_in, 1)
            out["decoded_frames"][name] = f"{sample.decoded_frames} of {sample.source.frame_count}"
            floor = sample.decoded_frames / sample.source.frame_count
            out["floor"][name] = round(floor, 3)
            out["ratio_over_floor"][name] = round(ms / all_ms / floor, 2)
            out["gop"][name] = GENERATED_GOP if source.parent == Path(tmp) else _gop_of(source)
            out["clips"][name] = (
                str(source) if source.parent != Path(tmp) else f"generated {width}x{height}, {DURATION_S} s"
            )
            out["bitrate_mbps"][name] = round(source.stat().st_size * 8 / sample.source.end_s / 1e6, 2)
    out["cpu_count"] = os.cpu_count()
    out["repeat"] = repeat
    return out


def decode_all(path: str | os.PathLike[str], threads: int = 0) -> int:
    """Decode every frame of the first video stream, converting none; returns the frame count."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        return sum(1 for _ in container.decode(stream))


def _clip_240p(path: str | None, tmp: Path) -> Path:
    if path:
        return Path(path)
    clips = sorted(SHARED_SAMPLE.glob("*/*.mp4"))
    return clips[0] if clips else generate_clip(tmp / "240p.mp4", *SIZES["240p"])


def _gop_of(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [i for i, p in enumerate(p for p in container.demux(stream) if p.size) if p.is_keyframe]
        fps = float(stream.average_rate or 0)
    gaps = np.diff(keys)
    mean = float(gaps.mean()) if gaps.size else float("nan")
    shortest, longest = (gaps.min(), gaps.max()) if gaps.size else ("-", "-")
    return (
        f"shared-sample clip as encoded: {len(keys)} keyframes (x264 scene cuts), GOP {shortest}-{longest} frames,"
        f" mean {mean:.0f} ({mean / fps:.1f} s at {fps:.3f} fps)"
    )


def generate_clip(
    path: Path, width: int, height: int, *, seconds: int = DURATION_S, fps: int = FPS, audio_sr: int | None = None
) -> Path:
    """A 30 s h264 clip whose decoding costs about what a real one of its size does (~2.4 Mbps at 720p).

    Pans and zooms over a multi-scale noise texture (sub-pixel motion), a new
    texture every 3 s, frame grain, and a block moving across; keyframe every
    ``GOP_S`` seconds. With ``audio_sr``, a stereo AAC track at that rate (chords that change every 2 s, and
    noise), interleaved second by second as a muxer expects.
    """
    import av
    import cv2

    rng = np.random.default_rng(0)
    grain = [rng.integers(-4, 5, (height, width, 1), dtype=np.int16) for _ in range(4)]
    texture = np.zeros((height, width, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options=X264)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = None if audio_sr is None else container.add_stream("aac", rate=audio_sr, layout="stereo")
        for i in range(seconds * fps):
            if sound is not None and i % fps == 0:
                _encode_second(container, sound, i // fps, rng)
            k = i % (3 * fps)
            if k == 0:
                texture = _texture(rng, height, width)
            warp = cv2.getRotationMatrix2D((width / 2 + 0.7 * k, height / 2 + 0.3 * k), 0.05 * k, 1 + 0.002 * k)
            image = cv2.warpAffine(
                texture, warp, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
            image = np.clip(image.astype(np.int16) + grain[i % 4], 0, 255).astype(np.uint8)
            cy, cx, r = (
                int(height / 2 + height / 3 * np.sin(i / 15)),
                int(width / 2 + width / 3 * np.cos(i / 20)),
                height // 10,
            )
            image[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = (255, 200, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
        if sound is not None:
            container.mux(sound.encode())
    return path


def _encode_second(container: Any, stream: Any, second: int, rng: np.random.Generator) -> None:
    """Second ``second`` of the generated clip's sound: a chord (a new root every 2 s) and noise, in AAC frames."""
    import av

    sr = stream.rate
    t = second + np.arange(sr) / sr
    root = 110.0 * 2 ** (((second // 2) * 5 % 12) / 12)
    y = sum(0.15 * np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.26, 1.5)) + 0.02 * rng.standard_normal(sr)
    planar = np.repeat(y.astype(np.float32)[None], 2, axis=0)
    size = stream.frame_size or 1024
    for start in range(0, sr, size):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planar[:, start : start + size]), format="fltp", layout="stereo"
        )
        frame.sample_rate, frame.pts, frame.time_base = sr, second * sr + start, Fraction(1, sr)
        for packet in stream.encode(frame):
            container.mux(packet)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    import cv2

    total = np.zeros((height, width, 3), dtype=np.float32)
    for scale, weight in ((1, 0.15), (4, 0.25), (16, 0.3), (64, 0.3)):
        small = rng.random((height // scale + 2, width // scale + 2, 3), dtype=np.float32)
        total += (
            cv2.resize(small, (width + 2 * scale, height + 2 * scale), interpolation=cv2.INTER_CUBIC)[:height, :width]
            * weight
        )
    return np.clip(total * 255, 0, 255).astype(np.uint8)


# ---- the strategy comparison ---------------------------------------------------------------------


def compare_strategies(paths: dict[str, list[Path]], *, repeat: int = 2, n_frames: int = 32) -> dict[str, Any]:
    """Milliseconds per clip and exactness of six ways to get ``n_frames`` RGB frames at uniform times.

    For each group of clips (e.g. ``{"240p": [...], "1080p": [...]}``), each
    strategy's best-of-``repeat`` time is averaged over the group's clips.
    Exact means each returned picture is the target frame (nearest presentation
    time): closer in mean absolute difference to a plain decode's frame k than
    to its neighbours k - 1 and k + 1, at the source's size (OpenCV converts
    colours its own way, so its pictures are compared by nearness, not equality).
    Every strategy returns frames at the I3D working size (short side 256).
    """
    result: dict[str, Any] = {}
    for group, clips in paths.items():
        times: dict[str, list[float]] = {}
        exact: dict[str, bool | None] = {}
        for path in clips:
            targets, reference = _targets_and_reference(path, n_frames)
            for name, strategy in STRATEGIES.items():
                got: list[Any] = []
                run = functools.partial(_run_into, got, strategy, path, targets)
                times.setdefault(name, []).append(best_of(run, repeat) * 1e3)
                verdict = _is_exact(got[0], targets, reference)
                exact[name] = None if verdict is None else bool(exact.get(name, True)) and verdict
        result[group] = {
            name: {"ms_per_clip": round(float(np.mean(ms)), 1), "exact": exact[name]} for name, ms in times.items()
        }
        result[group]["clips"] = len(clips)
    return result


def _run_into(out: list[Any], strategy: Callable[..., Any], path: Path, targets: Any) -> None:
    out[:] = [strategy(path, targets)]


class _Targets:
    """The frames a sample wants: their presentation timestamps (stream ticks) and indices (presentation order)."""

    def __init__(self, pts: list[int], indices: list[int], width: int, height: int) -> None:
        self.pts, self.indices, self.size = pts, indices, (width, height)


def _targets_and_reference(path: Path, n_frames: int) -> tuple[_Targets, dict[int, np.ndarray]]:
    import av

    from mvemo.extract.frame_sets import FrameConfig, sample_frames

    sample = sample_frames(path, FrameConfig(n_frames=n_frames, isolate=False))
    needed = {j for i in sample.frame_indices.tolist() for j in (i - 1, i, i + 1)}
    reference: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        for index, frame in enumerate(container.decode(stream)):
            if index in needed:
                reference[index] = frame.to_ndarray(format="rgb24")
    pts = [round(Fraction(t).limit_denominator(10**9) / tb) for t in sample.timestamps_s]
    height, width = sample.frames.shape[1:3]
    return _Targets(pts, sample.frame_indices.tolist(), width, height), reference


def _is_exact(frames: list[np.ndarray] | None, targets: _Targets, reference: dict[int, np.ndarray]) -> bool | None:
    import cv2

    if frames is None:
        return None
    if len(frames) != len(targets.indices):
        return False
    for frame, k in zip(frames, targets.indices, strict=True):

        def diff(j: int, frame: np.ndarray = frame) -> float:
            ref = reference.get(j)
            if ref is None:
                return float("inf")
            ref = cv2.resize(ref, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_AREA)
            return float(np.abs(ref.astype(np.int16) - frame).mean())

        if diff(k) > min(diff(k - 1), diff(k + 1)):
            return False
    return True


def _pyav_convert(frame: Any, size: tuple[int, int]) -> np.ndarray:
    scaled = frame.reformat(
        width=size[0], height=size[1], format=frame.format.name, interpolation="BILINEAR", threads=1
    )
    return scaled.reformat(format="rgb24", threads=1).to_ndarray()


def _pyav_open(path: Path) -> Any:
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "AUTO"
    return container, stream


def _pyav_sequential(path: Path, targets: _Targets) -> list[np.ndarray]:
    """Decode every frame in order; convert only the wanted ones (a frame index set)."""
    wanted = set(targets.pts)
    kept: dict[int, np.ndarray] = {}
    container, stream = _pyav_open(path)
    with container:
        for frame in container.decode(stream):
            if frame.pts in wanted and frame.pts not in kept:
                kept[frame.pts] = _pyav_convert(frame, targets.size)
    return [kept[p] for p in targets.pts]


def _pyav_seek(path: Path, targets: _Targets) -> list[np.ndarray]:
    """For each target: seek to the keyframe at or before it, decode forward to it."""
    out = []
    container, stream = _pyav_open(path)
    with container:
        for pts in targets.pts:
            container.seek(pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= pts:
                    out.append(_pyav_convert(frame, targets.size))
                    break
    return out


def _pyav_decode_all(path: Path, targets: _Targets) -> None:
    """The baseline: every frame decoded, none converted (not a sampler: no frames, no exactness)."""
    decode_all(path)


def _planned(path: Path, targets: _Targets) -> list[np.ndarray]:
    from mvemo.extract.frame_sets import FrameConfig, sample_frames

    return list(sample_frames(path, FrameConfig(n_frames=len(targets.pts), isolate=False)).frames)


def _cv2_resize(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    shrink = size[0] < bgr.shape[1]
    return cv2.cvtColor(
        cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB
    )


def _opencv_grab(path: Path, targets: _Targets) -> list[np.ndarray]:
    """``grab`` every frame (decode, no conversion), ``retrieve`` (convert) the wanted indices."""
    import cv2

    wanted = set(targets.indices)
    kept: dict[int, np.ndarray] = {}
    capture = cv2.VideoCapture(str(path))
    index = 0
    last = max(wanted)
    while index <= last and capture.grab():
        if index in wanted:
            ok, bgr = capture.retrieve()
            if ok:
                kept[index] = _cv2_resize(bgr, targets.size)
        index += 1
    capture.release()
    return [kept[i] for i in targets.indices if i in kept]


def _opencv_seek(path: Path, targets: _Targets) -> list[np.ndarray]:
    """``CAP_PROP_POS_FRAMES`` then ``read`` per target (OpenCV seeks to a keyframe and decodes forward)."""
    import cv2

    out = []
    capture = cv2.VideoCapture(str(path))
    for index in targets.indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = capture.read()
        if ok:
            out.append(_cv2_resize(bgr, targets.size))
    capture.release()
    return out


STRATEGIES: dict[str, Callable[[Path, _Targets], list[np.ndarray] | None]] = {
    "pyav_decode_all_baseline": _pyav_decode_all,
    "pyav_sequential_skip_conversion": _pyav_sequential,
    "pyav_seek_per_target": _pyav_seek,
    "opencv_grab_retrieve": _opencv_grab,
    "opencv_seek_pos_frames": _opencv_seek,
    "mvemo_planned": _planned,
}


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", action="store_true", help="compare decoding strategies (else: the bench)")
    parser.add_argument("--clips", type=int, default=8, help="shared-sample clips in the strategy comparison")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tmp-dir", default=None)
    args = parser.parse_args()
    began = time.perf_counter()
    if not args.strategies:
        print(json.dumps(bench_video(repeat=args.repeat, folder=args.tmp_dir), indent=2))
        return
    shared = sorted(SHARED_SAMPLE.glob("*/*.mp4"))
    step = max(1, len(shared) // max(args.clips, 1))
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        groups = {
            "240p_shared_sample": shared[::step][: args.clips],
            "1080p_generated": [generate_clip(Path(tmp) / "1080p.mp4", *SIZES["1080p"])],
        }
        result = compare_strategies({k: v for k, v in groups.items() if v}, repeat=args.repeat)
    result["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    _main()
