"""``mvemo-cv`` / ``mvemo cv`` and ``mvemo fuse``: stage two over the cache."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mvemo.pipeline.cli.tools import CONTEXT, MvemoCommand, executor_options, print_json, progress_bar, require_writable

# fuse.targets.plane.METHODS, without importing it
METHODS = ["own", "rated", "pseudo-equal", "pseudo-inner", "one-sided", "gated"]

if TYPE_CHECKING:
    from mvemo.cache.read import Cache
    from mvemo.fuse.stage import FuseSettings


def echo_summary(document: dict[str, Any], out: str) -> None:
    from mvemo.fuse.report.classes import PAPER_BANNER, summary_header, summary_rows
    from mvemo.pipeline.tables import format_table

    if document["protocol"] == "paper":
        click.echo(PAPER_BANNER.lstrip("> "), err=True)
    click.echo(format_table(summary_header(document), summary_rows(document)))
    for note in document.get("notes", []):
        click.echo(f"note: {note}", err=True)
    click.echo(
        f"report: {out}/report.md, {out}/report.html, {out}/report.json, {out}/{document['oof_predictions']};"
        f" models: {out}/{document['figures']['models']};"
        f" ROC: {out}/{document['figures']['roc']}; confusion matrices: {out}/confusion_*.png"
    )


HEAD_NAMES = [
    "logistic",
    "softmax",
    "lda",
    "pca-logistic",
    "svm",
    "rbf-svm",
    "select-logistic",
    "select-rbf-svm",
]  # fuse.heads.families.HEADS, without importing it


def head_options(command: Any) -> Any:
    """``--head`` and ``--config`` (its ``[head]`` table), shared by cv and fuse."""
    command = click.option(
        "--config",
        "config_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="TOML file whose [head] table sets the head's name and parameters (optimizer, lr, l2, C, ...; those left"
        " out are chosen on inner folds) and whose [fuse] table how (inner_folds, scoring, C_grid, lr_grid, l2_grid,"
        " seed, heads: the families the inner folds choose among; upper_lr_grid, upper_weight_decay_grid,"
        " upper_max_epochs: the fine-tuning above a cut; choice_scoring: what best(...) and the integrated models"
        " choose by; choice_rule: best, or one-se: the first candidate within one standard error of the best;"
        " value_scale and value_heads: valence and arousal's scale, ratings or least-squares, and heads, ridge and/or"
        " kernel-ridge).",
    )(command)
    command = click.option(
        "--weights-dir",
        default=None,
        type=click.Path(file_okay=False),
        help="Folder of the pretrained weights stage one used (also $MVEMO_WEIGHTS, ~/.cache/mvemo/weights): read"
        ' only for inputs cut below layers to fine-tune (a cut as layer, e.g. "pooled", and pool = "patches").',
    )(command)
    return click.option(
        "--head",
        default=None,
        type=click.Choice(HEAD_NAMES),
        help="Fusion head: L-BFGS logistic regression, the torch softmax layer, shrinkage LDA, PCA-whitened logistic"
        " regression, a linear SVM with probabilities by temperature, RBF-kernel SVMs (C and gamma chosen on inner"
        " folds), or logistic regression or RBF-kernel SVMs over the columns of best ANOVA F, ranked within each inner"
        " fold (select-logistic, select-rbf-svm); [fuse] heads = [...] lets inner folds choose among several."
        "  [default: the config's, else logistic]",
    )(command)


MODELS_HELP = (
    "Models, comma-separated, composed from what the cache holds: a+b (one head over both inputs' columns),"
    " late(a,b) (the mean of their heads' probabilities; late(a,b,weights=trimmed): the mean of those not clearly"
    " weaker on inner folds; late(a,b,weights=inner): weights fitted on inner folds), stack(a,b) (a logistic meta-head"
    " over their inner out-of-fold probabilities), best(a,b) (the one of best inner score); inputs are the nets'"
    " embeddings, lldstats and clip-level sets (descriptors, expressive, egemaps, compare);"
    " integrated, integrated-audio, late-all, integrated-decision and encoders name the defaults, e.g."
    " 'twodcnn+descriptors,late(i3d,twodcnn),integrated'."
    "  [default: each input, the paper's pairs, integrated, late-all, integrated-decision, encoders]"
)


def fuse_options(command: Any) -> Any:
    """``--target``, ``--models``, ``--repeats`` and ``--reference``, shared by cv and fuse."""
    command = click.option(
        "--reference",
        default=None,
        help="The model every other is compared with, fold by fold on the clips both score; named before scoring."
        "  [default: the config's [fuse] reference, else the first unimodal model listed]",
    )(command)
    command = click.option(
        "--repeats",
        default=1,
        type=click.IntRange(min=1),
        show_default=True,
        help="Run the CV over this many fold seeds (the manifest's folds, then seeds 1, 2, ...), for intervals;"
        " above 1 only with inputs no fold trained (--finetune none, LLDs).",
    )(command)
    command = click.option("--models", default=None, help=MODELS_HELP)(command)
    return click.option(
        "--target",
        default=None,
        help="What the heads learn: label (one class per clip), tags (several per clip: one-vs-rest heads, mAP and"
        " per-tag AUC) or valence,arousal (or one of them: ridge heads, or [fuse] value_heads; CCC, R², RMSE and"
        " quadrants).  [default: the"
        " cache's labels, else its tags, else its values]",
    )(command)


@contextlib.contextmanager
def fusion_arguments(
    cache_path: str, target: str | None, options: dict[str, Any]
) -> Iterator[tuple[Cache, FuseSettings]]:
    """The cache, opened once for the run, and the settings ``run_cv``, ``run_target_cv`` and ``fuse_cache`` share:
    the target, models, folds, repeats and reference, the head of ``--config``/``--head``, the published layers
    above the cache's cuts, and the executor of the options (open while the block runs)."""
    from mvemo.cache.read import Cache
    from mvemo.fuse.stage import FuseSettings, resolve_target
    from mvemo.pipeline.config import head_config
    from mvemo.pipeline.executors import build_executor
    from mvemo.pipeline.upper_layers import published_upper_layers

    head, params, selection, configured = head_config(options["config_path"], options["head"])
    with Cache(cache_path) as cache:
        kind = resolve_target(cache, target)
        upper = published_upper_layers(cache, options["weights_dir"], options["models"])
        with build_executor(
            options["executor"], workers=options["workers"], scheduler=options["scheduler"]
        ) as executor:
            yield (
                cache,
                FuseSettings(
                    target=kind,
                    models=options["models"],
                    n_folds=options.get("n_folds"),
                    repeats=options["repeats"],
                    reference=options["reference"] or configured,
                    head=head,
                    head_params=params or {},
                    selection=selection,
                    executor=executor,
                    progress=progress_bar("fusion heads", "fit"),
                    upper=upper,
                ),
            )


