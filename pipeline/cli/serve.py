"""``mvemo serve``: keep mvemo's imports and models loaded, so that each ``mvemo predict`` answers in the time of its
files (``pipeline.server``)."""

from __future__ import annotations

import contextlib
import functools
import io
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
    """Serve `mvemo predict` to this user's shells: this process imports mvemo's stack and loads each --model once,
    and every `mvemo predict` of the same mvemo then runs in a fork of it, on the caller's terminal, folder and
    environment, with its output and exit status. One song's label then costs the song, not seconds of start-up.

    Without a server, or with MVEMO_NO_SERVE=1, `mvemo predict` runs in its own process as before. Stop it with Ctrl-C;
    it stops by itself after --idle-minutes without a request. A new install or any change to mvemo's code needs a
    new server (the old one is never asked).
    """
    import torch

    from mvemo.pipeline.server import serve as serve_requests
    from mvemo.pipeline.server import socket_path

    path = socket_path()  # of the code this process imports now, before the models load
    command_line = ctx.find_root().command  # the console script's, which each fork runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no OpenMP pool in this process: a fork of a process that has one hangs in its own
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        clip = _generated_clip(Path(folder) / "warm.mp4")
        for model in models:
            _warm(command_line, model, clip, weights_dir)

    def ready() -> None:
        loaded = f", {len(models)} model(s) loaded in {time.monotonic() - started:.1f} s" if models else ""
        click.echo(
            f"mvemo serve: listening at {path}{loaded}; `mvemo predict` now runs here. Ctrl-C stops it.", err=True
        )

    run = functools.partial(_run, command_line=command_line, threads=threads)
    serve_requests(path, run, idle_s=idle_minutes * 60 or None, ready=ready)


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


def _run(argv: list[str], *, command_line: click.Command, threads: int) -> None:
    """A request, in its fork: the command as the console script runs it, on the server's own torch threads again."""
    import torch

    from mvemo.pipeline.cli.interrupt import run_stopping
    from mvemo.pipeline.server import accept_signals

    def command() -> None:
        accept_signals()  # run_stopping's handlers are in
        command_line(args=argv, prog_name="mvemo")

    torch.set_num_threads(threads)
    run_stopping("mvemo", command)
