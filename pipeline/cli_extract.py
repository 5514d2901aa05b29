"""``mvemo extract``: stage one into the cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from pipeline.clitools import CONTEXT, EXIT_CLIPS_FAILED, MvemoCommand, executor_options

if TYPE_CHECKING:
    from manifests.schema import Manifest

DEFAULT_FEATURES = "mel,lld"


@click.command("extract", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option("--cache", "cache_path", required=True, type=click.Path(dir_okay=False), help="HDF5 cache to create or complete.")
@click.option("--features", default=None, help="Feature sets: waveform, mel, lld.  [default: mel,lld; with --nets, their inputs]")
@click.option(
    "--nets",
    default=None,
    help="Comma-separated nets whose embeddings to write: onedcnn, twodcnn, crnn (i3d: once video frames land).",
)
@click.option(
    "--finetune",
    default="none",
    type=click.Choice(["none", "last", "full"]),
    help="Fine-tuning of the nets (none: pretrained or seeded init).",
)
@click.option(
    "--protocol", default="leakfree", type=click.Choice(["leakfree", "paper"]), help="Fine-tuning protocol (see README)."
)
@click.option(
    "--weights-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder of pretrained weights (also $MVEMO_WEIGHTS, ~/.cache/mvemo/weights).",
)
@click.option("--recompute", multiple=True, help="Start this feature set over (repeatable), e.g. after changing its config.")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="TOML file with [audio], [mel], [lld], [waveform] tables.",
)
@executor_options
@click.pass_context
def extract(ctx: click.Context, manifest_path: str, cache_path: str, **options: Any) -> None:
    """Compute features and net embeddings of every clip of MANIFEST into the cache (stage one).

    Resumable: rows already done with the same config are skipped; a changed
    media file is computed again. Clips that fail are listed with their reason
    and the run goes on (exit 3).
    """
    from cache.lock import CacheLock
    from manifests.errors import ConfigError
    from manifests.schema import read_manifest

    manifest = read_manifest(manifest_path)  # a bad manifest stops here, before anything is written
    nets = tuple(n.strip() for n in (options["nets"] or "").split(",") if n.strip())
    if nets and not manifest.has_folds:
        raise ConfigError(f"--nets needs the manifest's folds; run `mvemo manifest folds {manifest_path} --k 6` first")
    if nets and options["finetune"] != "none":
        raise ConfigError(
            "--finetune last|full is not part of this version yet; use --finetune none (pretrained or seeded embeddings)"
        )
    with CacheLock(cache_path) as lock:  # then the lock, before heavy imports or work
        if lock.previous:
            click.echo(
                f"took over the lock left by pid {lock.previous.get('pid')} (a run that stopped without releasing it)", err=True
            )
        failed = _run(manifest, cache_path, nets, options, lock)
    if failed:
        ctx.exit(EXIT_CLIPS_FAILED)


def _run(manifest: Manifest, cache_path: str, nets: tuple[str, ...], options: dict[str, Any], lock: Any) -> bool:
    """Features, then embeddings; prints the summary and returns whether any clip failed."""
    from tqdm import tqdm

    from extract.embed import export_embeddings, input_kinds
    from extract.run import extract_features, parse_features
    from pipeline.config import feature_configs
    from pipeline.executors import build_executor

    requested = options["features"] or ("" if nets else DEFAULT_FEATURES)
    names = tuple(dict.fromkeys([*(parse_features(requested) if requested else ()), *input_kinds(nets)]))
    with build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"]) as pool:
        summary = extract_features(
            manifest,
            cache_path,
            names,
            configs=feature_configs(options["config_path"]),
            recompute=options["recompute"],
            executor=pool,
            lock=lock,
            progress=lambda results, total: tqdm(results, total=total, desc="features", unit="clip", disable=None),
        )
    _report_features(summary)
    failed = bool(summary.failures)
    if nets:
        embedded = export_embeddings(
            manifest,
            cache_path,
            nets,
            weights_dir=options["weights_dir"],
            recompute=options["recompute"],
            lock=lock,
            progress=lambda batches, total: tqdm(batches, total=total, desc="embeddings", unit="batch", disable=None),
        )
        for note in embedded.notes:
            click.echo(note, err=True)
        for net, reasons in embedded.failed.items():
            for clip_id, reason in reasons.items():
                click.echo(f"failed: emb/{net}/all, clip {clip_id!r}: {reason}", err=True)
        click.echo(", ".join(f"emb/{net}/all: {n} clips" for net, n in embedded.done.items()))
        failed = failed or any(embedded.failed.values())
    click.echo(f"{len(manifest)} clips in {summary.seconds:.1f} s (features) into {cache_path}")
    return failed


def _report_features(summary: Any) -> None:
    from pipeline.tables import format_table

    rows = [[name, s.computed, s.done, len(s.failed), s.absent] for name, s in summary.sets.items()]
    click.echo(format_table(["feature set", "computed now", "done", "failed", "absent"], rows))
    for name, failed in summary.failures.items():
        for clip_id, reason in failed.items():
            click.echo(f"failed: {name}, clip {clip_id!r}: {reason}", err=True)
