"""``mvemo-cv`` / ``mvemo cv`` and ``mvemo fuse``: stage two over the cache."""

from __future__ import annotations

import hashlib
from typing import Any

import click

from pipeline.clitools import CONTEXT, MvemoCommand, print_json


def cache_fingerprint(cache_path: str) -> str:
    """sha256 over the fingerprints of every feature set of the cache."""
    from cache.read import Cache

    with Cache(cache_path) as cache:
        parts = [f"{name}={cache.fingerprint(name)}" for name in cache.feature_sets()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def run_cv(cache_path: str, out: str, *, models: str | None, n_folds: int | None, head: str) -> dict[str, Any]:
    """Cross-validate and write the report into ``out``; returns the report document."""
    from cache.store import mvemo_version
    from fuse.cv import cross_validate
    from fuse.heads import make_head
    from fuse.report import write_report

    result = cross_validate(cache_path, models=models, n_folds=n_folds, head=make_head(head))
    header = {
        "cache_fingerprint": cache_fingerprint(cache_path),
        "config": {"head": head, "models": models or "all"},
        "version": mvemo_version(),
    }
    return write_report(result, out, header=header)


def echo_summary(document: dict[str, Any], out: str) -> None:
    from fuse.report import PAPER_BANNER, SUMMARY_HEADER, summary_rows
    from pipeline.tables import format_table

    if document["protocol"] == "paper":
        click.echo(PAPER_BANNER.lstrip("> "), err=True)
    click.echo(format_table(SUMMARY_HEADER, summary_rows(document)))
    click.echo(
        f"report: {out}/report.md, {out}/report.json; ROC: {out}/{document['figures']['roc']}; confusion matrices: {out}/confusion_*.png"
    )


HEAD_OPTION = click.option(
    "--head",
    default="logistic",
    type=click.Choice(["logistic", "softmax"]),
    help="Fusion head: L-BFGS logistic regression or the torch softmax layer.",
)


@click.command("cv", cls=MvemoCommand, context_settings=CONTEXT)
@click.option("--folds", "n_folds", default=6, type=int, help="Folds expected in the cache (the manifest's).")
@click.option("--cache", "cache_path", required=True, type=click.Path(dir_okay=False), help="HDF5 cache of stage one.")
@click.option("--out", default="reports", type=click.Path(file_okay=False), help="Folder for report.md, report.json and plots.")
@click.option(
    "--models", default=None, help="Comma-separated fusion models, e.g. integrated,i3d+twodcnn.  [default: all the cache allows]"
)
@HEAD_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report document on stdout.")
def cv(n_folds: int, cache_path: str, out: str, models: str | None, head: str, as_json: bool) -> None:
    """Cross-validate the late-fusion heads over the cache's folds (stage two).

    Reports per model accuracy min/mean/max over folds (paper 001 Table 3), macro F1,
    macro ROC-AUC and the confusion matrix summed over folds, as tables and plots.
    """
    document = run_cv(cache_path, out, models=models, n_folds=n_folds, head=head)
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
@HEAD_OPTION
def fuse(cache_path: str, out: str, models: str | None, head: str) -> None:
    """The CV report in OUT, then each model's head trained on every clip, saved in OUT/model/ for `mvemo predict`."""
    from pathlib import Path

    from cache.read import Cache
    from cache.store import mvemo_version
    from fuse.heads import make_head
    from fuse.models import protocol, select_models
    from fuse.saved import save_fusion_model, train_final

    document = run_cv(cache_path, out, models=models, n_folds=None, head=head)
    echo_summary(document, out)
    with Cache(cache_path) as cache:
        chosen, used_protocol = select_models(cache, models), protocol(cache)
    heads = train_final(cache_path, chosen, make_head(head))
    header = {
        "version": mvemo_version(),
        "protocol": used_protocol,
        "head": head,
        "cache_fingerprint": cache_fingerprint(cache_path),
    }
    folder = save_fusion_model(Path(out) / "model", cache_path, chosen, heads, header)
    click.echo(f"final model: {folder}/model.json + heads.h5 ({len(heads)} heads trained on every clip)")
