"""``mvemo extract``: stage one into the cache."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from mvemo.pipeline.cli.tools import CONTEXT, EXIT_CLIPS_FAILED, MvemoCommand, executor_options

if TYPE_CHECKING:
    from mvemo.manifests.schema import Manifest

DEFAULT_FEATURES = "mel,lld"


@click.command("extract", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option("--cache", "cache_path", required=True, type=click.Path(dir_okay=False), help="HDF5 cache to create or complete.")
@click.option(
    "--features",
    default=None,
    help="Feature sets: waveform, mel, lld, frames224, frames112 (frames: both).  [default: mel,lld; with --nets, their inputs]",
)
@click.option(
    "--nets",
    default=None,
    help="Comma-separated nets whose embeddings to write: onedcnn, twodcnn, crnn, c3d, i3d, r3d_18, mc3_18, r2plus1d_18.",
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
    "--optimizer-study",
    is_flag=True,
    help="Instead of writing embeddings, fine-tune each net with Adam, SGD and RMSprop (paper 001, Table 2) and write"
    " a report into CACHE.optimizer-study/.",
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
    help="TOML file with [audio], [mel], [lld], [waveform], [frames], [train], [optim.<net>] tables.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where nets run: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps.",
)
@executor_options
@click.pass_context
def extract(ctx: click.Context, manifest_path: str, cache_path: str, **options: Any) -> None:
    """Compute features and net embeddings of every clip of MANIFEST into the cache (stage one).

    Resumable: rows already done with the same config are skipped; a changed
    media file is computed again. Clips that fail are listed with their reason
    and the run goes on (exit 3).
    """
    from mvemo.cache.lock import CacheLock
    from mvemo.manifests.errors import ConfigError
    from mvemo.manifests.schema import read_manifest

    manifest = read_manifest(manifest_path)  # a bad manifest stops here, before anything is written
    nets = tuple(n.strip() for n in (options["nets"] or "").split(",") if n.strip())
    if nets and not manifest.has_folds:
        raise ConfigError(f"--nets needs the manifest's folds; run `mvemo manifest folds {manifest_path} --k 6` first")
    with CacheLock(cache_path) as lock:  # then the lock, before heavy imports or work
        if lock.previous:
            click.echo(
                f"took over the lock left by pid {lock.previous.get('pid')} (a run that stopped without releasing it)", err=True
            )
        failed = _run(manifest, cache_path, nets, options, lock)
    if failed:
        ctx.exit(EXIT_CLIPS_FAILED)


def _run(manifest: Manifest, cache_path: str, nets: tuple[str, ...], options: dict[str, Any], lock: Any) -> bool:
    """Features, then embeddings; prints a table per stage and one of the stages' times; returns whether any clip failed."""
    from mvemo.extract.embed import export_embeddings, input_kinds
    from mvemo.extract.run import extract_features, parse_features
    from mvemo.manifests.errors import ConfigError
    from mvemo.pipeline.config import feature_configs, net_config, train_config
    from mvemo.pipeline.executors import build_executor
    from mvemo.pipeline.tables import format_table

    training = train_config(options["config_path"], finetune=options["finetune"]) if options["finetune"] != "none" else None
    if options["optimizer_study"] and not (nets and training):
        raise ConfigError("--optimizer-study fine-tunes nets: give --nets and --finetune last or full")
    net_options = net_config(options["config_path"])
    requested = options["features"] or ("" if nets else DEFAULT_FEATURES)
    names = tuple(dict.fromkeys([*(parse_features(requested) if requested else ()), *input_kinds(nets, net_options)]))
    stages: list[list[Any]] = []
    with build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"]) as pool:
        summary = extract_features(
            manifest,
            cache_path,
            names,
            configs=feature_configs(options["config_path"]),
            recompute=options["recompute"],
            executor=pool,
            lock=lock,
            progress=_bar("features", "clip"),
        )
        _report_features(summary)
        failed = bool(summary.failures)
        computed = sum(s.computed for s in summary.sets.values())
        stages.append(
            ["features", f"{summary.seconds:.1f}", f"{computed} rows computed, {sum(map(len, summary.failures.values()))} failed"]
        )
        began = time.perf_counter()
        if nets and training is not None and not options["optimizer_study"]:
            failed = _finetune(manifest, cache_path, nets, training, options, lock, pool) or failed
            stages.append(["fine-tuning", f"{time.perf_counter() - began:.1f}", f"{options['finetune']}, {options['protocol']}"])
        elif nets and training is None:
            embedded = export_embeddings(
                manifest,
                cache_path,
                nets,
                weights_dir=options["weights_dir"],
                recompute=options["recompute"],
                device=options["device"],
                net_options=net_options,
                executor=None if options["executor"] == "serial" else pool,  # serial: batches stream through this process
                lock=lock,
                progress=lambda net: _bar(f"embeddings of {net}", "batch"),
            )
            for note in embedded.notes:
                click.echo(note, err=True)
            done = {f"emb/{net}/all": n for net, n in embedded.done.items()}
            failed = _report_embeddings(done, {f"emb/{net}/all": r for net, r in embedded.failed.items()}) or failed
            stages.append(["embeddings", f"{time.perf_counter() - began:.1f}", f"{len(nets)} nets, --finetune none"])
    if options["optimizer_study"]:
        began = time.perf_counter()
        _optimizer_study(cache_path, nets, training, options)
        stages.append(["optimizer study", f"{time.perf_counter() - began:.1f}", ", ".join(nets)])
    click.echo(format_table(["stage", "seconds", "what"], stages))
    click.echo(f"{len(manifest)} clips into {cache_path}")
    return failed


