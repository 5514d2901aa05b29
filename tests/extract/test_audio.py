from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import librosa
import numpy as np
import pytest
import soundfile as sf

import mvemo.extract.decode.audio
from mvemo.extract.audio import MelConfig, WaveformConfig, compute_audio_features, mel_spectrogram
from mvemo.extract.decode.audio import AudioWindow, decode_audio, mono_weights, resample_exact
from mvemo.extract.handcrafted.lld import LldConfig, low_level_descriptors
from mvemo.manifests import ConfigError, MediaError
from mvemo.manifests.synthetic import write_media
from tests.conftest import faststart, tiny_audio, tiny_frames, write_tiny

WINDOW = AudioWindow(duration_s=3.0)
MEL = MelConfig(audio_window=WINDOW)
LLD = LldConfig(audio_window=WINDOW)


def music(sr: int, duration_s: float = 3.0, seed: int = 0) -> np.ndarray:
    """Chords with vibrato over noise: something with pitch, formant-like colour and onsets."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * duration_s)) / sr
    y = sum(0.2 * np.sin(2 * np.pi * f * t + 3 * np.sin(2 * np.pi * 5 * t)) for f in (220.0, 277.2, 329.6))
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t) ** 2) + 0.02 * rng.standard_normal(t.size)
    return y.astype(np.float32)


@pytest.mark.heavy
def test_mel_matches_librosa() -> None:
    y = music(16000)
    ours = mel_spectrogram(y, MEL)
    power = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96, fmax=6000.0)
    theirs = librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=80.0)
    assert ours.shape == theirs.shape == (96, 1 + 48000 // 256)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_thirty_seconds_give_96_by_1876() -> None:
    assert MelConfig().n_frames == 1876
    assert mel_spectrogram(np.zeros(480000, dtype=np.float32), MelConfig()).shape == (96, 1876)


@pytest.mark.heavy
def test_lld_columns_match_librosa() -> None:
    y44, y16 = music(44100), music(16000)
    lld = low_level_descriptors(y44, y16, LLD)
    columns = list(LLD.columns)
    assert lld.shape == (LLD.n_frames, len(columns)) and np.isfinite(lld).all()
    assert columns[:2] == ["mfcc_0", "mfcc_1"] and "rp_0" in columns and "f0" in columns and "formant_3" in columns
    mfcc = librosa.feature.mfcc(y=y44, sr=44100, n_mfcc=20, n_fft=2048, hop_length=1024, window="blackmanharris")
    got = lld[:, : LLD.n_mfcc] / LLD.rp_weight
    np.testing.assert_allclose(got, mfcc.T, atol=2e-3 * np.abs(mfcc).max())
    stft = np.abs(librosa.stft(y44, n_fft=2048, hop_length=1024, window="blackmanharris"))
    chroma = librosa.feature.chroma_stft(S=stft**2, sr=44100, n_fft=2048, tuning=0.0)
    first = columns.index("chroma_0")
    np.testing.assert_allclose(lld[:, first : first + 12], chroma.T, atol=1e-3)
    contrast = librosa.feature.spectral_contrast(S=stft, sr=44100, n_fft=2048, fmin=200.0, n_bands=6)
    first = columns.index("contrast_0")
    np.testing.assert_allclose(lld[:, first : first + 7], contrast.T, atol=1e-2)


def test_lld_pitch_of_a_sung_note() -> None:
    def note(sr: int) -> np.ndarray:
        t = np.arange(3 * sr) / sr
        return sum(0.3 / k * np.sin(2 * np.pi * 220.0 * k * t) for k in range(1, 6)).astype(np.float32)

    lld = low_level_descriptors(note(44100), note(16000), LLD)
    f0 = lld[5:-5, list(LLD.columns).index("f0")]
    np.testing.assert_allclose(np.median(f0), 220.0, rtol=0.01)


def test_rp_weight_scales_its_columns() -> None:
    y44, y16 = music(44100), music(16000)
    half = low_level_descriptors(y44, y16, LLD)
    quarter = low_level_descriptors(y44, y16, LldConfig(audio_window=WINDOW, rp_weight=0.25))
    mfcc, rp = slice(0, 20), slice(20, 40)
    np.testing.assert_allclose(quarter[:, mfcc], half[:, mfcc] * 0.5, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(quarter[:, rp], half[:, rp] * 1.5, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp4", ".mkv", ".m4a"])
def test_every_container_decodes_to_the_same_samples(tmp_path: Path, suffix: str) -> None:
    sr = 44100
    y = music(sr, 2.0)
    stereo = np.stack([y, 0.5 * y], axis=1)
    frames = np.zeros((50, 32, 32, 3), dtype=np.uint8) if suffix in (".mp4", ".mkv") else None
    path = write_media(tmp_path / f"a{suffix}", y=stereo, sr=sr, frames=frames)
    window = AudioWindow(duration_s=2.0)
    decoded = decode_audio(path, window)
    assert decoded.sr == sr and decoded.y.dtype == np.float32
    mono = 0.75 * y
    n = min(decoded.y.size, mono.size)
    error = decoded.y[:n] - mono[:n]
    snr_db = 10 * np.log10(np.sum(mono[:n] ** 2) / np.sum(error**2))
    assert snr_db > (80 if suffix in (".wav", ".flac") else 20), f"{suffix}: SNR {snr_db:.1f} dB"
    assert abs(decoded.y.size - 2 * sr) <= (0 if suffix in (".wav", ".flac") else 1024)
    assert resample_exact(decoded.y, sr, 16000, window.n_samples(16000)).size == 32000


def test_offset_and_exact_lengths(tmp_path: Path) -> None:
    sr = 22050
    ramp = (np.arange(sr * 3) / (sr * 3)).astype(np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, sr, subtype="FLOAT")
    decoded = decode_audio(path, AudioWindow(offset_s=1.0, duration_s=1.5))
    np.testing.assert_array_equal(decoded.y, ramp[sr : sr + int(1.5 * sr)])
    past_end = decode_audio(path, AudioWindow(offset_s=2.5, duration_s=1.0))
    assert past_end.y.size == sr // 2 and past_end.valid_s == pytest.approx(0.5)
    out = resample_exact(past_end.y, sr, 16000, 16000)
    assert out.size == 16000 and not out[8100:].any()


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mp3"])
def test_a_window_past_the_end_of_a_compressed_track_holds_no_samples(tmp_path: Path, suffix: str) -> None:
    """The tail is what the track has; a window wholly past its end is an error, never a window of padding."""
    codec = "libopus" if suffix == ".webm" else None
    path = write_media(tmp_path / f"short{suffix}", y=music(48000, 2.0)[:, None], sr=48000, audio_codec=codec)
    tail = decode_audio(path, AudioWindow(offset_s=1.5, duration_s=1.0))
    assert 0.4 < tail.valid_s <= 0.55 and np.abs(tail.y).max() > 0.1
    with pytest.raises(MediaError, match=r"its audio holds no samples from 2\.5 s on"):
        decode_audio(path, AudioWindow(offset_s=2.5, duration_s=1.0))


def first_pts_in_samples(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frame = next(container.decode(stream))
        return round(frame.pts * stream.time_base * stream.codec_context.sample_rate)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".mp3"])
def test_an_offset_window_of_a_compressed_track_is_that_part_of_the_whole_track(tmp_path: Path, suffix: str) -> None:
    sr = 48000
    t = np.arange(3 * sr) / sr
    sweep = 0.5 * np.sin(2 * np.pi * (200 * t + 300 * t**2))  # 200 Hz to 2 kHz: any shift breaks the match
    codec = "libopus" if suffix == ".webm" else None
    path = write_media(tmp_path / f"sweep{suffix}", y=sweep[:, None].astype(np.float32), sr=sr, audio_codec=codec)
    whole = decode_audio(path, AudioWindow(duration_s=3.0)).y
    part = decode_audio(path, AudioWindow(offset_s=1.25, duration_s=1.0)).y
    late = max(first_pts_in_samples(path), 0)  # mp3: the encoder delay; the window lies on the pts timeline
    np.testing.assert_array_equal(part, whole[round(1.25 * sr) - late : round(2.25 * sr) - late])
    lag = np.argmax(np.correlate(whole[sr : 2 * sr], sweep[sr - 2048 : 2 * sr + 2048].astype(np.float32))) - 2048
    assert lag == 0, f"{suffix}: the decoded track is {lag} samples off the source"


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".mp4", None), (".m4a", None), (".mkv", None), (".webm", "libopus"), (".mp3", None), (".mkv", "flac")],
)
def test_a_window_read_from_a_seek_is_the_same_samples_and_costs_what_an_early_one_does(
    tmp_path: Path, suffix: str, codec: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sr = 48000
    t = np.arange(12 * sr) / sr
    sweep = 0.5 * np.sin(2 * np.pi * (200 * t + 80 * t**2))  # any shift breaks the match
    path = write_media(tmp_path / f"sweep{suffix}", y=sweep[:, None].astype(np.float32), sr=sr, audio_codec=codec)
    whole = decode_audio(path, AudioWindow(duration_s=12.0)).y  # from the start
    late = max(first_pts_in_samples(path), 0)
    monkeypatch.setattr(mvemo.extract.decode.audio, "SEEK_FROM_S", 1.5)
    frames = []
    counted = mvemo.extract.decode.audio._float_planes
    monkeypatch.setattr(mvemo.extract.decode.audio, "_float_planes", lambda *a: frames.append(1) or counted(*a))
    decoded = {}
    for offset_s in (2.0, 4.75, 9.5):
        frames.clear()
        part = decode_audio(path, AudioWindow(offset_s=offset_s, duration_s=1.0)).y
        begin = round(offset_s * sr) - late
        # one sample off would differ by ~0.02: the AAC decoder, restarted, rounds within 2e-5
        np.testing.assert_allclose(part, whole[begin : begin + sr], atol=1e-4, err_msg=f"{suffix} at {offset_s} s")
        decoded[offset_s] = len(frames)
    if codec == "flac":  # no codec of fixed frame sizes: no grid places its frames after a seek, read from the start
        assert decoded[9.5] > decoded[4.75] + 40  # 4.75 s more of 96-ms frames
    else:  # read from the start, the window 4.75 s later would decode 4.75 s more (over 200 frames)
        assert decoded[9.5] <= decoded[4.75] + 2, f"{suffix}: a later window decoded more of the track {decoded}"


def test_frames_in_another_layout_than_the_tracks_are_mixed_in_the_tracks(tmp_path: Path) -> None:
    sr = 44100
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * sr) / sr)).astype(np.float32)
    path = tmp_path / "stereo-then-mono.aac"
    with path.open("wb") as out:  # two ADTS streams back to back: the layout changes midway, as in spliced broadcasts
        for layout in ("stereo", "mono"):
            part = tmp_path / f"{layout}.aac"
            with av.open(str(part), "w", format="adts") as container:
                stream = container.add_stream("aac", rate=sr, layout=layout)
                channels = np.tile(tone, (stream.codec_context.layout.nb_channels, 1))
                for at in range(0, tone.size, 1024):
                    frame = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(channels[:, at : at + 1024]), format="fltp", layout=layout
                    )
                    frame.sample_rate, frame.pts = sr, at
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
            out.write(part.read_bytes())
    y = decode_audio(path, AudioWindow(duration_s=4.0)).y
    np.testing.assert_array_equal(y, decode_audio(path, AudioWindow(duration_s=4.0)).y)
    stereo, mono = np.abs(y[4096 : 2 * sr - 4096]).max(), np.abs(y[2 * sr + 4096 :]).max()
    assert 0.25 < stereo < 0.35 and 0.2 < mono < 0.35, (stereo, mono)


def test_mono_mix_ignores_lfe() -> None:
    np.testing.assert_allclose(mono_weights(["FL", "FR", "FC", "LFE", "BL", "BR"]), [0.2, 0.2, 0.2, 0, 0.2, 0.2])
    np.testing.assert_allclose(mono_weights(["", ""]), [0.5, 0.5])


def test_the_lfe_channel_of_a_surround_aac_track_is_left_out_of_the_mix(tmp_path: Path) -> None:
    sr = 48000
    t = np.arange(2 * sr) / sr
    surround = np.tile(0.2 * np.sin(2 * np.pi * 440 * t)[:, None], (1, 6))
    surround[:, 3] = 0.8 * np.sin(2 * np.pi * 60 * t)  # 5.1 order: FL FR FC LFE BL BR
    path = write_media(tmp_path / "surround.mp4", y=surround.astype(np.float32), sr=sr)
    y = decode_audio(path, AudioWindow(duration_s=2.0)).y.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y[4096:-4096]))
    freq = np.fft.rfftfreq(y.size - 8192, 1 / sr)
    tone, lfe = spectrum[np.argmin(np.abs(freq - 440))], spectrum[np.argmin(np.abs(freq - 60))]
    assert lfe < 1e-2 * tone, "the 60 Hz LFE tone leaked into the mono mix"
    assert 0.15 < np.abs(y[4096:-4096]).max() < 0.25


def features_of(path: Path, clip_id: str = "x") -> dict[str, np.ndarray]:
    decoded = decode_audio(path, WINDOW, clip_id=clip_id)
    configs = {"waveform": WaveformConfig(audio_window=WINDOW), "mel": MEL, "lld": LLD}
    return compute_audio_features(decoded, ("waveform", "mel", "lld"), configs)


@pytest.mark.parametrize(
    "name, y, sr",
    [
        ("zeros", np.zeros((3 * 16000, 2), dtype=np.float32), 16000),
        ("half_second", music(44100, 0.5)[:, None], 44100),
        ("8k_mono", music(8000), 8000),
        ("six_channels", np.tile(music(48000)[:, None], (1, 6)) * np.linspace(0.2, 1, 6), 48000),
        ("clipped", np.clip(music(44100) * 20, -1, 1), 44100),
    ],
)
def test_bad_audio_gives_finite_features_of_fixed_shape(tmp_path: Path, name: str, y: np.ndarray, sr: int) -> None:
    path = tmp_path / f"{name}.wav"
    sf.write(path, y, sr, subtype="FLOAT")
    out = features_of(path)
    assert out["waveform"].shape == (48000,) and out["waveform"].dtype == np.float16
    assert out["mel"].shape == (96, MEL.n_frames) and out["mel"].dtype == np.float16
    assert out["lld"].shape[1] == len(LLD.columns) and 1 <= out["lld"].shape[0] <= LLD.n_frames
    assert all(np.isfinite(v.astype(np.float64)).all() for v in out.values())
    if name == "half_second":
        assert out["lld"].shape[0] == int(np.ceil(0.5 * 44100 / 1024))


def test_nan_samples_become_silence(tmp_path: Path) -> None:
    y = music(16000)
    y[1000:2000] = np.nan
    y[5000] = np.inf
    sf.write(tmp_path / "nan.wav", y, 16000, subtype="FLOAT")
    out = features_of(tmp_path / "nan.wav")
    assert all(np.isfinite(v.astype(np.float64)).all() for v in out.values())
    assert not out["waveform"][1000:2000].any()


def test_missing_stream_and_broken_files_name_the_clip(tmp_path: Path) -> None:
    silent_video = write_tiny(tmp_path / "novoice.mp4", audio=False)
    with pytest.raises(
        MediaError, match=r"clip 'Sad/novoice\.mp4'.*has no audio stream; clear the clip's 'audio' column"
    ):
        decode_audio(silent_video, WINDOW, clip_id="Sad/novoice.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError, match=r"clip 'j'.*cannot decode audio"):
        decode_audio(junk, WINDOW, clip_id="j")
    with pytest.raises(MediaError, match=r"does not exist"):
        decode_audio(tmp_path / "gone.wav", WINDOW, clip_id="g")


def test_a_file_libsndfile_refuses_is_read_by_ffmpeg(tmp_path: Path) -> None:
    """A misnamed file (an AAC track saved as .ogg, say) has the samples of the same file under its own name."""
    y = music(44100, 2.0)
    m4a = write_media(tmp_path / "song.m4a", y=y, sr=44100)
    misnamed = tmp_path / "song.ogg"
    misnamed.write_bytes(m4a.read_bytes())
    with pytest.raises(sf.LibsndfileError):
        sf.info(misnamed)
    window = AudioWindow(duration_s=2.0)
    np.testing.assert_array_equal(decode_audio(misnamed, window).y, decode_audio(m4a, window).y)
    junk = tmp_path / "junk.ogg"
    junk.write_bytes(b"OggS" + b"\x00" * 1000)
    with pytest.raises(MediaError, match=r"clip 'j'.*cannot decode audio"):
        decode_audio(junk, window, clip_id="j")


@pytest.mark.parametrize("layout", ["index first", "index last", "matroska"])
def test_a_file_cut_in_half_is_truncated_not_half_a_clip_padded_with_silence(tmp_path: Path, layout: str) -> None:
    suffix = ".mkv" if layout == "matroska" else ".mp4"
    written = write_media(tmp_path / f"w{suffix}", frames=tiny_frames(50), y=tiny_audio(2.0), sr=16000)
    whole = faststart(written, tmp_path / "fast.mp4") if layout == "index first" else written
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert decode_audio(whole, WINDOW).valid_s == pytest.approx(2.0, abs=0.05), (
        "a whole file shorter than the window is fine"
    )
    expected = (
        r"it ends inside its data, before its index"
        if layout == "index last"
        else r"its audio ends at [\d.]+ s, its header declares 2"
    )
    with pytest.raises(MediaError, match=rf"clip 'c'.*the file is truncated: {expected}.*re-download or re-encode it"):
        decode_audio(cut, WINDOW, clip_id="c")


def test_float16_waveform_noise_lies_below_aac_codec_noise(tmp_path: Path) -> None:
    """The measurement behind caching the waveform as float16."""
    sr = 16000
    y = music(sr, 3.0)
    decoded = decode_audio(write_media(tmp_path / "a.m4a", y=y, sr=sr), WINDOW).y[: y.size]

    def noise_db(a: np.ndarray, b: np.ndarray) -> float:
        return 10 * np.log10(np.sum((a - b) ** 2) / np.sum(b**2))

    float16_db = noise_db(y.astype(np.float16).astype(np.float32), y)
    aac_db = noise_db(decoded, y[: decoded.size])
    assert float16_db < -60 and float16_db < aac_db - 20, (float16_db, aac_db)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: LldConfig(window="hannn"), r"window='hannn': not a scipy window"),
        (lambda: MelConfig(fmax_hz=9000), r"fmax_hz=9000"),
        (lambda: LldConfig(rp_weight=1.5), r"rp_weight=1.5"),
        (lambda: AudioWindow(duration_s=0), r"duration_s=0"),
        (lambda: LldConfig(contrast_fmin_hz=4000.0), r"contrast_fmin_hz=4000.0, contrast_n_bands=6"),
        (lambda: LldConfig(contrast_fmin_hz=10.0), r"octave band 10-20 Hz holds no FFT bin"),
        (lambda: MelConfig(n_fft=511), r"n_fft=511.*even n_fft"),
        (lambda: LldConfig(frame_length=2047), r"frame_length=2047.*even frame_length"),
    ],
)
def test_configs_validate(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_an_audio_file_with_no_samples_fails_its_clip_instead_of_becoming_padding(tmp_path: Path) -> None:
    import soundfile as sf
    from click.testing import CliRunner

    from mvemo.cache.read import Cache
    from mvemo.manifests import Clip, Manifest, write_manifest
    from mvemo.pipeline.cli.main import cli

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    sound = tmp_path / "tone.wav"
    sf.write(sound, 0.1 * np.sin(np.arange(16000) / 5.0).astype(np.float32), 16000)
    manifest = Manifest(("a",), (Clip("empty", "a", audio=empty), Clip("tone", "a", audio=sound)))
    path = write_manifest(manifest, tmp_path / "m.csv")
    result = CliRunner().invoke(cli, ["extract", str(path), "--cache", str(tmp_path / "c"), "--features", "mel"])
    assert result.exit_code == 3, result.output
    assert "clip 'empty'" in result.stderr and "holds no samples" in result.stderr
    with Cache(tmp_path / "c") as cache:
        assert cache.done("mel").tolist() == [False, True]


def media_data(mp4: bytes) -> tuple[int, int]:
    """Where an MP4 file's encoded samples lie, its ``mdat`` box's contents: (first byte, end)."""
    offset = 0
    while offset + 8 <= len(mp4):
        size, kind, header = int.from_bytes(mp4[offset : offset + 4], "big"), mp4[offset + 4 : offset + 8], 8
        if size == 1:  # a 64-bit size follows the type
            size, header = int.from_bytes(mp4[offset + 8 : offset + 16], "big"), 16
        elif size == 0:  # the box runs to the end of the file
            size = len(mp4) - offset
        assert size >= header, f"a box of {size} bytes at {offset}"
        if kind == b"mdat":
            return offset + header, offset + size
        offset += size
    raise AssertionError("no mdat box")


@pytest.mark.parametrize("at", [0.5, 0.85])
def test_a_file_damaged_inside_its_data_but_whole_is_corrupt_not_truncated(tmp_path: Path, at: float) -> None:
    """Garbage over some packets of a whole m4a (at a share of its samples' bytes, its index and length intact): the
    decoder's error is the clip's, never audio that stops early as if the file were cut."""
    t = np.arange(16000 * 6) / 16000
    written = write_media(tmp_path / "whole.m4a", y=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr=16000)
    data = bytearray(written.read_bytes())
    first, end = media_data(bytes(data))
    start = first + int((end - first) * at)
    data[start : start + 600] = b"\xff" * 600
    damaged = tmp_path / "damaged.m4a"
    damaged.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"clip 'd'.*cannot decode audio.*corrupt"):
        decode_audio(damaged, AudioWindow(duration_s=10.0), clip_id="d")


def test_a_short_clips_sets_are_computed_from_its_sound_as_from_the_padded_window() -> None:
    """The spectrograms' frames past the sound and the LLDs' frames are computed from the sound alone: the rows equal
    those of the whole zero-padded window (the LLDs to float rounding: their frames go in blocks of another size)."""
    from mvemo.extract.audio import LogMelConfig, log_mel_spectrogram
    from mvemo.extract.decode.audio import Decoded

    window = AudioWindow(duration_s=10.0)
    rng = np.random.default_rng(0)
    y = np.sin(2 * np.pi * 220 * np.arange(int(3.3 * 44100)) / 44100) + 0.1 * rng.standard_normal(int(3.3 * 44100))
    decoded = Decoded(y.astype(np.float32), 44100, 3.3)
    configs = {
        "mel": MelConfig(audio_window=window),
        "logmel": LogMelConfig(audio_window=window),
        "lld": LldConfig(audio_window=window),
    }
    got = compute_audio_features(decoded, ("mel", "logmel", "lld"), configs)
    y16 = resample_exact(decoded.y, 44100, 16000, window.n_samples(16000))
    np.testing.assert_array_equal(got["mel"], mel_spectrogram(y16, configs["mel"]).astype(np.float16))
    np.testing.assert_array_equal(got["logmel"], log_mel_spectrogram(y16, configs["logmel"]))
    lld = configs["lld"]
    whole = low_level_descriptors(
        resample_exact(decoded.y, 44100, lld.sample_rate_hz, window.n_samples(lld.sample_rate_hz)),
        resample_exact(decoded.y, 44100, lld.lpc_sample_rate_hz, window.n_samples(lld.lpc_sample_rate_hz)),
        lld,
    )
    assert got["lld"].shape == (int(np.ceil(3.3 * lld.sample_rate_hz / lld.hop_length)), whole.shape[1])
    np.testing.assert_allclose(got["lld"], whole[: len(got["lld"])], rtol=1e-5, atol=1e-5)
