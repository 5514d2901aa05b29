"""``mvemo serve``: a command forwarded to the server runs on the client's streams, folder, environment, umask and
thread counts, returns its exit status (128 + the signal that killed it), is stopped by the client's Ctrl-C (with the
processes it started) or death; a caller whose process differs from the server's, or a command other than predict,
is refused and runs alone; and a real ``mvemo predict`` prints there what it prints in a process of its own."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from mvemo.pipeline.serving.match import difference, process_settings, thread_counts
from mvemo.pipeline.serving.server import ServeError, Serving, serve
from mvemo.pipeline.serving.wire import code_key, socket_path
from tests.pipeline.served_echo import STARTED
from tests.pipeline.serving import MVEMO, Server, serving

ECHO = [sys.executable, "-m", "tests.pipeline.served_echo"]
# A client that runs what the server is sent: exit 99 where it was not served, and why
CLIENT = """
import sys
from mvemo.pipeline.serving import client
client.SERVED_COMMANDS = tuple(sys.argv[1].split(","))
status = client.forward(sys.argv[2:])
if status is None:
    print("not served:", client.how_this_runs(), file=sys.stderr)
sys.exit(99 if status is None else status)
"""


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A short private ``$XDG_RUNTIME_DIR`` (a socket's path has at most 107 bytes), and the environment that names it
    and asks for a server; no thread count named."""
    with tempfile.TemporaryDirectory(prefix="xdg", dir="/tmp") as folder:
        monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
        monkeypatch.setenv("MVEMO_SERVE", "1")
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            monkeypatch.delenv(variable, raising=False)
        yield dict(os.environ)


@pytest.fixture
def echo_server(runtime: dict[str, str]) -> Iterator[Server]:
    with serving(ECHO, runtime, timeout_s=60) as server:
        yield server


def client(
    args: list[str], env: dict[str, str], *, served: str = "predict", **options: object
) -> subprocess.CompletedProcess[str]:
    """``args`` sent by a client that sends the commands ``served`` (comma-separated) to the server."""
    command = [sys.executable, "-c", CLIENT, served, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, **options)  # type: ignore[call-overload]


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
    assert f"argv=['predict', 'exit', '7'] cwd={tmp_path} echo=from the client umask=27 " in done.stdout
    assert done.stderr == "on stderr\n"
    pid = int(done.stdout.split("pid=")[1])
    assert pid not in (echo_server.process.pid, os.getpid()), "a fork of the server ran it"
    assert client(["predict", "die"], runtime).returncode == 128 + signal.SIGKILL, "as a shell says a killed command"