@contextlib.contextmanager
def plane_arguments(
    sets: list[tuple[str, Any]], target: str | None, options: dict[str, Any]
) -> Iterator[tuple[list[Cache], dict[str, Any], Any, Any]]:
    """The caches of a values model learning from several sets, each opened for the run, the places their configs
    give their classes (by cache folder's name), the ``[fuse]`` selection and the executor (open while the block
    runs)."""
    from mvemo.cache.read import Cache
    from mvemo.manifests.errors import ConfigError
    from mvemo.pipeline.config import head_config
    from mvemo.pipeline.executors import build_executor

    if target not in (None, "valence,arousal"):
        raise ConfigError(
            f"--target {target}: a model of several caches learns valence and arousal from all of them; leave"
            " --target out, or give one cache"
        )
    head, _, selection, _ = head_config(options["config_path"], options["head"])
    if head:
        raise ConfigError(f"--head {head}: a model of several caches fits ridge heads of values; leave --head out")
    with contextlib.ExitStack() as stack:
        caches = [stack.enter_context(Cache(path)) for path, _ in sets]
        places = {Path(path).name: given for path, given in sets if given}
        executor = stack.enter_context(
            build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"])
        )
        yield caches, places, selection, executor


def cache_sets(cache_paths: tuple[str, ...], config_path: str | None) -> list[tuple[str, Any]]:
    """The caches given with ``--cache`` (their classes' places by name), then those of the config's ``[[sets]]``."""
    from mvemo.pipeline.config import plane_sets

    return [(path, None) for path in cache_paths] + plane_sets(config_path)


def echo_plane_summary(document: dict[str, Any], out: str | None) -> None:
    from mvemo.fuse.report.plane import plane_tables
    from mvemo.pipeline.tables import format_table

    for name, (header, rows) in plane_tables(document).items():
        click.echo(f"{name} ({document['sets'][name]['kind']}, {document['sets'][name]['clips']} clips):")
        click.echo(format_table(header, rows))
    if out:
        click.echo(f"report: {out}/report.md, {out}/report.json")


METHOD_HELP = (
    "With several caches (a values model learning from rated sets and sets whose classes have a place on the plane):"
    " how the placed songs are learnt from: own (each set's own labels), rated (the rated sets alone), pseudo-equal"
    " (each placed song at its quadrant's mean rated position, weighing as a rated clip), pseudo-inner (that weight"
    " chosen on inner folds), one-sided (a placed song predicted further out than that position costs nothing), gated"
    " (an expert of each kind of set, mixed by a gate's probability that a clip's music is like the rated sets')."
    "  [default: gated, chosen over the plane study's paired intervals, docs/studies/plane.md]"
)


