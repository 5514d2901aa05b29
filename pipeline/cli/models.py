"""``mvemo models list`` and ``mvemo models train``: the ready-made models shipped with mvemo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mvemo.pipeline.cli.tools import CONTEXT, MvemoCommand, MvemoGroup, executor_options, print_json, progress_bar

SHARED_DATA = Path("../shared/data")
EXIT_DIFFERS = 1


@click.group("models", cls=MvemoGroup)
def models_group() -> None:
    """Ready-made models: label songs and music videos with no labelled data of your own (`mvemo predict --model NAME
    FILE...`), each rebuilt from its recipe by `mvemo models train NAME`."""


@models_group.command("list", cls=MvemoCommand, context_settings=CONTEXT)
@click.option(
    "--weights-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where the nets' weights are looked for first (as predict's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def models_list(weights_dir: str | None, as_json: bool) -> None:
    """Each ready-made model: what it labels, its inputs, its cross-validated figures, whether the weights of its
    nets are here as it was trained with them (else the command that fetches them), and whether this version computes
    what it reads as it was trained, a block of lines a model; a problem of one model is marked in its block."""
    from mvemo.pipeline.readymade.catalogue import catalogue

    entries = catalogue(weights_dir)
    if as_json:
        print_json(entries)
        return
    fields = {
        "cross-validated": "figures",
        "inputs": "inputs",
        "weights": "weights",
        "this version computes": "computes",
    }
    width = max(map(len, fields))
    for e in entries:  # a block a model: a table's row of them ran to hundreds of columns
        click.echo(f"{e['name']}: {e['labels']}")
        for heading, key in fields.items():
            value = ", ".join(e[key]) if key == "inputs" else e[key]
            click.echo(f"  {heading:<{width}}  {value}")
    click.echo("cards: docs/models.md; use one with `mvemo predict --model NAME FILE...`")


@models_group.command("train", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--data",
    "data_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="The recipe's data folder.  [default: ../shared/data/<the recipe's data>]",
)
@click.option(
    "--work",
    "work_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where the manifest, the cache and the report go.  [default: runs/models/NAME]",
)
@click.option(
    "--weights-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder of the nets' pretrained weights (also $MVEMO_WEIGHTS, ~/.cache/mvemo/weights).",
)
@click.option(
    "--ship",
    is_flag=True,
    help="Replace the shipped model with the rebuilt one (in a source checkout, for a new release).",
)
@executor_options
@click.pass_context
def models_train(
    ctx: click.Context,
    name: str,
    data_dir: str | None,
    work_dir: str | None,
    weights_dir: str | None,
    ship: bool,
    **options: Any,
) -> None:
    """Rebuild ready-made model NAME from its recipe (its data, labels, folds and inputs, the default fusion rule) and
    check that it equals the shipped one: exit 0 when it does, 1 listing where it differs."""
    from mvemo.pipeline.executors import build_executor
    from mvemo.pipeline.readymade.recipes import recipe, require_source_checkout, ship_model, shipped_folder
    from mvemo.pipeline.readymade.train import differences, train_recipe

    chosen = recipe(name)
    if ship:
        require_source_checkout()  # before the hours of training, not after
    data = Path(data_dir) if data_dir else SHARED_DATA / chosen.data
    work = Path(work_dir) if work_dir else Path("runs") / "models" / name
    with build_executor(options["executor"], workers=options["workers"], scheduler=options["scheduler"]) as executor:
        folder = train_recipe(chosen, data, work, weights_dir=weights_dir, executor=executor, progress=progress_bar)
    click.echo(f"rebuilt {name} in {folder}")
    if ship:
        click.echo(f"shipped: {ship_model(name, folder)}")
        return
    found = differences(shipped_folder(name), folder)
    if not found:
        click.echo(f"equal to the shipped {name}")
        return
    for line in found[:20]:
        click.echo(f"differs: {line}", err=True)
    click.echo(f"{len(found)} difference(s) from the shipped {name}", err=True)
    ctx.exit(EXIT_DIFFERS)
