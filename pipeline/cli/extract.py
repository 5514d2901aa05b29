"""``mvemo extract``: stage one into the cache."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mvemo.pipeline.cli.tools import (
    CONTEXT,
    EXIT_CLIPS_FAILED,
    MvemoCommand,
    executor_options,
    progress_bar,
    require_writable,
)

if TYPE_CHECKING:
    from mvemo.cache.lock import CacheLock
    from mvemo.manifests.schema import Manifest


def net_run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a command that runs nets: weights, random init, config file, device, executor."""
    options = (
        click.option(
            "--weights-dir",
            default=None,
            type=click.Path(file_okay=False),
            help="Folder of pretrained weights (also $MVEMO_WEIGHTS, ~/.cache/mvemo/weights).",
        ),
        click.option(
            "--random-init",
            default=None,
            help="Comma-separated nets to run from seeded random weights instead of their published ones (a net"
            ' whose weights file is missing is an error otherwise; also [net.<name>] init = "random").',
        ),
        click.option(
            "--config",
            "config_path",
            default=None,
            type=click.Path(dir_okay=False),
            help="TOML file with [clip], [audio], [mel], [logmel], [lld], [waveform], [audio48k], [descriptors],"
            " [expressive], [egemaps], [compare], [frames], [train], [optim.<net>], [net.<name>] tables.",
        ),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="Where nets run: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps.",
        ),
    )
    command = executor_options(command)
    for option in reversed(options):
        command = option(command)
    return command


