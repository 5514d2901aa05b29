"""``mvemo study optimizers``: paper 001's Table 2, each net fine-tuned with Adam, SGD and RMSprop on inner folds;
``mvemo study fusion`` and ``mvemo study decide``: the fusion rules of the default model's protocol
(docs/results.md); ``mvemo study plane``: how a values model learns from several sets (docs/studies/plane.md)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from mvemo.pipeline.cli.extract import (
    locked_cache,
    names,
    net_run_options,
    read_checked_manifest,
    run_stage_one,
    show_stages,
)
from mvemo.pipeline.cli.tools import (
    CONTEXT,
    EXIT_CLIPS_FAILED,
    MvemoCommand,
    MvemoGroup,
    executor_options,
    print_json,
    progress_bar,
    require_writable,
)


@click.group("study", cls=MvemoGroup)
def study_group() -> None:
    """Studies: the nets fine-tuned with each optimizer on inner folds; the fusion rules compared, set by set."""


@study_group.command("optimizers", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option(
    "--cache", "cache_path", required=True, type=click.Path(), help="Cache folder holding (or to get) the nets' inputs."
)
@click.option("--nets", required=True, help="Comma-separated nets to fine-tune, e.g. onedcnn,twodcnn,c3d,i3d,crnn.")
@click.option(
    "--finetune", default="last", show_default=True, type=click.Choice(["last", "full"]), help="Which weights train."
)
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
        raise ConfigError(
            "the optimizer study fine-tunes on one window per clip: run it with a config without [clip] windows"
        )
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


@study_group.command("fusion", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("cache_path", metavar="CACHE", type=click.Path(exists=True))
@click.option(
    "--target",
    default="label",
    type=click.Choice(["label", "tags", "values"]),
    help="What the heads learn (values: every value the cache holds, each decided on its own).",
)
@click.option("--repeats", default=10, type=click.IntRange(min=1), help="Runs of the CV over fold seeds.")
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False), help="Write the study as JSON here (for `study decide`)."
)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file whose [fuse] table sets how stage two chooses, as for mvemo-cv"
    " (heads, value_heads, inner_folds, ...); the study records it.",
)
@click.option(
    "--rules",
    default=None,
    help="The rules to measure, comma-separated, late among them (late, modal, trimmed, modal-trimmed, choice,"
    " late-inner, stack); `study decide` lets a rule left out replace nothing.  [default: every rule]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the study as one JSON document.")
@executor_options
def fusion(
    cache_path: str,
    target: str,
    repeats: int,
    out: str | None,
    config_path: str | None,
    rules: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Cross-validate every fusion rule of the default model's protocol (plain late fusion, per modality, trimmed,
    the old choice, inner weights, the stack), or those --rules names, over the inputs the default model fuses, and
    each input alone; print each rule's figure and its paired difference fold by fold against the plain late fusion
    and the best input."""
    from mvemo.cache.read import Cache
    from mvemo.fuse.rules import RULES, compare_rules, study_table
    from mvemo.manifests.errors import ConfigError
    from mvemo.pipeline.config import head_config
    from mvemo.pipeline.executors import build_executor

    if out:
        require_writable(out, "--out", folder=False)
    head, params, selection, reference = head_config(config_path, None)
    if head or params or reference:
        raise ConfigError(
            f"--config {config_path}: the study's rules use the [fuse] table alone; leave [head] and reference out"
        )
    with (
        Cache(cache_path) as cache,
        build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"]) as executor,
    ):
        progress = progress_bar("rules", "fit")
        document = compare_rules(
            cache,
            target=target,
            repeats=repeats,
            rules=[rule.strip() for rule in rules.split(",")] if rules else RULES,
            selection=selection,
            executor=executor,
            progress=progress,
        )
    document["selection"] = selection.to_json()
    if out:
        Path(out).write_text(json.dumps(document, indent=1))
    if as_json:
        print_json(document)
    else:
        click.echo(study_table(document))


