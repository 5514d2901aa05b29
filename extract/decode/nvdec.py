"""Decoding on the GPU's video decoders (NVDEC), through PyAV's FFmpeg and its CUDA device.

Only the codecs whose decoding a standard fixes to the bit and whose FFmpeg decoder decodes on the device (h264, hevc,
vp9) go to NVDEC: its pictures are then
those of FFmpeg's own decoder, and the frames (scaled and converted on the CPU as ever, from the same YUV planes) are
the CPU path's, bit for bit, so a cache's frames never depend on the machine that decoded them. Other codecs (MPEG-4
part 2's inverse transform, say, is fixed only to a tolerance) decode on the CPU.

A clip NVDEC refuses (a profile or size it lacks, a device out of sessions, whatever PyAV raises) decodes on the CPU:
the frames are the same. Whether NVDEC works here is found once per process by decoding a small clip on it: FFmpeg
needs the CUDA driver and its video decoder library, which a machine may lack though it has a GPU. The probe's decoder
stays open, holding the device's primary context that every clip's decoder then shares.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import av
import numpy as np

from mvemo.manifests.errors import ConfigError

DECODERS = ("auto", "cpu", "nvdec")
# av1 is fixed to the bit too, but PyAV's FFmpeg opens it with libdav1d, which has no CUDA decoder
NVDEC_CODECS = frozenset({"h264", "hevc", "vp9"})
# the pixel formats NVDEC hands back, and the planar ones of the same samples that FFmpeg's own decoders output
PLANAR_OF = {"nv12": "yuv420p", "p010le": "yuv420p10le", "p016le": "yuv420p16le"}
PROBE_SIZE_PX = 128
MIN_PYAV = 18  # the first PyAV whose reformat reads NVDEC's colour tags


def on_nvdec(decoder: str, codec: str) -> bool:
    """Whether a stream of ``codec`` decodes on NVDEC under ``[frames] decoder`` (``DECODERS``; ``auto``: where NVDEC
    works here)."""
    return decoder != "cpu" and codec in NVDEC_CODECS and nvdec_problem() is None


def nvdec_accel() -> Any:
    """PyAV's settings for decoding on the first CUDA device, never falling back to the CPU unsaid, in the device's
    primary context: the one the probe keeps open (and torch uses), so that a clip does not create a context of its
    own (0.4 s a clip on an H200, more than the decoding)."""
    from av.codec.hwaccel import HWAccel

    return HWAccel(device_type="cuda", allow_software_fallback=False, options={"primary_ctx": "1"})


def require_decoder(decoder: str) -> None:
    """Refuse an unknown ``[frames] decoder``, and ``nvdec`` where NVDEC does not work, naming why."""
    if decoder not in DECODERS:
        raise ConfigError(f"[frames] decoder = {decoder!r}: choose one of {', '.join(DECODERS)}")
    if decoder == "nvdec" and (problem := nvdec_problem()) is not None:
        raise ConfigError(
            f"[frames] decoder = 'nvdec': the GPU's video decoder does not work here ({problem}); use 'auto' (NVDEC"
            " where it works, else the CPU) or 'cpu'"
        )


@functools.cache
def nvdec_problem() -> str | None:
    """Why NVDEC cannot decode here, or None when a small h264 clip decodes on it."""
    try:
        from av.codec.hwaccel import hwdevices_available
    except ImportError:  # PyAV before 14; 18 reads NVDEC's colour tags
        return f"PyAV {av.__version__} decodes on no device: pip install 'mvemo[nvdec]'"
    if "cuda" not in hwdevices_available():
        return "this PyAV's FFmpeg has no CUDA device type"
    if int(av.__version__.split(".")[0]) < MIN_PYAV:
        return f"PyAV {av.__version__} does not read NVDEC's colour tags: pip install 'mvemo[nvdec]'"
    try:
        container = av.open(io.BytesIO(_probe_clip()), "r", hwaccel=nvdec_accel())
        frames = list(container.decode(container.streams.video[0]))
    except Exception as err:  # no device, no driver library, no h264 encoder for the probe: no NVDEC here
        return f"{type(err).__name__}: {err}"
    if not frames or frames[0].format.name not in PLANAR_OF:
        container.close()
        return f"the probe decoded {len(frames)} frame(s) in {frames[0].format.name if frames else 'no'} format"
    _KEPT.append(container)  # it holds the primary context for the life of the process
    return None


_KEPT: list[Any] = []


def _probe_clip() -> bytes:
    """Four frames of h264 in an mp4, in memory."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream: Any = container.add_stream("libx264", rate=25)
        stream.width = stream.height = PROBE_SIZE_PX
        stream.pix_fmt = "yuv420p"
        for k in range(4):
            picture = np.full((PROBE_SIZE_PX, PROBE_SIZE_PX, 3), 40 * k, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()
