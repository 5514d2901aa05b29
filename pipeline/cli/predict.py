"""``mvemo predict``: the emotion of new music videos or songs."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mvemo.manifests.targets import VALUE_COLUMNS
from mvemo.pipeline.cli.tools import (
    CONTEXT,
    EXIT_CLIPS_FAILED,
    MvemoCommand,
    executor_options,
    print_json,
    progress_bar,
    require_writable,
)

if TYPE_CHECKING:
    from mvemo.pipeline.predict.ahead import SetsAhead


@click.command("predict", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("arguments", metavar="[MODEL_DIR] FILE...", nargs=-1, type=click.Path())
@click.option(
    "--manifest",
    "manifest_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Label the clips of this manifest (CSV or JSONL) instead of FILES.",
)
@click.option(
    "--csv",
    "csv_path",
    default=None,
    type=click.Path(),
    metavar="FILE",
    help="Write one results CSV: a row per clip with its label, a probability per class, or its error."
    " A rerun resumes it: clips labelled there are skipped, those that failed retried once.",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="A ready-made model (`mvemo models list`: then no MODEL_DIR), or the model of MODEL_DIR to use.  [default: its"
    " integrated model, else the first saved]",
)
@click.option(
    "--weights-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder of the pretrained weights the model was trained with (also $MVEMO_WEIGHTS, ~/.cache/mvemo/weights).",
)
@click.option(
    "--features",
    "feature_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="CSV or .npz of the columns of a set the model imported (`mvemo cache import`) for these clips: a row per"
    " clip, keyed by clip id or file stem; repeat it for several files.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list of {clip_id, file, model, label, probabilities, in_training} (or {clip_id, file, error});"
    " in_training is null for a model of imported sets alone.",
)
@click.option(
    "--timeline",
    is_flag=True,
    help="Read each file as windows of the model's length every --hop seconds: an emotion timeline (CSV, PNG and an"
    " HTML page that plays the file beside it, per file into --out, and index.html)"
    " and the label of the whole from the pooled windows.",
)
@click.option(
    "--hop",
    "hop_s",
    default=None,
    type=click.FloatRange(min=0.5),
    help="Seconds between the starts of two windows (--timeline)."
    "  [default: the model's [clip] hop_s where it was trained on windows, else half its window: 15 s]",
)
@click.option(
    "--out",
    "out_dir",
    default="timelines",
    type=click.Path(),
    metavar="DIR",
    help="Folder of the timelines (--timeline).",
)
@click.option(
    "--embed-media",
    is_flag=True,
    help="Inline each file (up to 20 MiB) into its timeline page, so that the page travels alone"
    " (--timeline).  [default: the page refers to the file by a relative path]",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Say on stderr where the command runs (served by `mvemo serve`, or in a process of its own and why), the"
    " size of each of its thread pools, and whether a second process computes the clips' feature sets.",
)
@executor_options
@click.pass_context
def predict(
    ctx: click.Context,
    arguments: tuple[str, ...],
    manifest_path: str | None,
    csv_path: str | None,
    model_name: str | None,
    weights_dir: str | None,
    feature_files: tuple[str, ...],
    as_json: bool,
    timeline: bool,
    hop_s: float | None,
    out_dir: str,
    embed_media: bool,
    verbose: bool,
    **options: Any,
) -> None:
    """Label each FILE (video or audio), or each clip of --manifest, with the model saved by `mvemo fuse` in MODEL_DIR,
    or with a ready-made model: `mvemo predict --model 4q-quadrants song.mp3` (`mvemo models list`).

    Clips fan out over --executor like `mvemo extract`. A clip that fails to decode is reported and the others
    still run (exit 3). With --csv the console shows a summary instead of a row per clip.
    """
    from mvemo.pipeline.cli.collector import collector_paused

    with collector_paused():  # torch, librosa and the model: objects that live as long as the process
        from mvemo.manifests import read_manifest
        from mvemo.manifests.errors import ConfigError
        from mvemo.pipeline.executors import build_executor

        model_dir, files, model_name = model_and_files(arguments, model_name)
        if bool(files) == bool(manifest_path):
            raise ConfigError("give either FILE arguments or --manifest M, not both and not neither")
        if timeline and csv_path:
            raise ConfigError("--timeline writes a CSV per file into --out; leave --csv out")
        if embed_media and not timeline:
            raise ConfigError("--embed-media inlines files into timeline pages; add --timeline or leave it out")
        if csv_path:
            require_writable(csv_path, "--csv", folder=False)
        if timeline:
            require_writable(out_dir, "--out")
        sets_ahead = _sets_ahead(ctx, model_dir, weights_dir, options["executor"], timeline)  # before torch's imports
        from mvemo.pipeline.predict.predictor import Predictor, file_clip
        from mvemo.pipeline.predict.tally import Tally

        # a missing file is one clip's failure, reported in its row, not the run's
        clips = (
            list(read_manifest(manifest_path, check_files=False, unlabelled=True).clips)
            if manifest_path
            else [file_clip(f) for f in files]
        )
        labels = {c.clip_id: c.label for c in clips if c.label}
        predictor = Predictor(
            model_dir, model_name, weights_dir, feature_files, timeline=timeline, sets_ahead=sets_ahead
        )
    if verbose:
        _say_how_this_runs(predictor.sets_ahead is not None)
    if timeline:
        _timelines(ctx, predictor, clips, hop_s, out_dir, embed_media, as_json, options)
        return
    tally = Tally(predictor, labels)
    kept: list[dict[str, Any]] = []  # the JSON and the table list every clip; a CSV's summary needs only the tally
    with build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"]) as pool:
        if csv_path:
            earlier, todo, stream = _resumed(predictor, clips, csv_path, labels, pool)
        else:
            earlier, todo, stream = iter(()), clips, predictor.predict(clips, pool)
        for result in itertools.chain(earlier, progress_bar("predict", "clip")(stream, len(todo))):
            tally.add(result)
            if as_json or not csv_path:
                kept.append(result)
    if sets_ahead is not None:  # its work is done: ended before the output, a signal after it finds none to wait for
        sets_ahead.close()
    if as_json:
        print_json(kept)
    elif csv_path:
        _summary(tally, predictor, csv_path)
    else:
        _table(kept, predictor)
    warn_seen_in_training(tally.seen, len(clips))
    for clip_id, error in tally.failed:
        click.echo(f"failed: {clip_id}: {error}", err=True)
    if tally.failed:
        ctx.exit(EXIT_CLIPS_FAILED)


def _sets_ahead(
    ctx: click.Context, model_dir: str, weights_dir: str | None, executor: str, timeline: bool
) -> SetsAhead | None:
    """The process that computes the clips' feature sets while this one loads the nets (``pipeline.predict.ahead``),
    closed with the command: on the serial executor, in a console script's process (``cli.collector``) that has not
    imported stage one's feature code, which that process would import again (``mvemo serve`` imports it before its
    forks run a predict); None elsewhere."""
    from mvemo.pipeline.cli.collector import in_one_command_process

    if executor != "serial" or timeline or not in_one_command_process() or "mvemo.extract.features" in sys.modules:
        return None
    from mvemo.pipeline.predict.ahead import SetsAhead

    # torch's OpenMP threads, to be loaded next, wait for work asleep: spinning, they took the cores the process
    # computing the sets needed (a first label took 4.15-4.18 s, and 3.43-3.57 s with them asleep)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return ctx.with_resource(SetsAhead(model_dir, weights_dir))


def _say_how_this_runs(sets_ahead: bool) -> None:
    from mvemo.pipeline.cli.serve import thread_pool_sizes
    from mvemo.pipeline.serving.client import how_this_runs

    sizes = ", ".join(f"{pool} {size}" for pool, size in thread_pool_sizes().items())
    ahead = "; the clips' feature sets computed in a second process, ahead of the nets" if sets_ahead else ""
    click.echo(f"mvemo predict: runs {how_this_runs()}; threads: {sizes}{ahead}", err=True)


def warn_seen_in_training(seen: list[str], n_clips: int) -> None:
    """Warn, on stderr, of the clips the model trained on (``seen``): their scores test nothing."""
    if seen:
        click.echo(
            f"warning: {len(seen)} of {n_clips} clips were in the model's training set"
            f" ({', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''}): their scores are fitted, not"
            " predicted; judge the model by `mvemo-cv`'s report or by clips it never saw",
            err=True,
        )


def model_and_files(arguments: tuple[str, ...], model_name: str | None) -> tuple[str, tuple[str, ...], str | None]:
    """The saved model's folder, the files to label and the model of the folder to use: the first argument where it
    is a folder (beside ``--model`` of a ready-made model, one that holds a saved model), else the ready-made model of
    ``--model``."""
    from mvemo.manifests.errors import ConfigError
    from mvemo.pipeline.readymade.recipes import RECIPES, REPLACED, shipped_folder

    ready_made = model_name if model_name in RECIPES or model_name in REPLACED else None
    first = Path(arguments[0]) if arguments else None
    if first is not None and first.is_dir() and (ready_made is None or _holds_saved_model(first)):
        return arguments[0], arguments[1:], model_name
    if ready_made is not None:
        folder = next((a for a in arguments if Path(a).is_dir()), None)
        if folder is not None:
            raise ConfigError(
                f"{folder!r} is a folder: --model {ready_made} labels files; name them (e.g. {folder}/*), or give a"
                f" manifest of them with --manifest (`mvemo manifest scan {folder} -o new.csv`)"
            )
        return str(shipped_folder(ready_made)), arguments, None
    if model_name is not None:
        where = "no MODEL_DIR is given" if first is None else f"{arguments[0]!r} is no folder"
        raise ConfigError(
            f"--model {model_name!r} is no ready-made model ({', '.join(RECIPES)}: `mvemo models list`), and {where}"
            " to choose it from; give a ready-made model's name, or the folder of a model saved by `mvemo fuse` first"
        )
    what = f"{arguments[0]!r} is no folder" if arguments else "no MODEL_DIR given"
    raise ConfigError(
        f"{what}: give the folder of a model saved by `mvemo fuse` first, or --model NAME of a ready-made model"
        f" ({', '.join(RECIPES)}: `mvemo models list`)"
    )


def _holds_saved_model(folder: Path) -> bool:
    from mvemo.fuse.saved.model import MODEL_JSON

    return (folder / MODEL_JSON).is_file()


def _timelines(
    ctx: click.Context,
    predictor: Any,
    clips: list[Any],
    hop_s: float | None,
    out_dir: str,
    embed_media: bool,
    as_json: bool,
    options: dict[str, Any],
) -> None:
    """Each clip's timeline CSV, PNG and page into ``out_dir``, their index.html, and a table (or JSON) of the labels
    of the wholes."""
    from mvemo.pipeline.executors import build_executor
    from mvemo.pipeline.predict.page import index_page
    from mvemo.pipeline.predict.predictor import categories_of, category_noun
    from mvemo.pipeline.predict.timeline import timelines
    from mvemo.pipeline.readymade.recipes import PLANE_VALUES, shipped_folder
    from mvemo.pipeline.tables import format_table

    out = Path(out_dir).absolute()
    values = shipped_folder(PLANE_VALUES) if predictor.saved.plane is not None else None  # its point on the plane
    with build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"]) as pool:
        stream = timelines(predictor, clips, hop_s, str(out), pool, embed_media=embed_media, values_model=values)
        results = list(progress_bar("timeline", "file")(stream, len(clips)))
    target, outputs = predictor.saved.target, predictor.outputs
    index = index_page(results, categories_of(target, outputs), out, named=category_noun(target, outputs))
    failed = [r for r in results if "error" in r]
    if as_json:
        print_json(results)
    else:
        rows = [[r["file"], r["label"], r["model"], r["windows"], r["html"]] for r in results if "label" in r]
        if rows:
            click.echo(format_table(["file", "emotion (whole)", "model", "windows", "timeline page"], rows))
        click.echo(f"index: {index}")
        for r in results:
            for note in r.get("notes", []):
                click.echo(f"note: {r['clip_id']}: {note}", err=True)
    warn_seen_in_training([r["clip_id"] for r in results if r.get("in_training")], len(clips))
    for r in failed:
        click.echo(f"failed: {r['clip_id']}: {r['error']}", err=True)
    if failed:
        ctx.exit(EXIT_CLIPS_FAILED)


def _resumed(
    predictor: Any, clips: list[Any], csv_path: str, labels: dict[str, str], pool: Any
) -> tuple[Any, list, Any]:
    """What an earlier run of ``--csv`` left (``pipeline.predict.results_csv``): the results of the clips it labelled,
    which are skipped, the clips left to label (those it never reached, those that failed: retried once), and the stream
    of their results into the CSV."""
    from mvemo.pipeline.predict.results_csv import (
        csv_header,
        earlier_rows,
        labelled,
        result_of_row,
        saved_digest,
        write_results_csv,
    )

    header, digest = csv_header(predictor.saved, labelled=bool(labels)), saved_digest(predictor.saved)
    rows = earlier_rows(csv_path, header, predictor.model, digest)
    done = labelled(rows)
    order = [c.clip_id for c in clips]
    left = [c for c in clips if c.clip_id not in done]
    if rows:
        retried = sum(1 for c in left if c.clip_id in rows)
        click.echo(
            f"resuming {csv_path}: {len(clips) - len(left)} of {len(clips)} clips labelled before;"
            f" {retried} that failed retried",
            err=True,
        )
    earlier = (result_of_row(rows[clip_id], predictor.saved) for clip_id in order if clip_id in done)
    stream = write_results_csv(predictor.predict(left, pool), csv_path, header, order, rows, labels, digest)
    return earlier, left, stream


def _table(results: list[dict[str, Any]], predictor: Any) -> None:
    from mvemo.pipeline.predict.predictor import scores_of
    from mvemo.pipeline.tables import format_table

    scale, outputs = predictor.saved.scale, predictor.outputs
    rows = [[r["file"], r["label"], *score_cells(list(scores_of(r).values()), scale)] for r in results if "label" in r]
    if rows:
        heading = {"label": "emotion", "tags": "tags"}.get(predictor.saved.target, "quadrant")
        unit = [f"{name} on [-1, 1]" for name in outputs] if scale and rescaled(scale) else []
        on_scale = [f"{name} on [{scale[0]:g}, {scale[1]:g}]" for name in outputs] if scale else outputs
        click.echo(format_table(["file", heading, *on_scale, *unit], rows))
    click.echo(f"model: {model_label(predictor.saved.folder, predictor.model)}")


def model_label(folder: Path, model: str) -> str:
    """How the console names the model that labelled the clips: a ready-made model by its name, then the model of its
    folder (``4q-quadrants (integrated-audio)``), a saved model's by that model's name."""
    from mvemo.pipeline.readymade.recipes import SHIPPED

    return f"{folder.name} ({model})" if folder.parent == SHIPPED else model


def score_cells(scores: list[float], scale: tuple[float, float] | None) -> list[str]:
    """One clip's scores as the table prints them: probabilities, or values on their scale and then, where that is
    another, on [-1, 1]."""
    from mvemo.manifests.targets import on_unit_scale

    cells = [f"{s:.2f}" for s in scores]
    return cells + ([f"{u:+.2f}" for u in on_unit_scale(scores, scale)] if scale and rescaled(scale) else [])


def rescaled(scale: tuple[float, float]) -> bool:
    """Whether values on ``scale`` are also printed on [-1, 1]: where that is another scale."""
    return tuple(map(float, scale)) != (-1.0, 1.0)


def _summary(tally: Any, predictor: Any, csv_path: str) -> None:
    """Counts of what the model names clips by (its classes, the tags called, or the quadrants) and, for a model of
    classes where the manifest labels clips with them, the accuracy; for one of valence and arousal where it labels
    them with quadrants (another data set's, as 4Q's), how its signs agree (``fuse.metrics.sign_agreement``)."""
    from mvemo.fuse.metrics import sign_agreement

    named = model_label(predictor.saved.folder, predictor.model)
    click.echo(f"model: {named}; {tally.labelled} of {tally.clips} clips labelled into {csv_path}")
    kind = {"label": "", "tags": "tags called: "}.get(tally.target, "quadrants: ")
    click.echo(kind + ", ".join(f"{c} {n}" for c, n in tally.called.items()))
    if tally.known:
        click.echo(
            f"accuracy against the manifest's labels: {tally.right}/{tally.known} = {tally.right / tally.known:.3f}"
        )
    if not tally.signs:
        return
    values, quadrants = zip(*tally.signs)
    agreed = sign_agreement(list(values), list(quadrants), predictor.saved.scale)
    aucs = [
        f"{name} ROC-AUC {agreed[f'{name}_roc_auc']:.3f}"
        for name in VALUE_COLUMNS
        if agreed[f"{name}_roc_auc"] is not None
    ]
    click.echo(
        f"against the manifest's quadrants ({len(values)} clips), by the signs: {', '.join(aucs)}"
        f"{', ' if aucs else ''}quadrant accuracy {agreed['quadrant_accuracy']:.3f}"
    )
