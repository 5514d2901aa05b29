"""``mvemo extract``: stage one into the cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.clitools import EXIT_CLIPS_FAILED, MvemoCommand

if TYPE_CHECKING:
    from cache.lock import CacheLock
    from extract.run import FeatureRunSummary
    from manifests.schema import Manifest

DEFAULT_FEATURES = "mel,lld"


@click.command("extract", cls=MvemoCommand)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option("--cache", "cache_path", required=True, type=click.Path(dir_okay=False), help="HDF5 cache to create or complete.")
@click.option(
    "--features",
    default=None,
    help="Comma-separated feature sets: waveform, mel, lld, frames (= frames224,frames112).  [default: mel,lld]",
)
@click.option("--recompute", multiple=True, help="Start this feature set over (repeatable), e.g. after changing its config.")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="TOML file with [audio], [mel], [lld], [waveform], [frames] tables.",
)
@click.option(
    "--executor", default="serial", type=click.Choice(["serial", "processes", "dask"]), help="Where clips are computed."
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Local worker processes (processes, or a local Dask cluster).  [default: 2]",
)
@click.option(
    "--scheduler", default=None, help="Address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (with --executor dask)."
)
@click.pass_context
def extract(
    ctx: click.Context,
    manifest_path: str,
    cache_path: str,
    features: str | None,
    recompute: tuple[str, ...],
    config_path: str | None,
    executor: str,
    workers: int | None,
    scheduler: str | None,
) -> None:
    """Compute features of every clip of MANIFEST into the cache (stage one).

    Resumable: rows already done with the same config are skipped; a changed
    media file is computed again. Clips that fail are listed with their reason
    and the run goes on (exit 3).
    """
    from cache.lock import CacheLock
    from manifests.schema import read_manifest

    manifest = read_manifest(manifest_path)  # a bad manifest stops here, before anything is written
    with CacheLock(cache_path) as lock:  # then the lock, before heavy imports or work
        if lock.previous:
            click.echo(
                f"took over the lock left by pid {lock.previous.get('pid')} (a run that stopped without releasing it)", err=True
            )
        summary = _run(manifest, cache_path, parse_names(features), recompute, config_path, (executor, workers, scheduler), lock)
    _report(summary, len(manifest), cache_path)
    if summary.failures:
        ctx.exit(EXIT_CLIPS_FAILED)


def parse_names(features: str | None) -> tuple[str, ...]:
    from extract.run import parse_features

    return parse_features(features or DEFAULT_FEATURES)


def _run(
    manifest: Manifest,
    cache_path: str,
    names: tuple[str, ...],
    recompute: tuple[str, ...],
    config_path: str | None,
    executor: tuple[str, int | None, str | None],
    lock: CacheLock,
) -> FeatureRunSummary:
    from tqdm import tqdm

    from extract.run import extract_features
    from pipeline.config import feature_configs
    from pipeline.executors import build_executor

    configs = feature_configs(config_path)
    kind, workers, scheduler = executor
    pool = build_executor(kind, workers=workers, scheduler=scheduler)
    try:
        return extract_features(
            manifest,
            cache_path,
            names,
            configs=configs,
            recompute=recompute,
            executor=pool,
            lock=lock,
            progress=lambda results, total: tqdm(results, total=total, desc="features", unit="clip", disable=None),
        )
    finally:
        pool.close()


def _report(summary: FeatureRunSummary, n_clips: int, cache_path: str) -> None:
    from pipeline.tables import format_table

    rows = [[name, s.computed, s.done, len(s.failed), s.absent] for name, s in summary.sets.items()]
    click.echo(format_table(["feature set", "computed now", "done", "failed", "absent"], rows))
    for name, failed in summary.failures.items():
        for clip_id, reason in failed.items():
            click.echo(f"failed: {name}, clip {clip_id!r}: {reason}", err=True)
    click.echo(f"{n_clips} clips in {summary.seconds:.1f} s into {cache_path}")
