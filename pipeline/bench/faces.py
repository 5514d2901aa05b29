"""``mvemo bench faces``: ms per 30-s clip for the faces sets (32 frames through MTCNN and the mini Xception) on one CPU
core (``compute_face_sets`` runs torch on one thread), at 240p and 1080p, beside sampling the same 32 frames alone.

The clips are generated (``bench.video.generate_clip``): moving textures, no face. The detector's later stages
then see few candidates, so a clip full of faces costs more (stage one's run over the MVED sample, in
docs/results.md, gives the cost on real music videos).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from mvemo.pipeline.bench.video import SIZES, generate_clip

REPEATS = 3


def bench_faces(
    *,
    sizes: tuple[str, ...] = ("240p", "1080p"),
    repeat: int = REPEATS,
    weights_dir: str | None = None,
    folder: str | None = None,
) -> dict[str, Any]:
    """The figures of ``mvemo bench faces --json``; ``{"skipped": why}`` where the weight files are not found."""
    from mvemo.extract.faces.sets import DETECTOR_FILE, EXPRESSION_FILES, FaceConfig, compute_face_sets
    from mvemo.extract.frame_sets import FrameConfig, sample_frames
    from mvemo.extract.weights.registry import find_weights

    files = (DETECTOR_FILE, EXPRESSION_FILES["mini"])
    missing = [name for name in files if find_weights(name, weights_dir) is None]
    if missing:
        return {"skipped": f"weights {missing} not found: give --weights-dir (see `mvemo weights list`)"}
    config, frames = FaceConfig(weights_dir=weights_dir), FrameConfig(isolate=False, decode_threads=1)
    figures: dict[str, Any] = {"cores": 1, "frames": frames.n_frames, "expression_net": config.expression_net}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for size in sizes:
            clip = generate_clip(Path(tmp) / f"{size}.mp4", *SIZES[size])
            sample = sample_frames(clip, frames)
            compute_face_sets(sample.frames, config)  # loads the nets once
            sampling, faces = [], []
            for _ in range(repeat):
                began = time.perf_counter()
                sample = sample_frames(clip, frames)
                sampling.append(time.perf_counter() - began)
                began = time.perf_counter()
                compute_face_sets(sample.frames, config)
                faces.append(time.perf_counter() - began)
            figures[f"{size}_frames_ms"] = round(1000 * min(sampling), 1)
            figures[f"{size}_faces_ms"] = round(1000 * min(faces), 1)
            figures[f"{size}_faces_over_frames"] = round(min(faces) / min(sampling), 2)
            figures[f"{size}_working_size"] = "x".join(map(str, sample.frames.shape[1:3]))
    return figures