@study_group.command("plane", cls=MvemoCommand, context_settings=CONTEXT)
@click.option(
    "--cache",
    "cache_paths",
    multiple=True,
    type=click.Path(exists=True),
    help="A set's cache: a rated set, or one whose classes have a place on the plane; repeat it (or give [[sets]]).",
)
@click.option("--repeats", default=10, type=click.IntRange(min=1), help="Runs of the CV over fold seeds.")
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False), help="Write the study as JSON here (its report beside)."
)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file of [[sets]] tables (cache, places) and the [fuse] table (inner_folds, seed...); the study records"
    " it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the study as one JSON document.")
@executor_options
def plane(
    cache_paths: tuple[str, ...], repeats: int, out: str | None, config_path: str | None, as_json: bool, **options: Any
) -> None:
    """The protocol of docs/studies/plane.md: a values model learning from several sets by each method (own, rated,
    pseudo-equal, pseudo-inner, one-sided, gated), each set scored on its own folds and repeats; each method's paired
    difference against rated and own fold by fold, and the default the protocol decides."""
    from mvemo.fuse.plane_stage import study_plane
    from mvemo.fuse.report.plane import plane_markdown
    from mvemo.fuse.targets.plane import DEFAULT_METHOD
    from mvemo.manifests.errors import ConfigError
    from mvemo.pipeline.cli.cv import cache_sets, echo_plane_summary, plane_arguments

    if out:
        require_writable(out, "--out", folder=False)
    sets = cache_sets(cache_paths, config_path)
    if len(sets) < 2:
        raise ConfigError("the study compares what a values model learns from several sets: give two caches or more")
    arguments = {"config_path": config_path, "head": None, **options}
    with plane_arguments(sets, None, arguments) as (caches, places, selection, executor):
        document = study_plane(caches, repeats=repeats, places=places, selection=selection, executor=executor)
    if out:
        Path(out).write_text(json.dumps(document, indent=1))
        Path(out).with_suffix(".md").write_text(plane_markdown(document))
    if as_json:
        print_json(document)
        return
    echo_plane_summary(document, None)
    decision = document["decision"]
    for step in decision["steps"]:
        verdict = "replaces it" if step["replaces"] else "does not replace it"
        worse = f", worse on {', '.join(step['worse'])}" if step["worse"] else ""
        click.echo(f"{step['method']} against {step['against']}: {verdict}{worse}")
    click.echo(
        f"default by the study's rule: {decision['default']} (mvemo's default: {DEFAULT_METHOD}, chosen by the"
        " project's rule over the plane study's intervals on musemo and 4q-dev; docs/studies/plane.md)"
    )


@study_group.command("decide", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument(
    "studies", metavar="STUDY.json...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False)
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as one JSON document.")
def decide(studies: tuple[str, ...], as_json: bool) -> None:
    """The protocol's decision over the studies of several sets (`mvemo study fusion --out`): from the plain late
    fusion up, a rule replaces the default where it is better on some set by more than its paired interval's
    half-width and worse on none by more than 0.005; a rule some study did not measure (`study fusion --rules`)
    replaces nothing."""
    from mvemo.fuse.rules import decide as decide_rule
    from mvemo.fuse.rules import decision_table

    decision = decide_rule({name: json.loads(path.read_text()) for name, path in set_names(studies).items()})
    if as_json:
        print_json(decision)
    else:
        click.echo(decision_table(decision))


def set_names(studies: tuple[str, ...]) -> dict[str, Path]:
    """Each study file by the name its set goes by in the decision: its stem, or where files share a stem, its path as
    given, so that ``a/study.json b/study.json`` are two sets. The same file given twice is a ``ConfigError``."""
    from mvemo.manifests.errors import ConfigError

    seen: dict[Path, str] = {}
    for given in studies:
        path = Path(given).resolve()
        if path in seen:
            raise ConfigError(
                f"STUDY.json {given!r} is given twice (first as {seen[path]!r}): give each set's study once"
            )
        seen[path] = given
    stems = Counter(Path(given).stem for given in studies)
    return {Path(given).stem if stems[Path(given).stem] == 1 else given: Path(given) for given in studies}
