"""``mvemo demo``: the whole pipeline on synthetic music videos."""

from __future__ import annotations

import os
import shutil
import sys
import time

import click

from mvemo.pipeline.cli.tools import CONTEXT, EXIT_CLIPS_FAILED, MvemoCommand, progress_bar, require_writable


@click.command("demo", cls=MvemoCommand, context_settings=CONTEXT)
@click.option(
    "--out", default="demo-out", type=click.Path(), metavar="DIR", help="Folder for the data and the results."
)
@click.option(
    "--clips-per-class",
    default=12,
    type=click.IntRange(min=4),
    help="Synthetic clips written per class"
    " (at least 4: each class needs 2 training clips per fold to choose on inner folds).",
)
@click.option("--duration-s", default=10.0, type=float, help="Length of each synthetic clip in seconds.")
@click.option("--seed", default=0, type=int, help="Seed of the generator and of the folds.")
@click.option("--workers", default=2, type=click.IntRange(min=1), help="Worker processes for stage one (1: serial).")
@click.pass_context
def demo(ctx: click.Context, out: str, clips_per_class: int, duration_s: float, seed: int, workers: int) -> None:
    """Run mvemo end to end on a synthetic set of music videos (six classes of paper 001).

    Each class draws musical cues (tempo, mode, loudness, timbre, rhythm,
    dissonance) and visual cues (motion, colour warmth, brightness, cuts) from
    its own distributions; some class pairs differ only in sound, others only in
    pictures. Writes OUT/data/ and OUT/manifest.csv (with folds), runs stage one
    into OUT/cache and stage two into OUT (report, plots, OUT/model/); the clips'
    tags and valence/arousal, which follow from their cues, are cross-validated
    into OUT/tags and OUT/valence-arousal.
    Nothing is downloaded. Exits 3 when some clip failed stage one (each listed), 2 when every clip did.
    """
    from mvemo.manifests.synthetic import SyntheticConfig
    from mvemo.pipeline.cli.cv import echo_summary, echo_target_summary
    from mvemo.pipeline.demo import DEMO_NETS, DEMO_TARGETS, run_demo
    from mvemo.pipeline.executors import build_executor

    require_writable(out, "--out")
    began = time.perf_counter()
    config = SyntheticConfig(clips_per_class=clips_per_class, duration_s=duration_s, seed=seed)
    click.echo(f"writing {6 * clips_per_class} synthetic music videos of {duration_s:g} s into {out}/data ...")
    with build_executor("serial" if workers == 1 else "processes", workers=workers) as executor:
        result = run_demo(out, config, k=min(6, clips_per_class // 2), executor=executor, progress=progress_bar)
    echo_summary(result.report, out)
    for target, document in result.target_reports.items():
        click.echo(f"--target {target}:")
        echo_target_summary(document, f"{out}/{DEMO_TARGETS[target]}")
    click.echo(
        f"the nets ({', '.join(DEMO_NETS)}) ran from seeded random weights (none ship with the demo): these figures"
        " show the pipeline at work, not what the published nets read"
    )
    mvemo = "mvemo" if shutil.which("mvemo") else os.path.relpath(sys.argv[0])  # as the user can type it
    click.echo(
        f"final model: {out}/model/ (try `{mvemo} predict {out}/model FILE`);"
        f" done in {time.perf_counter() - began:.0f} s"
    )
    for name, reasons in result.features.failures.items():
        for clip_id, reason in reasons.items():
            click.echo(f"failed: {name}, clip {clip_id!r}: {reason}", err=True)
    if result.features.failures:
        ctx.exit(EXIT_CLIPS_FAILED)
