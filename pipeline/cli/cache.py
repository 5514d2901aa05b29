"""``mvemo cache info|verify``: what a cache holds, and whether it is sound."""

from __future__ import annotations

import click

from mvemo.pipeline.cli.tools import EXIT_CLIPS_FAILED, MvemoGroup, print_json


@click.group("cache", cls=MvemoGroup)
def cache_group() -> None:
    """Inspect and verify an HDF5 feature cache."""


@cache_group.command("info")
@click.argument("cache_path", metavar="CACHE.h5", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def cache_info(cache_path: str, as_json: bool) -> None:
    """Clips, classes and every feature set with its shape, dtype, done count, fingerprint and config."""
    from mvemo.cache.read import Cache
    from mvemo.pipeline.tables import format_table

    with Cache(cache_path) as cache:
        info = cache.info()
    if as_json:
        print_json(info)
        return
    click.echo(
        f"{cache_path}: {info['clips']} clips, {len(info['classes'])} classes ({', '.join(info['classes'])}), folds {info['folds'] or 'none'}"
    )
    rows = [
        [
            name,
            "x".join(map(str, s["shape"][1:])),
            s["dtype"],
            s["done"],
            s["failed"],
            _megabytes(s["bytes_per_clip"]),
            s["fingerprint"][:12],
            s["extractor"],
        ]
        for name, s in info["feature_sets"].items()
    ]
    click.echo(format_table(["feature set", "row shape", "dtype", "done", "failed", "MB/clip", "fingerprint", "extractor"], rows))


def _megabytes(n: int) -> float:
    return round(n / 1e6, 3)


@cache_group.command("verify")
@click.argument("cache_path", metavar="CACHE.h5", type=click.Path(dir_okay=False))
@click.pass_context
def cache_verify(ctx: click.Context, cache_path: str) -> None:
    """Check every done row (finite, checksum, shape), stale rows and the lock; exit 3 listing problems.

    Clips recorded as failed are listed but are not corruption: they leave the exit code 0.
    """
    from mvemo.cache.verify import verify_cache

    report = verify_cache(cache_path)
    for failure in report.failures:
        click.echo(f"failed (recorded): {failure['feature_set']}, clip {failure['clip_id']!r}: {failure['reason']}")
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    click.echo(
        f"{cache_path}: {report.rows_checked} done rows checked, {len(report.problems)} problems, {len(report.failures)} recorded failures, lock {report.lock}"
    )
    if not report.ok:
        ctx.exit(EXIT_CLIPS_FAILED)
