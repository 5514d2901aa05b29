"""``mvemo study optimizers``: paper 001's Table 2, each net fine-tuned with Adam, SGD and RMSprop on inner folds."""

from __future__ import annotations

import time
from typing import Any

import click

from mvemo.pipeline.cli.extract import locked_cache, names, net_run_options, read_checked_manifest, run_stage_one, show_stages
from mvemo.pipeline.cli.tools import CONTEXT, EXIT_CLIPS_FAILED, MvemoCommand, MvemoGroup


@click.group("study", cls=MvemoGroup)
def study_group() -> None:
    """Studies that fine-tune the nets on the inner folds of each outer fold and report beside the cache."""


@study_group.command("optimizers", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option(
    "--cache", "cache_path", required=True, type=click.Path(), help="Cache folder holding (or to get) the nets' inputs."
)
@click.option("--nets", required=True, help="Comma-separated nets to fine-tune, e.g. onedcnn,twodcnn,c3d,i3d,crnn.")
@click.option("--finetune", default="last", show_default=True, type=click.Choice(["last", "full"]), help="Which weights train.")
@net_run_options
@click.pass_context
def optimizers(ctx: click.Context, manifest_path: str, cache_path: str, **options: Any) -> None:
    """Fine-tune each net of --nets with Adam, SGD and RMSprop (paper 001, Table 2) and write the inner validation
    accuracy per net and optimizer into CACHE.optimizer-study/ (optimizer_study.md, .json, .png).

    The nets' inputs are computed into the cache first, as `mvemo extract` computes them; no embedding is written.
    """
    from mvemo.extract.nets import require_trainable
    from mvemo.extract.stage import StageTime, feature_names
    from mvemo.manifests.errors import ConfigError
    from mvemo.pipeline.config import net_config, train_config, window_config
    from mvemo.pipeline.study import console_table, run_optimizer_study, study_folder

    nets = names(options["nets"])
    require_trainable(nets, "the optimizer study")
    manifest = read_checked_manifest(manifest_path, nets=nets)
    options["random_init"] = names(options["random_init"])
    training = train_config(options["config_path"], finetune=options["finetune"], random_init=options["random_init"])
    options["windows"] = window_config(options["config_path"])
    if options["windows"].windows:
        raise ConfigError("the optimizer study fine-tunes on one window per clip: run it with a config without [clip] windows")
    features = feature_names(None, nets, net_config(options["config_path"], options["random_init"]))
    with locked_cache(cache_path) as lock:
        summary = run_stage_one(manifest, cache_path, (), training, options, lock, features=features)
        began = time.perf_counter()
        document = run_optimizer_study(
            cache_path,
            nets,
            training,
            weights_dir=options["weights_dir"],
            device=options["device"],
            log=lambda line: click.echo(line, err=True),
        )
    summary.stages.append(StageTime("optimizer study", time.perf_counter() - began, ", ".join(nets)))
    click.echo(console_table(document))
    show_stages(summary, f"optimizer study: {study_folder(cache_path)}/optimizer_study.md, .json, .png")
    if summary.failed:
        ctx.exit(EXIT_CLIPS_FAILED)
