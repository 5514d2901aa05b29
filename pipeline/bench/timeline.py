"""``mvemo bench timeline``: seconds of compute per minute of 1080p video for ``predict --timeline``.

The model is the integrated one over the nets with published weights (twodcnn, musicnn and msdvgg
on the sound, I3D on the frames) and the LLD statistics, fitted on a small synthetic set: its
heads do not change the cost. The video is a generated 1080p h264 + AAC file
(``bench.video.generate_clip``). The timeline runs in a process of its own, so its wall time,
CPU time (its children's included: the frame decoder) and peak memory (of its largest process) are its alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mvemo.pipeline.bench.video import SIZES, generate_clip

NETS = ("twodcnn", "musicnn", "msdvgg", "i3d")
GOAL_S_PER_MINUTE = 60.0


def bench_timeline(
    *, minutes: float = 1.0, size: str = "1080p", weights_dir: str | None = None, folder: str | None = None
) -> dict[str, Any]:
    """The figures of ``mvemo bench timeline --json`` over ``minutes`` of video of ``size`` (``bench.video.SIZES``);
    ``{"skipped": why}`` where the nets' weights are not found."""
    from mvemo.extract.nets.registry import PRETRAINED
    from mvemo.extract.weights.registry import find_weights

    missing = [PRETRAINED[net] for net in NETS if find_weights(PRETRAINED[net], weights_dir) is None]
    if missing:
        return {"skipped": f"weights {missing} not found: give --weights-dir (see `mvemo weights list`)"}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        model = _model(Path(tmp), weights_dir)
        seconds = round(minutes * 60)
        video = generate_clip(Path(tmp) / "video.mp4", *SIZES[size], seconds=seconds, audio_sr=44100)
        figures = _timeline(model, video, Path(tmp) / "timelines", weights_dir)
    per_minute = 60.0 / seconds
    return {
        "video": f"{seconds} s, {'x'.join(map(str, SIZES[size]))} h264 + AAC",
        "model": f"integrated({', '.join(NETS)}, lldstats)",
        "windows": figures["windows"],
        "wall_s": round(figures["wall_s"], 1),
        "cpu_s": round(figures["cpu_s"], 1),
        "wall_s_per_video_minute": round(figures["wall_s"] * per_minute, 1),
        "cpu_s_per_video_minute": round(figures["cpu_s"] * per_minute, 1),
        "goal_s_per_video_minute": GOAL_S_PER_MINUTE,
        "peak_rss_mb": figures["peak_rss_mb"],
        "cores": os.cpu_count(),
    }


def _model(tmp: Path, weights_dir: str | None) -> Path:
    """A saved integrated model over the pretrained nets, fitted on 18 synthetic 10-s clips."""
    from mvemo.extract.stage import extract_features
    from mvemo.fuse.stage import fuse_cache
    from mvemo.manifests.synthetic import SyntheticConfig
    from mvemo.pipeline.demo import build_demo_manifest

    manifest = build_demo_manifest(tmp / "data", SyntheticConfig(clips_per_class=3, duration_s=10.0), k=3)
    extract_features(manifest, tmp / "cache", features="lld", nets=NETS, weights_dir=weights_dir)
    fuse_cache(tmp / "cache", tmp / "report", models=f"integrated({','.join(NETS)},lldstats)")
    return tmp / "report" / "model"


def _timeline(model: Path, video: Path, out: Path, weights_dir: str | None) -> dict[str, Any]:
    command = [
        sys.executable,
        "-c",
        "from mvemo.pipeline.cli.entry import main; main()",
        "predict",
        str(model),
        str(video),
    ]
    command += ["--timeline", "--out", str(out), *(["--weights-dir", weights_dir] if weights_dir else [])]
    began = time.perf_counter()
    pid = os.posix_spawn(
        sys.executable, command, os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    )
    _, status, usage = os.wait4(pid, 0)  # the rusage of that process and its children alone
    wall_s = time.perf_counter() - began
    if status:
        raise RuntimeError(f"the timeline run failed (status {status}): {' '.join(command)}")
    rows = (out / f"{video.name}.timeline.csv").read_text().splitlines()
    return {
        "windows": len(rows) - 1,
        "wall_s": wall_s,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }
