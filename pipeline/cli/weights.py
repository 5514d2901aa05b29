"""``mvemo weights list|fetch|verify``: the pretrained weight files mvemo knows, where it looks, and getting them."""

from __future__ import annotations

import click

from mvemo.pipeline.cli.tools import EXIT_CLIPS_FAILED, MvemoGroup, print_json

WEIGHTS_DIR_HELP = "Folder searched first (also $MVEMO_WEIGHTS, then ~/.cache/mvemo/weights)."


@click.group("weights", cls=MvemoGroup)
def weights_group() -> None:
    """Pretrained weight files: list them, fetch them from their public source, verify them.

    Every file is checked against its published sha256; nothing is ever
    unpickled with the general unpickler.
    """


def _where(weights_dir: str | None) -> list[str]:
    import os

    from mvemo.extract.weights.registry import ENV_VAR, search_dirs, torch_hub_checkpoints

    labels = []
    for folder in search_dirs(weights_dir):
        label = (
            "--weights-dir"
            if weights_dir and str(folder) == str(weights_dir)
            else ENV_VAR
            if str(folder) == os.environ.get(ENV_VAR)
            else "default"
        )
        labels.append(f"{folder} ({label})")
    return [*labels, f"{torch_hub_checkpoints()} (torch hub cache; torchvision's files only)"]


@weights_group.command("list")
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False), help=WEIGHTS_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def weights_list(weights_dir: str | None, as_json: bool) -> None:
    """Each known weight file: the nets that load it, its sha256, its public source, and where it was found."""
    from mvemo.extract.weights.registry import KNOWN, search_dirs, torch_hub_checkpoints, weights_status

    states = [weights_status(name, weights_dir, check=False) for name in KNOWN]
    if as_json:
        dirs = [str(d) for d in search_dirs(weights_dir)]
        print_json(
            {
                "search_dirs": dirs,
                "torch_hub_dir": str(torch_hub_checkpoints()),
                "weights": [s.as_dict() for s in states],
            }
        )
        return
    click.echo("mvemo looks in, in order: " + "; ".join(_where(weights_dir)))
    for state in states:
        known = KNOWN[state.name]
        found = f"found: {state.path}" if state.path else "missing"
        digest = {
            "sha256": known.sha256,
            "prefix": f"{known.sha256}... (published prefix)",
            "none": "(none published)",
        }[known.pinned]
        click.echo(f"\n{state.name}  [{', '.join(known.nets)}]  {found}")
        click.echo(f"  sha256   {digest}")
        click.echo(f"  source   {known.source} ({known.license})")
        click.echo(f"  url      {known.url}")


@weights_group.command("fetch")
@click.argument("name")
@click.option(
    "--from",
    "url",
    default=None,
    metavar="URL",
    help="Download from here (http(s) or file URL, or a path).  [default: the public source]",
)
@click.option(
    "--weights-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Destination.  [default: $MVEMO_WEIGHTS, else ~/.cache/mvemo/weights]",
)
@click.option(
    "--sha256",
    default=None,
    metavar="HEX",
    help="The digest the file must have (the only check for a file with none published).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def weights_fetch(name: str, url: str | None, weights_dir: str | None, sha256: str | None, as_json: bool) -> None:
    """Download NAME, check its sha256, convert it to its safe local format where needed, and store it."""
    from mvemo.extract.weights.fetch import fetch_weights

    fetched = fetch_weights(name, url=url, weights_dir=weights_dir, sha256=sha256)
    if fetched.checked.startswith("nothing"):
        click.echo(
            f"note: no sha256 is published for {name}; this file's sha256 {fetched.sha256} goes into every fingerprint"
            " built on it (pass --sha256 to require one)",
            err=True,
        )
    if as_json:
        print_json(fetched.as_dict())
        return
    how = f"converted from {fetched.source}" if fetched.converted else f"from {fetched.source}"
    click.echo(f"{name}: {fetched.path} ({how}; sha256 {fetched.sha256}, checked against {fetched.checked})")


@weights_group.command("verify")
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False), help=WEIGHTS_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_context
def weights_verify(ctx: click.Context, weights_dir: str | None, as_json: bool) -> None:
    """Check the sha256 of every known file found; exit 3 when one is corrupt (missing files are listed, not errors)."""
    from mvemo.extract.weights.registry import KNOWN, verify_weights

    states = verify_weights(weights_dir)
    bad = [s for s in states if s.status == "mismatch"]
    if as_json:
        print_json({"ok": not bad, "weights": [s.as_dict() for s in states]})
    else:
        for state in states:
            known = KNOWN[state.name]
            if state.status == "missing":
                click.echo(f"missing   {state.name}: get it with `mvemo weights fetch {state.name}`")
            elif state.status == "mismatch":
                click.echo(
                    f"MISMATCH  {state.path}: sha256 {state.sha256}, published {known.sha256} ({known.source});"
                    f" delete it and run `mvemo weights fetch {state.name}`",
                    err=True,
                )
            else:
                note = " (no sha256 published)" if state.status == "unpinned" else ""
                click.echo(f"{state.status:<9} {state.path}: sha256 {state.sha256}{note}")
        found = sum(s.path is not None for s in states)
        click.echo(f"{found} of {len(states)} known files found, {len(bad)} corrupt")
    if bad:
        ctx.exit(EXIT_CLIPS_FAILED)
