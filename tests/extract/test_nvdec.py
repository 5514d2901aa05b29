"""Frames decoded on the GPU's video decoder (NVDEC): chosen where it works, refused loudly where asked for and absent,
and the same frames as the CPU's, bit for bit. The tests marked ``gpu`` need NVDEC and skip, saying so, without it."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from mvemo.extract.decode.frames import Converter
from mvemo.extract.decode.nvdec import nvdec_problem
from mvemo.extract.features import FeatureConfigs
from mvemo.extract.frame_sets import FrameConfig, frames112, frames224, sample_frames
from mvemo.manifests import Clip, ConfigError, Manifest
from mvemo.manifests.synthetic import write_media
from tests.conftest import MVED_SAMPLE
from tests.extract.stage_helpers import features_into


def test_an_unknown_decoder_is_refused() -> None:
    with pytest.raises(ConfigError, match="decoder='gpu': expected one of auto, cpu, nvdec"):
        FrameConfig(decoder="gpu")


def nv12_of(frame: av.VideoFrame) -> av.VideoFrame:
    """The picture as NVDEC hands it over: NV12, its colour tags kept."""
    nv12 = frame.reformat(format="nv12")
    nv12.colorspace, nv12.color_range = frame.colorspace, frame.color_range
    return nv12


@pytest.mark.parametrize(("colorspace", "color_range"), [(1, 1), (6, 2)], ids=["bt709-tv", "bt601-full"])
def test_a_picture_in_nv12_converts_to_the_frames_of_the_same_picture_in_planar_yuv(
    colorspace: int, color_range: int
) -> None:
    rng = np.random.default_rng(0)
    frame = av.VideoFrame(640, 360, "yuv420p")
    for plane in frame.planes:
        plane.update(rng.integers(16, 236, plane.buffer_size, dtype=np.uint8).tobytes())
    frame.colorspace, frame.color_range = colorspace, color_range

    class Stream:  # what the converter reads of a stream
        sample_aspect_ratio = None
        codec_context = type("Context", (), {"sample_aspect_ratio": None, "width": 640, "height": 360})()

    planar = Converter(256, (128, 171), Stream())(frame)
    interleaved = Converter(256, (128, 171), Stream())(nv12_of(frame))
    np.testing.assert_array_equal(interleaved[0], planar[0])
    np.testing.assert_array_equal(interleaved[1], planar[1])


@pytest.mark.skipif(nvdec_problem() is None, reason="NVDEC works here: the refusal is for machines without it")
def test_nvdec_asked_for_where_it_does_not_work_is_refused_before_any_clip(tmp_path: Path) -> None:
    clip = Clip("a", "x", video=write_media(tmp_path / "a.mp4", frames=np.zeros((10, 64, 96, 3), np.uint8)))
    configs = FeatureConfigs(frames=FrameConfig(decoder="nvdec"))
    with pytest.raises(ConfigError, match=r"decoder = 'nvdec': the GPU's video decoder does not work here \("):
        features_into(Manifest(("x",), (clip,)), tmp_path / "c", ("frames224",), configs=configs)
    assert not (tmp_path / "c").exists(), "refused before the cache is written"


def test_auto_decodes_on_the_cpu_where_nvdec_does_not_work_and_on_nvdec_where_it_does(tmp_path: Path) -> None:
    video = write_media(
        tmp_path / "a.mp4", frames=np.random.default_rng(0).integers(0, 255, (30, 72, 128, 3), np.uint8)
    )
    sample = sample_frames(video, FrameConfig(n_frames=4, decoder="auto", isolate=False))
    assert sample.decoder == ("cpu" if nvdec_problem() else "nvdec")
    assert sample_frames(video, FrameConfig(n_frames=4, decoder="cpu", isolate=False)).decoder == "cpu"


def device_clips(tmp_path: Path) -> list[Path]:
    """Six of the shared sample's music videos (h264, as users' are), or generated h264 clips without it."""
    if MVED_SAMPLE.is_dir():
        return sorted(MVED_SAMPLE.glob("*/*.mp4"))[::23][:6]
    rng = np.random.default_rng(1)
    return [
        write_media(tmp_path / f"g{i}.mp4", frames=rng.integers(0, 255, (100, 360, 640, 3), np.uint8)) for i in range(2)
    ]


@pytest.mark.gpu
def test_nvdec_frames_are_the_cpu_frames_bit_for_bit(tmp_path: Path) -> None:
    if (problem := nvdec_problem()) is not None:
        pytest.skip(f"NVDEC does not work here: {problem}")
    for video in device_clips(tmp_path):
        on_cpu = sample_frames(video, FrameConfig(decoder="cpu", isolate=False))
        on_gpu = sample_frames(video, FrameConfig(decoder="nvdec", isolate=False))
        assert (on_cpu.decoder, on_gpu.decoder) == ("cpu", "nvdec"), video
        np.testing.assert_array_equal(on_gpu.timestamps_s, on_cpu.timestamps_s)
        np.testing.assert_array_equal(frames224(on_gpu), frames224(on_cpu), err_msg=str(video))
        np.testing.assert_array_equal(frames112(on_gpu), frames112(on_cpu), err_msg=str(video))


@pytest.mark.skipif(nvdec_problem() is None, reason="NVDEC works here: it would not refuse the clip")
def test_a_clip_nvdec_refuses_decodes_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where NVDEC fails a clip (a profile it lacks; here no device at all, though the probe is made to say yes), the
    clip's frames come from the CPU, the same frames, and say so."""
    import mvemo.extract.decode.nvdec

    video = write_media(
        tmp_path / "a.mp4", frames=np.random.default_rng(0).integers(0, 255, (30, 72, 128, 3), np.uint8)
    )
    expected = sample_frames(video, FrameConfig(n_frames=4, decoder="cpu", isolate=False))
    monkeypatch.setattr(mvemo.extract.decode.nvdec, "nvdec_problem", lambda: None)
    refused = sample_frames(video, FrameConfig(n_frames=4, decoder="nvdec", isolate=False))
    assert refused.decoder == "cpu"
    np.testing.assert_array_equal(refused.frames, expected.frames)