def _bar(description: str, unit: str) -> Any:
    """A progress bar with its ETA for one stage, on stderr and only on a terminal: ``bar(items, total)``."""
    from tqdm import tqdm

    return lambda items, total: tqdm(items, total=total, desc=description, unit=unit, disable=None)


def _finetune(
    manifest: Manifest, cache_path: str, nets: tuple[str, ...], training: Any, options: dict[str, Any], lock: Any, pool: Any
) -> bool:
    """Fine-tuned embeddings per fold (or once), each (net, fold) unit a job on ``pool``, with a table of the units."""
    from mvemo.cache.read import Cache
    from mvemo.extract.finetune import finetune_embeddings
    from mvemo.pipeline.tables import format_table

    summary = finetune_embeddings(
        manifest,
        cache_path,
        nets,
        training,
        protocol=options["protocol"],
        weights_dir=options["weights_dir"],
        device=options["device"],
        recompute=options["recompute"],
        # units fan out over a Dask cluster, whose GPU workers take one each; local workers would share one device
        executor=pool if options["executor"] == "dask" else None,
        lock=lock,
        log=lambda line: click.echo(line, err=True),
        progress=lambda phase: _bar(phase, "unit"),
    )
    for note in summary.notes:
        click.echo(note, err=True)
    rows = [
        [u.net, "all" if u.fold is None else u.fold, u.epochs, "-" if u.val_accuracy is None else f"{u.val_accuracy:.3f}",
         "skipped (done)" if u.skipped else f"{u.seconds:.1f}"]
        for u in summary.units
    ]  # fmt: skip
    click.echo(format_table(["net", "fold", "epochs", "validation accuracy", "seconds"], rows))
    with Cache(cache_path) as cache:
        failures = cache.failures()
        sets = [name for name in cache.feature_sets() if name.startswith(tuple(f"emb/{n}/" for n in nets))]
        done = {name: int(cache.done(name).sum()) for name in sets}
    failed = {name: {f["clip_id"]: f["reason"] for f in failures if f["feature_set"] == name} for name in sets}
    return _report_embeddings(done, failed)


def _optimizer_study(cache_path: str, nets: tuple[str, ...], training: Any, options: dict[str, Any]) -> None:
    from mvemo.pipeline.optimizer_study import console_table, run_optimizer_study, study_folder

    document = run_optimizer_study(
        cache_path,
        nets,
        training,
        weights_dir=options["weights_dir"],
        device=options["device"],
        log=lambda line: click.echo(line, err=True),
    )
    click.echo(console_table(document))
    click.echo(f"optimizer study: {study_folder(cache_path)}/optimizer_study.md, .json, .png")


def _report_embeddings(done: dict[str, int], failed: dict[str, dict[str, str]]) -> bool:
    for name, reasons in failed.items():
        for clip_id, reason in reasons.items():
            click.echo(f"failed: {name}, clip {clip_id!r}: {reason}", err=True)
    click.echo(", ".join(f"{name}: {n} clips" for name, n in done.items()))
    return any(failed.values())


def _report_features(summary: Any) -> None:
    from mvemo.pipeline.tables import format_table

    rows = [[name, s.computed, s.done, len(s.failed), s.absent] for name, s in summary.sets.items()]
    click.echo(format_table(["feature set", "computed now", "done", "failed", "absent"], rows))
    for name, failed in summary.failures.items():
        for clip_id, reason in failed.items():
            click.echo(f"failed: {name}, clip {clip_id!r}: {reason}", err=True)
