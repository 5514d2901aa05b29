"""``mvemo-cv`` / ``mvemo cv`` and ``mvemo fuse``: stage two over the cache."""

from __future__ import annotations

from typing import Any

import click

from mvemo.pipeline.cli.tools import CONTEXT, MvemoCommand, executor_options, print_json, progress_bar


def echo_summary(document: dict[str, Any], out: str) -> None:
    from mvemo.fuse.report import PAPER_BANNER, SUMMARY_HEADER, summary_rows
    from mvemo.pipeline.tables import format_table

    if document["protocol"] == "paper":
        click.echo(PAPER_BANNER.lstrip("> "), err=True)
    click.echo(format_table(SUMMARY_HEADER, summary_rows(document)))
    for note in document.get("notes", []):
        click.echo(f"note: {note}", err=True)
    click.echo(
        f"report: {out}/report.md, {out}/report.json; ROC: {out}/{document['figures']['roc']}; confusion matrices: {out}/confusion_*.png"
    )


def head_options(command: Any) -> Any:
    """``--head`` and ``--config`` (its ``[head]`` table), shared by cv and fuse."""
    command = click.option(
        "--config",
        "config_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="TOML file whose [head] table sets the head's name and parameters (optimizer, lr, l2, C, ...).",
    )(command)
    return click.option(
        "--head",
        default=None,
        type=click.Choice(["logistic", "softmax"]),
        help="Fusion head: L-BFGS logistic regression or the torch softmax layer.  [default: the config's, else logistic]",
    )(command)


@click.command("cv", cls=MvemoCommand, context_settings=CONTEXT)
@click.option("--folds", "n_folds", default=6, type=int, help="Folds expected in the cache (the manifest's).")
@click.option("--cache", "cache_path", required=True, type=click.Path(dir_okay=False), help="HDF5 cache of stage one.")
@click.option("--out", default="reports", type=click.Path(file_okay=False), help="Folder for report.md, report.json and plots.")
@click.option(
    "--models", default=None, help="Comma-separated fusion models, e.g. integrated,i3d+twodcnn.  [default: all the cache allows]"
)
@head_options
@executor_options
@click.option("--json", "as_json", is_flag=True, help="Print the report document on stdout.")
def cv(n_folds: int, cache_path: str, out: str, models: str | None, as_json: bool, **where: Any) -> None:
    """Cross-validate the late-fusion heads over the cache's folds (stage two).

    Reports per model accuracy min/mean/max over folds (paper 001 Table 3), macro F1,
    macro ROC-AUC and the confusion matrix summed over folds, as tables and plots.
    """
    from mvemo.fuse.run import run_cv
    from mvemo.pipeline.config import head_config
    from mvemo.pipeline.executors import build_executor

    head, params = head_config(where["config_path"], where["head"])
    with build_executor(where["executor"], workers=where["workers"], scheduler=where["scheduler"]) as executor:
        document = run_cv(
            cache_path,
            out,
            models=models,
            n_folds=n_folds,
            head=head,
            head_params=params,
            executor=executor,
            progress=progress_bar("fusion heads", "fit"),
        )
    if as_json:
        print_json(document)
    else:
        echo_summary(document, out)


@click.command("fuse", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("cache_path", metavar="CACHE.h5", type=click.Path(dir_okay=False))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Folder for the report and the final model (OUT/model/)."
)
@click.option("--models", default=None, help="Comma-separated fusion models.  [default: all the cache allows]")
@head_options
@executor_options
def fuse(cache_path: str, out: str, models: str | None, **where: Any) -> None:
    """The CV report in OUT, then each model's head trained on every clip, saved in OUT/model/ for `mvemo predict`."""
    from mvemo.fuse.run import fuse_cache
    from mvemo.pipeline.config import head_config
    from mvemo.pipeline.executors import build_executor

    head, params = head_config(where["config_path"], where["head"])
    with build_executor(where["executor"], workers=where["workers"], scheduler=where["scheduler"]) as executor:
        document, folder = fuse_cache(
            cache_path,
            out,
            models=models,
            head=head,
            head_params=params,
            executor=executor,
            progress=progress_bar("fusion heads", "fit"),
        )
    echo_summary(document, out)
    click.echo(f"final model: {folder}/model.json + heads.h5 (heads trained on every clip)")
