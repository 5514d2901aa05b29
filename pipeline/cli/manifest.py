"""``mvemo manifest scan|folds|check``: build, split and check the clip table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mvemo.pipeline.cli.tools import EXIT_CLIPS_FAILED, MvemoGroup, print_json, progress_bar


@click.group("manifest", cls=MvemoGroup)
def manifest_group() -> None:
    """Build, split and check the clip table (CSV or JSONL)."""


@manifest_group.command("scan")
@click.argument("root", type=click.Path(file_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Manifest to write (.csv or .jsonl)."
)
@click.option(
    "--group-regex",
    default=None,
    help="Regular expression removed from the end of each path (without extension) to form its group; "
    "segments of one video then share a fold.  [default: '[-_ ]\\d+[-_ ]of[-_ ]\\d+$', e.g. '-7-of-10']",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV of each clip's targets (columns label, tags, valence, arousal, those it has);"
    " ROOT's layout then carries no class.",
)
@click.option(
    "--key", default="clip_id", show_default=True, help="Column of --labels holding each clip's id or file stem."
)
@click.option("--scale", default=None, help="Low and high end of the valence/arousal scale, e.g. 1,9.")
def manifest_scan(
    root: str, output: str, group_regex: str | None, labels: str | None, key: str, scale: str | None
) -> None:
    """Build a manifest from ROOT/<class>/**/<media file>, or from any layout with --labels.

    A video file gives both modalities, an audio file audio only; a video and an
    audio file with the same stem make one clip. Paths are written relative to
    the manifest's folder. With --labels, every media file needs a row there, and
    an unknown tag or a missing value stops the scan naming the clip.
    """
    from mvemo.manifests.io import write_manifest
    from mvemo.manifests.scan import DEFAULT_GROUP_REGEX, scan_labelled, scan_tree

    regex = group_regex or DEFAULT_GROUP_REGEX
    if labels is None:
        found = scan_tree(root, group_regex=regex)
    else:
        found = scan_labelled(root, labels, key=key, group_regex=regex, scale=_scale(scale))
    write_manifest(found, output)
    click.echo(f"wrote {output}: {len(found)} clips, {_targets(found)}, {len(set(found.groups))} groups")


def _scale(text: str | None) -> tuple[float, float] | None:
    from mvemo.manifests.errors import ConfigError
    from mvemo.manifests.targets import parse_scale

    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--scale {text!r}: expected the low and high end, e.g. 1,9") from None
    return parse_scale(values, where="--scale")


def _targets(found: Any) -> str:
    """The manifest's targets in a few words: its classes with their clips, its tags, its values."""
    import numpy as np

    parts = []
    if found.classes:
        counts = np.bincount(found.y, minlength=len(found.classes)).tolist()
        parts.append(f"{len(found.classes)} classes ({', '.join(f'{c} {n}' for c, n in zip(found.classes, counts))})")
    if found.tags:
        counts = found.tag_matrix.sum(axis=0).tolist()
        parts.append(f"{len(found.tags)} tags ({', '.join(f'{t} {n}' for t, n in zip(found.tags, counts))})")
    if found.value_names:
        parts.append(f"{' and '.join(found.value_names)} on the scale {list(found.scale)}")
    return "; ".join(parts)


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
    "--group-repeats",
    is_flag=True,
    help="Find the recordings the manifest holds more than once (near-identical sound) and keep each in one fold:"
    " their groups are joined, the pairs listed on the terminal and in MANIFEST's <stem>.repeats.csv.",
)
@click.option(
    "--repeat-threshold",
    default=None,
    type=click.FloatRange(0.0, 1.0),
    help="The similarity of two clips' sound at and above which --group-repeats takes them for one recording."
    "  [default: 0.98, between musemo's repeated jazz pairs (0.9986 and above) and every other pair (at most 0.955)]",
)
@click.option(
    "--keep/--reshuffle",
    default=True,
    help="Keep every fold the manifest has and give only the clips without one a fold (new clips), or draw all anew.",
)
def manifest_folds(
    manifest_path: str,
    k: int | None,
    seed: int,
    group_by: str | None,
    group_repeats: bool,
    repeat_threshold: float | None,
    keep: bool,
) -> None:
    """Write stratified folds that never split a group into MANIFEST's 'fold' column.

    Clips added to a manifest with folds (their 'fold' empty) join their group's fold,
    or the fold that keeps the classes most even; no clip that had a fold moves, so a
    cache's per-fold embeddings stay valid and only the new clips are computed.

    With --group-repeats every clip's sound is compared with every other's (the first 30 s of each, as a
    fingerprint of its mel spectrogram): a pair at or above --repeat-threshold is one recording, and its groups join
    (after --group-by).
    """
    from mvemo.manifests.errors import ConfigError
    from mvemo.manifests.folds import assign_folds, fold_table, stratum_kind
    from mvemo.manifests.io import read_manifest, write_manifest
    from mvemo.pipeline.tables import format_table

    if repeat_threshold is not None and not group_repeats:
        raise ConfigError("--repeat-threshold is the threshold of --group-repeats: add --group-repeats or leave it out")
    before = read_manifest(manifest_path, partial_folds=True)
    new = sum(c.fold is None for c in before.clips)
    together = _repeats(before, manifest_path, repeat_threshold) if group_repeats else []
    split = assign_folds(before, k=k, seed=seed, group_by=group_by, together=together, keep=keep)
    write_manifest(split, manifest_path)
    table = fold_table(split)
    rows = [[f"fold {i}", *row.tolist(), int(row.sum())] for i, row in enumerate(table)]
    click.echo(format_table(["", *split.strata_names, "total"], rows))
    every = bool((table > 0).all())
    kept = keep and new < len(before)
    how = (
        f"kept the folds of {len(before) - new} clips, folded in {new} new"
        if kept
        else f"{split.n_folds} folds (seed {seed})"
    )
    grouped = f", groups from column {group_by!r} written into 'group'" if group_by else ""
    click.echo(
        f"wrote {manifest_path}: {how}; {len(split)} clips in {len(set(split.groups))} groups{grouped},"
        f" {'every stratum in every fold' if every else 'SOME FOLD LACKS A STRATUM'} ({stratum_kind(split)})"
    )


