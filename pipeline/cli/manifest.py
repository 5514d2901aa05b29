"""``mvemo manifest scan|folds|check``: build, split and check the clip table."""

from __future__ import annotations

from typing import Any

import click

from mvemo.pipeline.cli.tools import EXIT_CLIPS_FAILED, MvemoGroup, print_json, progress_bar


@click.group("manifest", cls=MvemoGroup)
def manifest_group() -> None:
    """Build, split and check the clip table (CSV or JSONL)."""


@manifest_group.command("scan")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Manifest to write (.csv or .jsonl).")
@click.option(
    "--group-regex",
    default=None,
    help="Regular expression removed from the end of each path (without extension) to form its group; "
    "segments of one video then share a fold.  [default: '[-_ ]\\d+[-_ ]of[-_ ]\\d+$', e.g. '-7-of-10']",
)
def manifest_scan(root: str, output: str, group_regex: str | None) -> None:
    """Build a manifest from ROOT/<class>/**/<media file>.

    A video file gives both modalities, an audio file audio only; a video and an
    audio file with the same stem make one clip. Paths are written relative to
    the manifest's folder.
    """
    from mvemo.manifests.scan import DEFAULT_GROUP_REGEX, scan_tree
    from mvemo.manifests.schema import write_manifest

    found = scan_tree(root, group_regex=group_regex or DEFAULT_GROUP_REGEX)
    write_manifest(found, output)
    counts = ", ".join(f"{name} {n}" for name, n in zip(found.classes, _class_counts(found)))
    groups = len(set(found.groups))
    click.echo(f"wrote {output}: {len(found)} clips in {len(found.classes)} classes ({counts}), {groups} groups")


@manifest_group.command("folds")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option("--k", "k", default=None, type=int, help="Number of folds.  [default: the manifest's, else 6]")
@click.option("--seed", default=0, type=int, help="Seed of the shuffle; the same seed gives the same folds.")
@click.option(
    "--group-by",
    default=None,
    help="Column whose equal values share a fold, written into the 'group' column that every later split keeps whole."
    "  [default: the 'group' column]",
)
@click.option(
    "--keep/--reshuffle",
    default=True,
    help="Keep every fold the manifest has and give only the clips without one a fold (new clips), or draw all anew.",
)
def manifest_folds(manifest_path: str, k: int | None, seed: int, group_by: str | None, keep: bool) -> None:
    """Write stratified folds that never split a group into MANIFEST's 'fold' column.

    Clips added to a manifest with folds (their 'fold' empty) join their group's fold,
    or the fold that keeps the classes most even; no clip that had a fold moves, so a
    cache's per-fold embeddings stay valid and only the new clips are computed.
    """
    from mvemo.manifests.folds import assign_folds, fold_table
    from mvemo.manifests.schema import read_manifest, write_manifest
    from mvemo.pipeline.tables import format_table

    before = read_manifest(manifest_path, partial_folds=True)
    new = sum(c.fold is None for c in before.clips)
    split = assign_folds(before, k=k, seed=seed, group_by=group_by, keep=keep)
    write_manifest(split, manifest_path)
    table = fold_table(split)
    rows = [[f"fold {i}", *row.tolist(), int(row.sum())] for i, row in enumerate(table)]
    click.echo(format_table(["", *split.classes, "total"], rows))
    every = bool((table > 0).all())
    kept = keep and new < len(before)
    how = f"kept the folds of {len(before) - new} clips, folded in {new} new" if kept else f"{split.n_folds} folds (seed {seed})"
    grouped = f", groups from column {group_by!r} written into 'group'" if group_by else ""
    click.echo(
        f"wrote {manifest_path}: {how}; {len(split)} clips in {len(set(split.groups))} groups{grouped},"
        f" {'every class in every fold' if every else 'SOME FOLD LACKS A CLASS'}"
    )


@manifest_group.command("check")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of a table.")
@click.pass_context
def manifest_check(ctx: click.Context, manifest_path: str, as_json: bool) -> None:
    """Open every media file of MANIFEST and report its streams and problems.

    Exits 3 when any clip has a problem (missing or undecodable file, a promised
    modality missing, zero duration), listing every one; exits 2 before probing
    when the folds split a group.
    """
    from mvemo.manifests.folds import require_whole_groups
    from mvemo.manifests.probe import check_clip
    from mvemo.manifests.schema import read_manifest
    from mvemo.pipeline.tables import format_table

    clips = read_manifest(manifest_path, check_files=False)
    if clips.has_folds:
        require_whole_groups(clips.folds, clips.groups, clips.clip_ids, where=manifest_path)
    probed: dict[Any, Any] = {}
    reports = [check_clip(c, probed) for c in progress_bar("probing", "clip", leave=False)(clips.clips, len(clips))]
    failed = [r for r in reports if not r.ok]
    if as_json:
        print_json({"clips": len(reports), "problems": len(failed), "reports": [r.to_json() for r in reports]})
    else:
        rows = [
            [r.clip_id, "ok" if r.ok else "PROBLEM", round(r.duration_s, 2), _describe_audio(r.audio), _describe_video(r.video)]
            for r in reports
        ]
        click.echo(format_table(["clip", "status", "dur s", "audio", "video"], rows))
        for r in failed:
            for problem in r.problems:
                click.echo(f"problem: clip {r.clip_id!r}: {problem}", err=True)
        click.echo(
            f"{len(reports)} clips in {len(clips.classes)} classes: {len(reports) - len(failed)} ok, {len(failed)} with problems"
        )
    if failed:
        ctx.exit(EXIT_CLIPS_FAILED)


def _class_counts(found: Any) -> list[int]:
    import numpy as np

    return np.bincount(found.y, minlength=len(found.classes)).tolist()


def _describe_audio(info: Any) -> str:
    if info is None:
        return "-"
    return f"{info.codec} {info.sample_rate_hz} Hz {info.channels} ch"


def _describe_video(info: Any) -> str:
    if info is None:
        return "-"
    approx = "~" if info.frame_count_estimated else ""
    rotation = f" rot {info.rotation_deg}" if info.rotation_deg else ""
    return f"{info.codec} {info.width}x{info.height} {info.fps:g} fps {approx}{info.frame_count} fr{rotation}"
