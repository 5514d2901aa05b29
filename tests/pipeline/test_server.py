"""``mvemo serve``: a command forwarded to the server runs on the client's streams, folder, environment and umask,
returns its exit status (128 + the signal that killed it), is stopped by the client's Ctrl-C or death; and a real
``mvemo predict`` prints there what it prints in a process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mvemo.pipeline.bench.predict import MVEMO, Server, serving
from mvemo.pipeline.server import ServeError, serve, socket_path

ECHO = [sys.executable, "-m", "tests.pipeline.served_echo"]
CLIENT = (
    "import sys; from mvemo.pipeline.server import forward; s = forward(sys.argv[1:]); sys.exit(99 if s is None else s)"
)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A short private ``$XDG_RUNTIME_DIR`` (a socket's path has at most 107 bytes), and the environment that names
    it."""
    with tempfile.TemporaryDirectory(prefix="xdg", dir="/tmp") as folder:
        monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
        monkeypatch.delenv("MVEMO_NO_SERVE", raising=False)
        yield dict(os.environ)


@pytest.fixture
def echo_server(runtime: dict[str, str]) -> Iterator[Server]:
    with serving(ECHO, runtime, timeout_s=60) as server:
        yield server


def client(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLIENT, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_served_command_runs_on_the_clients_streams_folder_environment_and_umask(
    echo_server: Server, runtime: dict[str, str], tmp_path: Path
) -> None:
    env = {**runtime, "ECHO": "from the client"}
    done = subprocess.run(
        [str(MVEMO), "predict", "exit", "7"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o027),
    )
    assert done.returncode == 7, done.stderr
    assert f"argv=['predict', 'exit', '7'] cwd={tmp_path} echo=from the client umask=27 pid=" in done.stdout
    assert done.stderr == "on stderr\n"
    assert int(done.stdout.split("pid=")[1]) not in (echo_server.process.pid, os.getpid()), (
        "a fork of the server ran it"
    )
    assert client(["predict", "die"], runtime).returncode == 128 + signal.SIGKILL, "as a shell says a killed command"


def test_only_predict_is_served_and_never_where_the_environment_says_so(
    echo_server: Server, runtime: dict[str, str]
) -> None:
    assert client(["extract", "exit", "7"], runtime).returncode == 99
    assert client(["predict", "exit", "7"], {**runtime, "MVEMO_NO_SERVE": "1"}).returncode == 99
    assert client(["predict", "exit", "7"], runtime).returncode == 7
    echo_server.process.terminate()
    echo_server.process.wait(10)
    assert not socket_path().exists(), "a stopped server removes its socket"
    assert client(["predict", "exit", "7"], runtime).returncode == 99


def test_ctrl_c_reaches_the_command_and_a_client_that_dies_takes_it_along(
    echo_server: Server, runtime: dict[str, str]
) -> None:
    for signum in (signal.SIGINT, signal.SIGKILL):
        waiting = subprocess.Popen(
            [sys.executable, "-c", CLIENT, "predict", "sleep"], env=runtime, stdout=subprocess.PIPE, text=True
        )
        assert waiting.stdout is not None
        pid = int(waiting.stdout.readline().split("pid=")[1])
        waiting.send_signal(signum)
        if signum == signal.SIGINT:
            assert waiting.stdout.read() == "interrupted\n" and waiting.wait(10) == 130
            continue
        waiting.wait(10)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the command of a client that died still runs")


def test_one_server_per_code_a_dead_ones_socket_is_replaced_and_an_idle_one_stops(runtime: dict[str, str]) -> None:
    path = socket_path()
    path.parent.mkdir()
    path.parent.chmod(0o755)
    with pytest.raises(ServeError, match="must be yours alone"):
        serve(path, lambda argv: 0, idle_s=0)
    path.parent.chmod(0o700)
    with serving([*ECHO, "30"], runtime, timeout_s=60), pytest.raises(ServeError, match="already listens"):
        serve(path, lambda argv: 0, idle_s=0)
    with serving([*ECHO, "0.5"], runtime, timeout_s=60) as idle:
        assert idle.process.wait(20) == 0 and not path.exists(), "an idle server stops by itself"
    path.touch()  # what a server killed with SIGKILL leaves
    listening = []
    serve(path, lambda argv: 0, idle_s=0.1, ready=lambda: listening.append(path.is_socket()))
    assert listening == [True]


@pytest.mark.heavy
def test_a_served_predict_prints_what_predict_prints_alone(tiny_demo: Path, runtime: dict[str, str]) -> None:
    model = tiny_demo / "model"
    files = [str(next((tiny_demo / "data").glob("*/*.mp4"))), str(tiny_demo / "missing.mp4")]
    command = [str(MVEMO), "predict", str(model), *files, "--json"]
    with serving([str(MVEMO), "serve", "--model", str(model)], runtime) as server:
        runs = {
            how: subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            for how, env in (("served", runtime), ("alone", {**runtime, "MVEMO_NO_SERVE": "1"}))
        }
    assert f"mvemo serve: predict {model} {files[0]}" in server.log and server.commands("predict") == 1
    assert runs["served"].returncode == runs["alone"].returncode == 3
    assert runs["served"].stdout == runs["alone"].stdout and json.loads(runs["served"].stdout)[0]["label"]
    assert runs["served"].stderr == runs["alone"].stderr and "failed: " in runs["served"].stderr