@pytest.mark.parametrize(
    "refusal", [RuntimeError("hardware decoding is not available"), OSError(22, "Invalid argument")]
)
def test_any_refusal_of_the_device_decoder_falls_back_to_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: Exception
) -> None:
    """PyAV's ``HWAccel(allow_software_fallback=False)`` raised a plain RuntimeError on an av1 file (its FFmpeg opens
    av1 with libdav1d, no device decoder): whatever the device decoder raises, the clip decodes on the CPU."""
    import mvemo.extract.decode.nvdec
    import mvemo.extract.decode.video

    video = write_media(
        tmp_path / "a.mp4", frames=np.random.default_rng(0).integers(0, 255, (30, 72, 128, 3), np.uint8)
    )
    expected = sample_frames(video, FrameConfig(n_frames=4, decoder="cpu", isolate=False))
    on_device = object()
    opened = mvemo.extract.decode.video.open_container

    def device_refuses(path: Path, clip_id: str, hwaccel: object = None) -> object:
        if hwaccel is on_device:
            raise refusal
        return opened(path, clip_id, hwaccel)

    monkeypatch.setattr(mvemo.extract.decode.nvdec, "nvdec_problem", lambda: None)
    monkeypatch.setattr(mvemo.extract.decode.video, "nvdec_accel", lambda: on_device)
    monkeypatch.setattr(mvemo.extract.decode.video, "open_container", device_refuses)
    refused = sample_frames(video, FrameConfig(n_frames=4, decoder="nvdec", isolate=False))
    assert refused.decoder == "cpu"
    np.testing.assert_array_equal(refused.frames, expected.frames)


def test_av1_stays_on_the_cpu_where_nvdec_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAV's FFmpeg opens av1 with libdav1d, which has no CUDA decoder: where NVDEC works, an h264 clip is sent to the
    device and an av1 clip never is; both decode to the frames the CPU gives."""
    import mvemo.extract.decode.nvdec
    import mvemo.extract.decode.video

    frames = np.random.default_rng(0).integers(0, 255, (20, 64, 96, 3), np.uint8)
    videos = {
        "h264": write_media(tmp_path / "a.mp4", frames=frames),
        "av1": write_media(tmp_path / "a.mkv", frames=frames, video_codec="libsvtav1"),
    }
    on_device, asked = object(), []
    opened = mvemo.extract.decode.video.open_container

    def no_device_here(path: Path, clip_id: str, hwaccel: object = None) -> object:
        if hwaccel is on_device:
            asked.append(Path(path).suffix)
            raise RuntimeError("no device in this test")
        return opened(path, clip_id, hwaccel)

    monkeypatch.setattr(mvemo.extract.decode.nvdec, "nvdec_problem", lambda: None)
    monkeypatch.setattr(mvemo.extract.decode.video, "nvdec_accel", lambda: on_device)
    monkeypatch.setattr(mvemo.extract.decode.video, "open_container", no_device_here)
    for codec, video in videos.items():
        with av.open(str(video)) as container:
            assert container.streams.video[0].codec_context.name in (codec, "libdav1d")
        on_cpu = sample_frames(video, FrameConfig(n_frames=4, decoder="cpu", isolate=False))
        auto = sample_frames(video, FrameConfig(n_frames=4, decoder="auto", isolate=False))
        assert auto.decoder == "cpu"
        np.testing.assert_array_equal(auto.frames, on_cpu.frames)
    assert asked == [".mp4"], "the h264 clip was offered to the device, the av1 clip never"
