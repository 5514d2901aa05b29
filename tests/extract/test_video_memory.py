"""Memory stays bounded on a long video: peak RSS of a fresh process, measured around the sampling of a
10-minute clip (15,000 frames: 2.6 GB as RGB if they were all held) against a 10-second one."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.extract.test_video import counter_frames

PROBE = r"""
import json, resource, sys
from mvemo.extract.frame_sets import FrameConfig, sample_frames
config = FrameConfig(window_duration_s=None, isolate=False)
short, long = sys.argv[1], sys.argv[2]
sample_frames(short, config)  # imports, decoder and converter warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sample = sample_frames(long, config)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import mvemo.extract.decode.packets
mvemo.extract.decode.packets.PACKET_BUFFER_BYTES = 1 << 20  # too small for the window: the second pass demuxes again
again = sample_frames(long, config)
print(json.dumps({"before_kib": before, "after_kib": after, "frames": sample.source.frame_count,
                  "decoded": sample.decoded_frames, "shape": list(sample.frames.shape),
                  "unbuffered_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "unbuffered_equal": bool((again.frames == sample.frames).all())}))
"""


def _write_long(path: Path, seconds: int, fps: int = 25, height: int = 180, width: int = 320) -> Path:
    """Streamed to the encoder a second at a time, so the fixture itself holds little."""
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"preset": "veryfast", "g": "250"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for second in range(seconds):
            block = counter_frames(fps, height, width)
            block[:, height // 2 :] = rng.integers(0, 256, (1, height - height // 2, width, 3), dtype=np.uint8)
            for image in block:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            del block
            _ = second
        container.mux(stream.encode())
    return path


@pytest.mark.slow(reason="decodes a ten-minute video, sampling the memory")
def test_peak_rss_does_not_grow_with_video_length(tmp_path: Path) -> None:
    short = _write_long(tmp_path / "short.mp4", 10)
    long = _write_long(tmp_path / "long.mp4", 600)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(short), str(long)],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
        timeout=600,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["frames"] == 15000 and figures["shape"] == [32, 256, 455, 3]
    grown_mib = (figures["after_kib"] - figures["before_kib"]) / 1024
    # The packets of the read window are buffered up to PACKET_BUFFER_BYTES (64 MiB); decoded frames never pile up.
    assert grown_mib < 80, figures
    assert figures["unbuffered_equal"] and (figures["unbuffered_kib"] - figures["before_kib"]) / 1024 < 80, figures