@click.command("extract", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option("--cache", "cache_path", required=True, type=click.Path(), help="Cache folder to create or complete.")
@click.option(
    "--features",
    default=None,
    help="Feature sets: waveform, audio48k (CLAP's 48 kHz audio), mel, logmel, lld, descriptors, expressive (melody and"
    " its playing), egemaps, compare (these two need mvemo[opensmile]), frames224, frames112 (frames: both)."
    "  [default: mel,lld,descriptors; with --nets, their inputs]",
)
@click.option(
    "--nets",
    default=None,
    help="Comma-separated nets whose embeddings to write: onedcnn, twodcnn, crnn, musicnn, msdvgg, mttmusicnn, mttvgg,"
    " clap (needs mvemo[clap]), c3d, i3d, r3d_18, mc3_18, r2plus1d_18; encoders stands for the music encoders musicnn,"
    " msdvgg, mttmusicnn, mttvgg.",
)
@click.option(
    "--finetune",
    default="none",
    type=click.Choice(["none", "last", "full"]),
    help="Fine-tuning of the nets (none: pretrained or seeded init).",
)
@click.option(
    "--protocol",
    default="leakfree",
    type=click.Choice(["leakfree", "paper"]),
    help="Fine-tuning protocol (see README).",
)
@click.option(
    "--recompute",
    multiple=True,
    help="Start these feature sets over, e.g. after changing a config"
    " (comma-separated or repeated; each a set this run writes).",
)
@click.option(
    "--overlap/--no-overlap",
    default=None,
    help="Run the nets (as they are) on the clips decoded so far while the workers decode the next ones, or only after"
    " every clip is decoded.  [default: overlap where the nets run on a GPU]",
)
@net_run_options
@click.pass_context
def extract(ctx: click.Context, manifest_path: str, cache_path: str, **options: Any) -> None:
    """Compute features and net embeddings of every clip of MANIFEST into the cache (stage one).

    Resumable: rows already done with the same config are skipped; a changed
    media file is computed again. Clips that fail are listed with their reason
    and the run goes on (exit 3).
    """
    from mvemo.pipeline.config import train_config, window_config

    manifest = read_checked_manifest(manifest_path, nets=names(options["nets"]))
    options["random_init"] = names(options["random_init"])
    finetune = options["finetune"]
    training = (
        train_config(options["config_path"], finetune=finetune, random_init=options["random_init"])
        if finetune != "none"
        else None
    )
    options["windows"] = window_config(options["config_path"])
    with locked_cache(cache_path) as lock:
        summary = _run(manifest, cache_path, names(options["nets"]), training, options, lock)
    if summary.failed:
        ctx.exit(EXIT_CLIPS_FAILED)


def read_checked_manifest(manifest_path: str, *, nets: tuple[str, ...]) -> Manifest:
    """The manifest, read before anything is written; with nets, its folds are required before hours of features."""
    from mvemo.manifests.errors import ConfigError
    from mvemo.manifests.io import read_manifest

    manifest = read_manifest(manifest_path)
    if nets and not manifest.has_folds:
        raise ConfigError(f"--nets needs the manifest's folds; run `mvemo manifest folds {manifest_path} --k 6` first")
    return manifest


@contextlib.contextmanager
def locked_cache(cache_path: str) -> Iterator[CacheLock]:
    """The cache's writer lock, taken after checking that the folder is (or can become) a cache, before heavy work."""
    from mvemo.cache.layout import require_cache_folder, single_file_error
    from mvemo.cache.lock import CacheLock

    if Path(cache_path).is_file():
        raise single_file_error(Path(cache_path))  # a cache of earlier versions, which `mvemo cache migrate` converts
    require_writable(cache_path, "--cache")
    require_cache_folder(Path(cache_path))  # before the lock file lands beside a folder that is no cache
    with CacheLock(cache_path) as lock:
        if lock.previous:
            click.echo(
                f"took over the lock left by pid {lock.previous.get('pid')} (a run that stopped without releasing it)",
                err=True,
            )
        yield lock


def names(text: str | None) -> tuple[str, ...]:
    """A comma-separated list of names (None: none)."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _run(
    manifest: Manifest, cache_path: str, nets: tuple[str, ...], training: Any, options: dict[str, Any], lock: Any
) -> Any:
    """Stage one with its tables; returns its summary."""
    summary = run_stage_one(manifest, cache_path, nets, training, options, lock, features=options["features"])
    show_stages(summary, f"{len(manifest)} clips into {cache_path}")
    return summary


def run_stage_one(
    manifest: Manifest,
    cache_path: str,
    nets: tuple[str, ...],
    training: Any,
    options: dict[str, Any],
    lock: Any,
    *,
    features: Any,
) -> Any:
    """``extract_features`` with the command's options, then its feature, failure and unit tables."""
    from mvemo.extract.stage import extract_features
    from mvemo.pipeline.config import feature_configs, net_config
    from mvemo.pipeline.executors import build_executor

    net_options = net_config(options["config_path"], options["random_init"])
    with build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"]) as pool:
        summary = extract_features(
            manifest,
            cache_path,
            features=features,
            nets=nets,
            training=training,
            protocol=options.get("protocol", "leakfree"),
            configs=feature_configs(options["config_path"]),
            windows=options["windows"],
            net_options=net_options,
            weights_dir=options["weights_dir"],
            device=options["device"],
            recompute=options.get("recompute", ()),
            executor=pool,
            overlap=options.get("overlap"),
            lock=lock,
            progress=progress_bar,
            log=lambda line: click.echo(line, err=True),
        )
    _report(summary)
    return summary


def show_stages(summary: Any, closing: str) -> None:
    from mvemo.pipeline.tables import format_table

    click.echo(
        format_table(["stage", "seconds", "what"], [[s.stage, f"{s.seconds:.1f}", s.what] for s in summary.stages])
    )
    click.echo(closing)


def _report(summary: Any) -> None:
    """The feature sets' table, each failure with its reason, the fine-tuning units' table and the embeddings'
    counts."""
    from mvemo.pipeline.tables import format_table

    rows = [[name, s.computed, s.done, len(s.failed), s.absent] for name, s in summary.features.sets.items()]
    click.echo(format_table(["feature set", "computed now", "done", "failed", "absent"], rows))
    for failures in (summary.features.failures, summary.failed_embeddings, summary.failed_pooled):
        for name, reasons in failures.items():
            for clip_id, reason in reasons.items():
                click.echo(f"failed: {name}, clip {clip_id!r}: {reason}", err=True)
    for note in summary.notes:
        click.echo(note, err=True)
    if summary.units:
        rows = [
            [
                u.net,
                "all" if u.fold is None else u.fold,
                u.epochs,
                "-" if u.val_accuracy is None else f"{u.val_accuracy:.3f}",
                "skipped (done)" if u.skipped else f"{u.seconds:.1f}",
            ]
            for u in summary.units
        ]
        click.echo(format_table(["net", "fold", "epochs", "validation accuracy", "seconds"], rows))
    unit = "windows" if summary.pooled else "clips"
    if summary.embeddings:
        click.echo(", ".join(f"{name}: {n} {unit}" for name, n in summary.embeddings.items()))
    if summary.pooled:
        click.echo("pooled: " + ", ".join(f"{name}: {n} clips" for name, n in summary.pooled.items()))
