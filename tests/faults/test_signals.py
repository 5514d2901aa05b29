"""SIGTERM (a scheduler's timeout or preemption) and SIGINT (Ctrl-C) stop `mvemo extract` cleanly: every worker
process and decoder child ends, the run exits non-zero with one line saying what was interrupted, the cache verifies,
and a rerun completes it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.manifests import Clip, Manifest, write_manifest
from mvemo.manifests.synthetic import write_media

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

N_CLIPS = 12
MVEMO = Path(sys.executable).parent / "mvemo"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 20-s videos with sound: long enough that a run is still decoding when it is stopped."""
    folder = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (500, 96, 128, 3), dtype=np.uint8)
    y = (0.2 * rng.standard_normal(20 * 16000)).astype(np.float32)
    source = write_media(folder / "source.mp4", frames=frames, y=y, sr=16000)
    clips = []
    for i in range(N_CLIPS):
        shutil.copyfile(source, folder / f"{i}.mp4")
        clips.append(Clip(f"c{i}", "ab"[i % 2], video=folder / f"{i}.mp4", audio=folder / f"{i}.mp4", fold=(i // 2) % 3))
    return write_manifest(Manifest(("a", "b"), tuple(clips)), folder / "m.csv")


def session_processes(leader: int) -> dict[int, str]:
    """The live (not zombie) processes of the session ``leader`` started, but itself: pid -> command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == leader:
            continue
        try:
            state, _, _, session = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:4]
            command = Path(f"/proc/{entry}/cmdline").read_text().replace("\0", " ")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(session) == leader and state != "Z":
            found[int(entry)] = command
    return found


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def extract(manifest: Path, cache: Path, executor: str) -> list[str]:
    return [
        str(MVEMO),
        "extract",
        str(manifest),
        "--cache",
        str(cache),
        "--features",
        "mel,frames",
        "--executor",
        executor,
        "--workers",
        "2",
    ]


# One signal and executor in make test; the others each stop and rerun an extract of twelve 20-s videos.
SLOW = pytest.mark.slow(reason="another executor or signal: an extract of twelve 20-s videos stopped and run again")


@pytest.mark.parametrize(
    ("executor", "signum", "to_group"),
    [
        ("processes", signal.SIGINT, True),
        pytest.param("processes", signal.SIGTERM, False, marks=SLOW),
        pytest.param("serial", signal.SIGTERM, False, marks=SLOW),
        pytest.param("serial", signal.SIGINT, True, marks=SLOW),
        pytest.param("dask", signal.SIGTERM, False, marks=SLOW),
        pytest.param("dask", signal.SIGINT, True, marks=SLOW),
    ],
)
def test_a_signal_stops_every_worker_and_leaves_a_cache_a_rerun_completes(
    manifest: Path, tmp_path: Path, executor: str, signum: int, to_group: bool
) -> None:
    cache = tmp_path / "cache"
    run = subprocess.Popen(
        extract(manifest, cache, executor), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        decoding = wait_for(lambda: any("mvemo.extract.decode.worker" in c for c in session_processes(run.pid).values()), 120)
        assert decoding, f"no decoder child started: {run.poll()} {session_processes(run.pid)}"
        if executor == "processes":
            assert sum("forkserver" in c for c in session_processes(run.pid).values()) >= 3, "the forkserver and its workers"
        (os.killpg if to_group else os.kill)(run.pid, signum)  # Ctrl-C reaches the whole process group
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    name = signal.Signals(signum).name
    assert run.returncode == 128 + signum, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "%|" not in line]
    assert lines == [f"mvemo: `mvemo extract` interrupted by {name}: its workers are stopped and what it wrote is kept"
                     " (a cache's completed rows included); run it again to finish (extract resumes where it stopped)"], stderr  # fmt: skip
    assert "Traceback" not in stderr
    assert wait_for(lambda: not session_processes(run.pid), 10), f"left running: {session_processes(run.pid)}"
    if (cache / "clips.h5").exists():
        verify = subprocess.run([str(MVEMO), "cache", "verify", str(cache)], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    again = subprocess.run(extract(manifest, cache, executor), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    with Cache(cache) as reader:
        assert all(reader.done(name).all() for name in ("mel", "frames112", "frames224"))