def _repeats(manifest: Any, manifest_path: str, threshold: float | None) -> list[tuple[int, int]]:
    """The pairs of ``manifest``'s clips that are one recording (``extract.repeats``), said on the terminal and written
    beside the manifest as ``<stem>.repeats.csv``; a clip whose sound cannot be read is listed and compared with
    none."""
    import csv

    from mvemo.extract.repeats import REPEAT_THRESHOLD, repeated_clips

    def unreadable(clip: Any, error: Exception) -> None:
        click.echo(f"--group-repeats: {clip.clip_id} is compared with no clip: {error}", err=True)

    threshold = REPEAT_THRESHOLD if threshold is None else threshold
    clips = progress_bar("fingerprints", "clip")(manifest.clips, len(manifest.clips))
    pairs = repeated_clips(clips, threshold=threshold, unreadable=unreadable)
    report = Path(manifest_path).with_suffix(".repeats.csv")
    with open(report, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_a", "clip_b", "similarity"])
        writer.writerows([manifest.clips[a].clip_id, manifest.clips[b].clip_id, f"{s:.4f}"] for a, b, s in pairs)
    for a, b, similarity in pairs:
        click.echo(f"one recording: {manifest.clips[a].clip_id} and {manifest.clips[b].clip_id} ({similarity:.4f})")
    click.echo(f"{len(pairs)} pair(s) of clips at or above similarity {threshold:g} share a fold ({report})")
    return [(a, b) for a, b, _ in pairs]


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
    from mvemo.manifests.io import read_manifest
    from mvemo.manifests.probe import check_clip
    from mvemo.pipeline.tables import format_table

    clips = read_manifest(manifest_path, check_files=False)
    if clips.has_folds:
        require_whole_groups(clips.folds, clips.groups, clips.clip_ids, where=manifest_path)
    probed: dict[Any, Any] = {}
    found = progress_bar("probing", "clip", leave=False)(clips.clips, len(clips))
    reports = [check_clip(c, probed, values=clips.value_names, scale=clips.scale) for c in found]
    failed = [r for r in reports if not r.ok]
    if as_json:
        print_json({"clips": len(reports), "problems": len(failed), "reports": [r.to_json() for r in reports]})
    else:
        rows = [
            [
                r.clip_id,
                "ok" if r.ok else "PROBLEM",
                round(r.duration_s, 2),
                _describe_audio(r.audio),
                _describe_video(r.video),
            ]
            for r in reports
        ]
        click.echo(format_table(["clip", "status", "dur s", "audio", "video"], rows))
        for r in failed:
            for problem in r.problems:
                click.echo(f"problem: clip {r.clip_id!r}: {problem}", err=True)
        click.echo(
            f"{len(reports)} clips ({_targets(clips)}): {len(reports) - len(failed)} ok, {len(failed)} with problems"
        )
    if failed:
        ctx.exit(EXIT_CLIPS_FAILED)


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
