"""``mvemo serve``: keep mvemo's imports and models loaded, so that each ``mvemo predict`` answers in the time of its
files (``pipeline.serving``)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
import time
import warnings
from pathlib import Path

import click

from mvemo.pipeline.cli.tools import CONTEXT, MvemoCommand

WARM_CLIP_S = 4.0


@click.command("serve", cls=MvemoCommand, context_settings=CONTEXT)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="MODEL",
    help="A ready-made model (`mvemo models list`) or a saved model's folder to load, and run once on a generated clip,"
    " before serving; repeat it for several.",
)
@click.option(
    "--weights-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder of the pretrained weights, as `mvemo predict --weights-dir`"
    " (also $MVEMO_WEIGHTS, ~/.cache/mvemo/weights).",
)
@click.option(
    "--idle-minutes",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Stop after this long without a request; 0: run until stopped.",
)
@click.pass_context
def serve(ctx: click.Context, models: tuple[str, ...], weights_dir: str | None, idle_minutes: float) -> None:
    """Serve `mvemo predict` to the shells that ask for it: this process imports mvemo's stack and loads each --model
    once, and every `mvemo predict` run with MVEMO_SERVE=1 in its environment then runs in a fork of it, with its
    output and exit status. One song's label then costs the song, not seconds of start-up.

    A served predict takes from its caller: its standard streams, working folder, environment, umask, time zone,
    temporary folder, and the thread counts that OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS name
    (where it names none, those a process of its own takes). It shares with the server: mvemo's code, Python and
    installed packages (another install or an edited file is another server's), the modules, models, weights and
    caches the server loaded, and the server's user. It runs only where the caller's CPU affinity, resource limits,
    cgroup and nice value are the server's: elsewhere it runs in a process of its own (`mvemo predict --verbose`
    says why). It keeps what the server read once, when it started: the locale and the other settings of the
    environment that torch, numba and librosa read on import; and it ends without the exit handlers a process of its
    own would run (predict closes its files itself). Ctrl-C reaches the command and every process it started; a
    caller that dies takes its command along. Only predict is served.

    Without MVEMO_SERVE=1 (or without a server) `mvemo predict` runs in its own process. Stop the server with Ctrl-C;
    it stops by itself after --idle-minutes without a request.
    """
    import torch

    import mvemo.extract.features  # noqa: F401  # so its forks compute a clip's sets themselves (``cli.predict``)
    from mvemo.pipeline.cli.interrupt import Interrupted
    from mvemo.pipeline.serving.server import Serving
    from mvemo.pipeline.serving.server import serve as serve_requests
    from mvemo.pipeline.serving.wire import socket_path

    path = socket_path()  # of the code this process imports now, before the models load
    command_line = ctx.find_root().command  # the console script's, which each fork runs
    started = thread_pool_sizes()
    torch.set_num_threads(1)  # no OpenMP pool in this process: a fork of a process that has one hangs in its own
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        clip = _generated_clip(Path(folder) / "warm.mp4")
        for model in models:
            _warm(command_line, model, clip, weights_dir)

    def ready() -> None:
        loaded = f", {len(models)} model(s) loaded in {time.monotonic() - began:.1f} s" if models else ""
        click.echo(
            f"mvemo serve: listening at {path}{loaded}; `mvemo predict` runs here where MVEMO_SERVE=1."
            " Ctrl-C stops it.",
            err=True,
        )

    serving = Serving(functools.partial(_run, command_line=command_line, server=os.getpid()), started)
    try:
        serve_requests(path, serving, idle_s=idle_minutes * 60 or None, ready=ready)
    except Interrupted as stopped:  # how a server is stopped: nothing to run again, as other commands say
        click.echo(f"mvemo serve: stopped by {stopped}; its socket at {path} is removed", err=True)
        ctx.exit(128 + stopped.signum)


def thread_pool_sizes() -> dict[str, int]:
    """The size of each thread pool of this process, by ``serving.match.THREAD_POOLS`` name: torch's, and each
    library's that threadpoolctl finds (the BLAS, the OpenMP runtime)."""
    import torch
    from threadpoolctl import threadpool_info

    libraries: dict[str, int] = {}
    for pool in threadpool_info():
        libraries.setdefault(pool["user_api"], pool["num_threads"])
    return {"torch": torch.get_num_threads(), **dict(sorted(libraries.items()))}


def set_thread_pool_sizes(sizes: dict[str, int]) -> None:
    """Give each thread pool of this process its size in ``sizes`` (``thread_pool_sizes``'s names), torch's last:
    it shares the OpenMP runtime."""
    import torch
    from threadpoolctl import threadpool_limits

    for api, size in sizes.items():
        if api != "torch":
            threadpool_limits(size, user_api=api)
    torch.set_num_threads(sizes["torch"])


def _generated_clip(path: Path) -> Path:
    """A short music video of generated sound and pictures, which every model can read."""
    import numpy as np

    from mvemo.manifests.synthetic import AudioCues, VideoCues, synthesize_audio, synthesize_video, write_media

    rng = np.random.default_rng(0)
    audio = AudioCues(tempo_bpm=100.0, minor=False, loudness=0.5, brightness=0.5, regularity=0.8, dissonance=0.2)
    video = VideoCues(motion=0.5, warmth=0.5, brightness=0.5, cuts_per_s=0.5)
    frames = synthesize_video(video, WARM_CLIP_S, 25.0, (160, 120), rng)
    return write_media(path, frames=frames, y=synthesize_audio(audio, WARM_CLIP_S, 44100, rng))


def _warm(command_line: click.Command, model: str, clip: Path, weights_dir: str | None) -> None:
    """Label the generated ``clip`` with ``model``: every module, weight and cache its ``predict`` reads is then
    loaded, for the forks to share."""
    from mvemo.manifests.errors import ConfigError

    which = [model] if Path(model).is_dir() else ["--model", model]
    args = ["predict", *which, str(clip), "--json", *(["--weights-dir", weights_dir] if weights_dir else [])]
    printed = io.StringIO()
    # warnings shown here are shown again in the forks: catch_warnings renews the filters' version on its way out
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed), warnings.catch_warnings():
        status = command_line.main(args, prog_name="mvemo", standalone_mode=False)
    if status:
        raise ConfigError(
            f"--model {model}: labelling a generated clip failed (exit {status}): {printed.getvalue()[-400:]}"
        )


def _run(argv: list[str], sizes: dict[str, int], *, command_line: click.Command, server: int) -> None:
    """A request, in its fork: the command as the console script runs it, its thread pools of the ``sizes`` its
    caller's environment gives them."""
    from mvemo.pipeline.cli.interrupt import run_stopping
    from mvemo.pipeline.serving.client import say_how_this_runs
    from mvemo.pipeline.serving.server import accept_signals

    def command() -> None:
        accept_signals()  # run_stopping's handlers are in
        command_line(args=argv, prog_name="mvemo")

    set_thread_pool_sizes(sizes)
    say_how_this_runs(f"served by `mvemo serve` (process {server})")
    run_stopping("mvemo", command)