def test_a_served_command_takes_the_thread_counts_its_callers_environment_names(
    echo_server: Server, runtime: dict[str, str]
) -> None:
    """Named: the count named; none named: the sizes the server started with, which a process of its own takes."""
    unnamed = client(["predict", "exit", "0"], runtime)
    assert f"threads={STARTED}" in unnamed.stdout, unnamed.stderr
    one = client(["predict", "exit", "0"], {**runtime, "OMP_NUM_THREADS": "1"})
    assert "threads={'torch': 1, 'blas': 1}" in one.stdout, one.stderr
    blas = client(["predict", "exit", "0"], {**runtime, "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "4"})
    assert "threads={'torch': 4, 'blas': 2}" in blas.stdout, "each pool its own variable, as each library reads them"


def test_a_caller_that_names_no_thread_count_is_not_served_by_a_server_started_with_one(
    runtime: dict[str, str],
) -> None:
    with serving(ECHO, {**runtime, "OMP_NUM_THREADS": "2"}, timeout_s=60) as server:
        done = client(["predict", "exit", "7"], runtime)
        assert client(["predict", "exit", "7"], {**runtime, "OMP_NUM_THREADS": "1"}).returncode == 7
    assert done.returncode == 99
    assert "the server started with OMP_NUM_THREADS=2, which sets its torch threads, and this process sets none" in (
        done.stderr
    )
    assert "predict exit 7: refused, its client runs it itself" in server.log and server.commands("predict") == 1


def test_only_predict_is_served_and_never_without_mvemo_serve(echo_server: Server, runtime: dict[str, str]) -> None:
    assert client(["extract", "exit", "7"], runtime).returncode == 99
    without = client(["predict", "exit", "7"], {**runtime, "MVEMO_SERVE": ""})
    assert without.returncode == 99 and "$MVEMO_SERVE is not 1" in without.stderr
    assert client(["predict", "exit", "7"], runtime).returncode == 7
    echo_server.process.terminate()
    echo_server.process.wait(10)
    assert not socket_path().exists(), "a stopped server removes its socket"
    gone = client(["predict", "exit", "7"], runtime)
    assert gone.returncode == 99 and "no server of this mvemo's code and packages listens at" in gone.stderr


def test_the_server_refuses_any_command_but_predict(echo_server: Server, runtime: dict[str, str]) -> None:
    """A client that sends it another command (an older or a hostile one) is refused, and runs nothing there."""
    refused = client(["extract", "exit", "7"], runtime, served="extract,predict")
    assert refused.returncode == 99, "not run by the server"
    assert "the server refused it: `mvemo serve` runs predict alone" in refused.stderr
    assert "argv=" not in refused.stdout


@pytest.mark.parametrize("change", ["affinity", "limits", "nice"])
def test_a_caller_whose_process_differs_from_the_servers_runs_alone_saying_why(
    echo_server: Server, runtime: dict[str, str], change: str
) -> None:
    if change == "affinity" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no other affinity to give the caller")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    changes = {
        "affinity": lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        "limits": lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512) - 1, hard)),
        "nice": lambda: os.nice(1),
    }
    done = client(["predict", "exit", "7"], runtime, preexec_fn=changes[change])
    assert done.returncode == 99, done.stdout
    cpus = sorted(os.sched_getaffinity(0))
    expected = {
        "affinity": f"its CPU affinity is CPUs {cpus[0]}, the server's CPUs {','.join(map(str, cpus))}",
        "limits": f"its resource limit RLIMIT_NOFILE (soft, hard) is [{min(soft, 512) - 1}, {hard}], the server's",
        "nice": "its nice value is",
    }[change]
    assert f"the server refused it: {expected}" in done.stderr


def test_another_cgroup_is_a_difference_and_the_same_settings_none() -> None:
    own = process_settings()
    assert difference(own, own) is None
    if "cgroup" in own:  # a line per hierarchy, the last one of cgroup v2; Slurm's job of another user's shell
        lines = own["cgroup"].splitlines()
        job = "0::/system.slice/slurmstepd.scope/job_42/step_0"
        elsewhere = {**own, "cgroup": "\n".join([*lines[:-1], job])}
        assert difference(elsewhere, own) == f"its cgroup is {job}, the server's {lines[-1]}"
    assert thread_counts({"OMP_NUM_THREADS": "2,1"}, started={"openmp": 8}, started_env={}) == {"openmp": 2}
    assert thread_counts({"OMP_NUM_THREADS": "0"}, started={"openmp": 8}, started_env={}) == {"openmp": 8}


def test_ctrl_c_reaches_the_command_and_the_processes_it_started(echo_server: Server, runtime: dict[str, str]) -> None:
    waiting = subprocess.Popen(
        [sys.executable, "-c", CLIENT, "predict", "predict", "spawn"], env=runtime, stdout=subprocess.PIPE, text=True
    )
    assert waiting.stdout is not None
    child = int(waiting.stdout.readline().split("child=")[1])
    waiting.stdout.readline()  # the command's own line: it waits for the Ctrl-C
    waiting.send_signal(signal.SIGINT)
    assert waiting.stdout.read() == "interrupted\n" and waiting.wait(10) == 130
    assert _ends(child), "the process the command started got the Ctrl-C too"


def test_a_client_that_dies_takes_its_command_along(echo_server: Server, runtime: dict[str, str]) -> None:
    waiting = subprocess.Popen(
        [sys.executable, "-c", CLIENT, "predict", "predict", "sleep"], env=runtime, stdout=subprocess.PIPE, text=True
    )
    assert waiting.stdout is not None
    pid = int(waiting.stdout.readline().split("pid=")[1])
    waiting.send_signal(signal.SIGKILL)
    waiting.wait(10)
    assert _ends(pid), "the command of a client that died still runs"


def _ends(pid: int) -> bool:
    """Whether process ``pid`` ends (or has ended) within 10 s."""
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False


