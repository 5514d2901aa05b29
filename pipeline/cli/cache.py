"""``mvemo cache info|verify|import|migrate|gc``: what a cache holds, whether it is sound, features of your own."""

from __future__ import annotations

import click

from mvemo.pipeline.cli.tools import EXIT_CLIPS_FAILED, MvemoGroup, print_json


@click.group("cache", cls=MvemoGroup)
def cache_group() -> None:
    """Inspect and verify an HDF5 feature cache."""


@cache_group.command("info")
@click.argument("cache_path", metavar="CACHE", type=click.Path())
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
        f"{cache_path}: {info['clips']} clips, {len(info['classes'])} classes ({', '.join(info['classes'])}),"
        f" folds {info['folds'] or 'none'}"
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
    click.echo(
        format_table(
            ["feature set", "row shape", "dtype", "done", "failed", "MB/clip", "fingerprint", "extractor"], rows
        )
    )


def _megabytes(n: int) -> float:
    return round(n / 1e6, 3)


@cache_group.command("verify")
@click.argument("cache_path", metavar="CACHE", type=click.Path())
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
        f"{cache_path}: {report.rows_checked} done rows checked, {len(report.problems)} problems,"
        f" {len(report.failures)} recorded failures, lock {report.lock}"
    )
    if not report.ok:
        ctx.exit(EXIT_CLIPS_FAILED)


@cache_group.command("migrate")
@click.argument("cache_path", metavar="CACHE", type=click.Path())
def cache_migrate(cache_path: str) -> None:
    """Convert a single-file cache of an earlier mvemo version into a cache folder of the same name, in place.

    Every set keeps its rows, checksums, failures and fingerprint (nothing is computed
    again). The old file is kept as CACHE.single-file.h5: delete it once the new cache
    is checked (`mvemo cache verify CACHE`).
    """
    from mvemo.cache.maintain import migrate
    from mvemo.cache.read import Cache

    backup = migrate(cache_path)
    with Cache(cache_path) as cache:
        sets = cache.feature_sets()
        click.echo(
            f"{cache_path}: a cache folder now, {len(cache)} clips, {len(sets)} feature sets; the old file is {backup}"
        )


@cache_group.command("import")
@click.argument("cache_path", metavar="CACHE", type=click.Path())
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--set", "name", required=True, help="Name of the new set, an input of --models by that name (e.g. panda_top100)."
)
@click.option(
    "--key",
    default=None,
    help="Column of FILE.csv (array of FILE.npz) holding each row's clip id, or the clip's file stem."
    "  [default: the first column; an .npz's clip_id]",
)
def cache_import(cache_path: str, file: str, name: str, key: str | None) -> None:
    """Import features of your own: one row per clip of FILE becomes the vector set NAME, fused like any input.

    FILE is a CSV (a key column, then a column per feature, named in its header) or a NumPy .npz (arrays clip_id,
    features of a row per id, and optionally columns, their names). Every clip of the cache needs exactly one row,
    and every value must be a finite number: anything else is refused whole, naming the rows and clips. The file's
    sha256 is the set's fingerprint and every report names it.
    """
    from mvemo.cache.imported import import_vectors
    from mvemo.cache.layout import VIDEO_SETS
    from mvemo.extract.audio import audio_features
    from mvemo.extract.features import FEATURE_GROUPS
    from mvemo.extract.nets import NET_NAMES
    from mvemo.fuse.models import LLDSTATS, NAMED_MODELS

    taken = {*audio_features(), *VIDEO_SETS, *FEATURE_GROUPS, *NET_NAMES, LLDSTATS, *NAMED_MODELS}
    done = import_vectors(cache_path, name, file, key, taken=taken)
    click.echo(
        f"{cache_path}: set {done['set']!r}, {done['columns']} columns for {done['clips']} clips from {done['file']}"
        f" (sha256 {done['sha256'][:12]}); fuse it with e.g. `mvemo-cv --cache {cache_path} --models {done['set']}`"
    )


@cache_group.command("gc")
@click.argument("cache_path", metavar="CACHE", type=click.Path())
@click.option(
    "--features",
    default=None,
    help="Feature sets to keep, as `mvemo extract --features` names them.  [default: as extract]",
)
@click.option("--nets", default=None, help="Comma-separated nets whose embeddings (and checkpoints) to keep.")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="The TOML file extract used ([net.<name>] inputs).",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed, remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def cache_gc(
    cache_path: str, features: str | None, nets: str | None, config_path: str | None, dry_run: bool, as_json: bool
) -> None:
    """Remove the sets a `mvemo extract` with these options no longer writes, and report the bytes freed.

    Kept: the feature sets of --features and the nets' inputs, every embedding set
    (emb/<net>/...) and checkpoint of the --nets, and every set of `mvemo cache import`
    (no extract writes it; importing it again replaces it). Also removed: files killed writers left.
    """
    from mvemo.cache.imported import imported_set_names
    from mvemo.cache.lock import CacheLock
    from mvemo.cache.maintain import collect_garbage
    from mvemo.extract.stage import feature_names
    from mvemo.pipeline.cli.extract import names
    from mvemo.pipeline.config import net_config

    kept_nets = names(nets)
    kept = set(feature_names(features, kept_nets, net_config(config_path)))
    prefixes = tuple(f"emb/{net}/" for net in kept_nets)
    with CacheLock(cache_path) as lock:
        kept |= imported_set_names(cache_path)
        report = collect_garbage(
            cache_path, lambda name: name in kept or name.startswith(prefixes), dry_run=dry_run, lock=lock
        )
        report["leftovers"] |= _unused_checkpoints(cache_path, kept_nets, dry_run)
    report["freed_bytes"] = sum(report["removed"].values()) + sum(report["leftovers"].values())
    if as_json:
        print_json(report | {"dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    for name, size in report["removed"].items():
        click.echo(f"{verb} set {name} ({_megabytes(size)} MB)")
    for path, size in report["leftovers"].items():
        click.echo(f"{verb} {path} ({_megabytes(size)} MB)")
    click.echo(f"{cache_path}: {_megabytes(report['freed_bytes'])} MB {'would be ' if dry_run else ''}freed")


def _unused_checkpoints(cache_path: str, nets: tuple[str, ...], dry_run: bool) -> dict[str, int]:
    """The fine-tuning checkpoints of nets not kept: {folder: bytes}, removed unless ``dry_run``."""
    import shutil

    from mvemo.extract.finetune.jobs import checkpoint_dir

    folder = checkpoint_dir(cache_path)
    unused = [d for d in folder.iterdir() if d.is_dir() and d.name not in nets] if folder.is_dir() else []
    sizes = {str(d): sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) for d in unused}
    if not dry_run:
        for d in unused:
            shutil.rmtree(d)
    return sizes
