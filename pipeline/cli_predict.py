"""``mvemo predict``: the emotion of new music videos or songs."""

from __future__ import annotations

import click

from pipeline.clitools import CONTEXT, EXIT_CLIPS_FAILED, MvemoCommand, print_json


@click.command("predict", cls=MvemoCommand, context_settings=CONTEXT)
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(file_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", "model_name", default=None, help="Saved fusion model to use.  [default: the best by cross-validation]")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {file, label, probabilities} (or {file, error}).")
@click.pass_context
def predict(ctx: click.Context, model_dir: str, files: tuple[str, ...], model_name: str | None, as_json: bool) -> None:
    """Label each FILE (video or audio) with the model saved by `mvemo fuse` in MODEL_DIR.

    A file that fails to decode is reported and the others still run (exit 3).
    """
    from pipeline.predict import predict_files
    from pipeline.tables import format_table

    results = predict_files(model_dir, list(files), model=model_name)
    if as_json:
        print_json(results)
    else:
        ok = [r for r in results if "label" in r]
        if ok:
            classes = list(ok[0]["probabilities"])
            rows = [[r["file"], r["label"], *(f"{r['probabilities'][c]:.2f}" for c in classes)] for r in ok]
            click.echo(format_table(["file", "emotion", *classes], rows))
            click.echo(f"model: {ok[0]['model']}")
        for r in results:
            if "error" in r:
                click.echo(f"failed: {r['file']}: {r['error']}", err=True)
    if any("error" in r for r in results):
        ctx.exit(EXIT_CLIPS_FAILED)