def test_the_socket_names_the_code_by_every_file_and_the_installed_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose size changed while its time went back, a file added, or another version of a package, is another
    server's code."""
    (tmp_path / "fuse").mkdir()
    edited = tmp_path / "fuse" / "cv.py"
    edited.write_text("a = 1\n")
    keys = [code_key(tmp_path)]
    stamp = edited.stat()
    edited.write_text("a = 12\n")
    os.utime(edited, ns=(stamp.st_atime_ns, stamp.st_mtime_ns - 10**9))  # no newer change than before
    keys.append(code_key(tmp_path))
    (tmp_path / "fuse" / "new.py").write_text("")
    keys.append(code_key(tmp_path))
    real = metadata.distributions

    def upgraded() -> list[object]:
        found = list(real())
        torch = next(d for d in found if d.metadata["Name"] == "torch")
        bumped = type("Bumped", (), {"metadata": torch.metadata, "version": torch.version + ".post1"})
        return [bumped() if d is torch else d for d in found]

    monkeypatch.setattr(metadata, "distributions", upgraded)
    keys.append(code_key(tmp_path))
    assert len(set(keys)) == 4
    assert code_key() != code_key(tmp_path), "mvemo's own code by default"


def test_one_server_per_code_a_dead_ones_socket_is_replaced_and_an_idle_one_stops(runtime: dict[str, str]) -> None:
    path = socket_path()
    path.parent.mkdir()
    path.parent.chmod(0o755)
    nothing = Serving(lambda argv, threads: 0, {})
    with pytest.raises(ServeError, match="must be yours alone"):
        serve(path, nothing, idle_s=0)
    path.parent.chmod(0o700)
    with serving([*ECHO, "30"], runtime, timeout_s=60), pytest.raises(ServeError, match="already listens"):
        serve(path, nothing, idle_s=0)
    with serving([*ECHO, "0.5"], runtime, timeout_s=60) as idle:
        assert idle.process.wait(20) == 0 and not path.exists(), "an idle server stops by itself"
    path.touch()  # what a server killed with SIGKILL leaves
    listening = []
    serve(path, nothing, idle_s=0.1, ready=lambda: listening.append(path.is_socket()))
    assert listening == [True]


@pytest.mark.heavy
def test_a_served_predict_prints_what_predict_prints_alone_with_the_callers_threads(
    tiny_demo: Path, runtime: dict[str, str]
) -> None:
    model = tiny_demo / "model"
    files = [str(next((tiny_demo / "data").glob("*/*.mp4"))), str(tiny_demo / "missing.mp4")]
    command = [str(MVEMO), "predict", str(model), *files, "--json"]
    one_thread = {**runtime, "OMP_NUM_THREADS": "1"}
    with serving([str(MVEMO), "serve", "--model", str(model)], runtime) as server:
        runs = {
            how: subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            for how, env in (("served", runtime), ("alone", {**runtime, "MVEMO_SERVE": "0"}))
        }
        verbose = {
            how: subprocess.run([*command, "--verbose"], env=env, capture_output=True, text=True, timeout=120)
            for how, env in (("served", one_thread), ("alone", {**one_thread, "MVEMO_SERVE": "0"}))
        }
    assert f"mvemo serve: predict {model} {files[0]}" in server.log and server.commands("predict") == 2
    assert server.process.returncode == 128 + signal.SIGTERM and not socket_path().exists()
    assert server.log.splitlines()[-1] == f"mvemo serve: stopped by SIGTERM; its socket at {socket_path()} is removed"
    assert runs["served"].returncode == runs["alone"].returncode == 3
    assert runs["served"].stdout == runs["alone"].stdout and json.loads(runs["served"].stdout)[0]["label"]
    assert runs["served"].stderr == runs["alone"].stderr and "failed: " in runs["served"].stderr
    said = {how: done.stderr.splitlines()[0] for how, done in verbose.items()}
    assert said["served"].startswith("mvemo predict: runs served by `mvemo serve` (process ")
    assert said["alone"].startswith("mvemo predict: runs in a process of its own: $MVEMO_SERVE is not 1")
    threads = {how: line.split("; threads: ")[1].split("; ")[0] for how, line in said.items()}
    assert threads["served"] == threads["alone"]
    ahead = "; the clips' feature sets computed in a second process, ahead of the nets"
    assert said["alone"].endswith(ahead) and not said["served"].endswith(ahead), "a fork has the feature code loaded"
    assert "torch 1" in said["served"], "one thread, as the caller's OMP_NUM_THREADS says"