@click.command("cv", cls=MvemoCommand, context_settings=CONTEXT)
@click.option(
    "--folds", "n_folds", default=None, type=int, help="Folds expected in the cache.  [default: the cache's own]"
)
@click.option(
    "--cache",
    "cache_paths",
    multiple=True,
    type=click.Path(),
    help="Cache folder of stage one; repeat it for a values model that learns from several sets (or give them in the"
    " config's [[sets]] tables).",
)
@click.option("--method", default=None, type=click.Choice(METHODS), help=METHOD_HELP)
@click.option(
    "--out",
    default="reports",
    type=click.Path(),
    metavar="DIR",
    help="Folder for report.md, report.html, report.json and plots.",
)
@fuse_options
@head_options
@executor_options
@click.option("--json", "as_json", is_flag=True, help="Print the report document on stdout.")
def cv(
    cache_paths: tuple[str, ...], method: str | None, out: str, target: str | None, as_json: bool, **options: Any
) -> None:
    """Cross-validate the fusion models over the cache's folds (stage two), every choice made on inner folds.

    Reports per model accuracy mean, 95 % interval and min/max over folds (paper 001 Table 3), pooled accuracy,
    macro F1, macro ROC-AUC, the paired difference from the reference model, per-class scores and confusion
    matrices, as tables, plots and oof_predictions.csv; report.md defines each figure.

    With several caches, a values model learns from all of them: rated sets (valence and arousal on a scale) and
    sets whose classes have a place on the plane (Q1..Q4, or [[sets]] places); each set is scored on its own folds,
    the others' rows in every training fold.
    """
    from mvemo.fuse.stage import run_cv, run_target_cv
    from mvemo.manifests.errors import ConfigError

    require_writable(out, "--out")
    sets = cache_sets(cache_paths, options["config_path"])
    if len(sets) > 1:
        from mvemo.fuse.plane_stage import run_plane_cv
        from mvemo.fuse.targets.plane import DEFAULT_METHOD

        with plane_arguments(sets, target, options) as (caches, places, selection, executor):
            document = run_plane_cv(
                caches,
                out,
                methods=(method or DEFAULT_METHOD,),
                repeats=options["repeats"],
                models=options["models"],
                places=places,
                selection=selection,
                executor=executor,
            )
        if as_json:
            print_json(document)
        else:
            echo_plane_summary(document, out)
        return
    if not sets:
        raise ConfigError("give the cache with --cache CACHE (or the config's [[sets]] tables)")
    if method:
        raise ConfigError("--method is how a values model learns from several caches; give them, or leave it out")
    cache_path = sets[0][0]
    with fusion_arguments(cache_path, target, options) as (cache, settings):
        if settings.target == "label":
            document = run_cv(cache, out, settings).document
        else:
            document = run_target_cv(cache, out, settings.target, settings).document
    if as_json:
        print_json(document)
    elif settings.target == "label":
        echo_summary(document, out)
    else:
        echo_target_summary(document, out)


def echo_target_summary(document: dict[str, Any], out: str) -> None:
    from mvemo.fuse.report.targets import summary_table
    from mvemo.pipeline.tables import format_table

    click.echo(format_table(*summary_table(document)))
    for note in document.get("notes", []):
        click.echo(f"note: {note}", err=True)
    plots = ", ".join(f"{out}/{f}" for f in document["figures"].values())
    click.echo(f"report: {out}/report.md, {out}/report.html, {out}/report.json; plots: {plots}")


@click.command("fuse", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("cache_path", metavar="CACHE", type=click.Path())
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    metavar="DIR",
    help="Folder for the report and the final model (OUT/model/).",
)
@click.option(
    "--also",
    "also_paths",
    multiple=True,
    type=click.Path(),
    metavar="CACHE",
    help="Another set a values model learns from (a rated set, or one whose classes have a place on the plane);"
    " repeat it for several (or give them in the config's [[sets]] tables).",
)
@click.option("--method", default=None, type=click.Choice(METHODS), help=METHOD_HELP)
@fuse_options
@head_options
@executor_options
def fuse(
    cache_path: str, also_paths: tuple[str, ...], method: str | None, out: str, target: str | None, **options: Any
) -> None:
    """The CV report in OUT, then each model's head trained on every clip, saved in OUT/model/ for `mvemo predict`.

    With --also (or [[sets]]), a values model learns from CACHE and every other set together (as `mvemo-cv --cache A
    --cache B`), and is trained on every clip of all of them."""
    from mvemo.fuse.stage import fuse_cache

    require_writable(out, "--out")
    sets = cache_sets((cache_path, *also_paths), options["config_path"])
    if len(sets) > 1:
        from mvemo.fuse.plane_stage import fuse_plane
        from mvemo.fuse.targets.plane import DEFAULT_METHOD

        with plane_arguments(sets, target, options) as (caches, places, selection, executor):
            document, folder = fuse_plane(
                caches,
                out,
                method=method or DEFAULT_METHOD,
                repeats=options["repeats"],
                models=options["models"],
                places=places,
                selection=selection,
                executor=executor,
            )
        echo_plane_summary(document, out)
        click.echo(f"final model: {folder}/model.json + heads.h5 (trained on every clip of every set)")
        return
    with fusion_arguments(cache_path, target, options) as (cache, settings):
        document, folder = fuse_cache(cache, out, settings)
    if settings.target == "label":
        echo_summary(document, out)
    else:
        echo_target_summary(document, out)
    click.echo(f"final model: {folder}/model.json + heads.h5 (heads trained on every clip)")
