"""``mvemo demo``: the whole tool on a synthetic set of music videos, nothing downloaded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mvemo.cache.read import Cache
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.features import FeatureConfigs, FeatureRunSummary
from mvemo.extract.frame_sets import FrameConfig
from mvemo.extract.nets import INIT
from mvemo.extract.stage import extract_features
from mvemo.manifests.errors import MediaError
from mvemo.manifests.executor import Executor, Progress, ProgressFactory
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.io import write_manifest
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.schema import Manifest
from mvemo.manifests.synthetic import DEMO_SCALE, DEMO_TAGS, SyntheticConfig, write_synthetic_set
from mvemo.manifests.targets import TARGET_COLUMNS

DEMO_FEATURES = ("mel", "lld", "descriptors", "waveform", "frames112")
DEMO_NETS = ("onedcnn", "twodcnn", "crnn", "c3d", "i3d")
DEMO_FRAMES = 16  # C3D's smallest clip: half of paper 001's 32, half the CPU time
# The demo's videos are 160 x 120: I3D reads C3D's 112 px crops, pooled globally (its reference pooling needs 193 px).
# No weights ship with the demo: it asks for random weights where nets have published ones.
DEMO_NET_OPTIONS = {
    "i3d": {"pool": "global", "frames": "frames112", INIT: "random"},
    "twodcnn": {INIT: "random"},
    "c3d": {INIT: "random"},
}
# Random-init nets enter no default fusion, so the demo names its models.
DEMO_MODELS = ",".join(
    [
        *DEMO_NETS,
        "lldstats",
        "descriptors",
        "c3d+onedcnn",
        "i3d+onedcnn",
        "c3d+twodcnn",
        "i3d+twodcnn",
        f"integrated({','.join(DEMO_NETS)},lldstats,descriptors)",
    ]
)

# The tags and valence/arousal follow from sound and colour (``manifests.synthetic.cue_targets``): the handcrafted
# sets hear the one, C3D's random filters see the other.
DEMO_TARGET_MODELS = "lldstats,descriptors,c3d,late(descriptors,c3d),integrated(lldstats,descriptors,c3d)"
DEMO_TARGETS = {"tags": "tags", "valence,arousal": "valence-arousal"}  # --target -> its report's folder under out
DEMO_TARGET_REPEATS = 3  # every input is used as it is (no fold trained it), so folds can be drawn again


@dataclass(frozen=True)
class DemoResult:
    manifest_path: Path
    manifest: Manifest
    features: FeatureRunSummary
    report: dict[str, Any]
    out: Path
    target_reports: dict[str, dict[str, Any]]


def build_demo_manifest(
    data: Path,
    config: SyntheticConfig,
    *,
    k: int,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Manifest:
    """Generate the synthetic set into ``data`` (on ``executor``'s workers, if given), scan it, keep each clip's drawn
    cues as extra columns and the tags, valence and arousal they imply as targets, assign folds."""
    written = write_synthetic_set(data, config, progress=progress, executor=executor)
    cues = {Path(row.pop("path")).resolve(): row for row in written}
    scanned = scan_tree(data)
    targets = ("label", *TARGET_COLUMNS)
    clips = tuple(
        replace(
            c,
            extra={k: v for k, v in cues[c.video.resolve()].items() if k not in targets},
            **{k: cues[c.video.resolve()][k] for k in TARGET_COLUMNS},
        )
        for c in scanned.clips
        if c.video
    )
    return assign_folds(Manifest(scanned.classes, clips, tags=DEMO_TAGS, scale=DEMO_SCALE), k=k, seed=config.seed)


def demo_configs(duration_s: float) -> FeatureConfigs:
    """The demo's feature configs: every set over the whole clip, and DEMO_FRAMES frames."""
    frames = FrameConfig(n_frames=DEMO_FRAMES, window_duration_s=duration_s)
    return FeatureConfigs.of_window(AudioWindow(duration_s=duration_s), frames=frames)


def run_demo(
    out: str | os.PathLike[str],
    config: SyntheticConfig | None = None,
    *,
    k: int = 6,
    executor: Executor | None = None,
    progress: ProgressFactory = lambda description, unit: None,
    targets: Sequence[str] | None = None,
) -> DemoResult:
    """Data, manifest with folds, stage one into ``out/cache``, stage two into ``out`` (report, PNGs, ``model/``), and
    the reports and saved models of tags and of valence/arousal into ``out/tags`` and ``out/valence-arousal``.

    ``progress(description, unit)`` gives each stage's progress callable (None: silent); ``targets``: the kinds of
    ``DEMO_TARGETS`` run beside the classes (default all, ``()`` for the classes alone)."""
    from mvemo.fuse.stage import FuseSettings, fuse_cache

    config = config or SyntheticConfig()
    out = Path(out)
    manifest = build_demo_manifest(
        out / "data", config, k=k, progress=progress("synthetic videos", "clip"), executor=executor
    )
    path = write_manifest(manifest, out / "manifest.csv")
    cache = out / "cache"
    stage_one = extract_features(
        manifest,
        cache,
        features=DEMO_FEATURES,
        nets=DEMO_NETS,
        configs=demo_configs(config.duration_s),
        net_options=DEMO_NET_OPTIONS,
        executor=executor,
        progress=progress,
    )
    require_clips_left(stage_one.features, len(manifest))
    classes = FuseSettings(models=DEMO_MODELS, executor=executor, progress=progress("fusion heads", "fit"))
    others = replace(classes, models=DEMO_TARGET_MODELS, repeats=DEMO_TARGET_REPEATS, progress=None)
    with Cache(cache) as opened:
        report, _ = fuse_cache(opened, out, classes)
        target_reports = {
            target: fuse_cache(opened, out / folder, replace(others, target=target))[0]
            for target, folder in DEMO_TARGETS.items()
            if targets is None or target in targets
        }
    return DemoResult(path, manifest, stage_one.features, report, out, target_reports)


def require_clips_left(features: FeatureRunSummary, n_clips: int) -> None:
    """Stop the demo before stage two when every clip failed some feature set (a decoder missing from this machine,
    say): the demo's models read every set, so none has a clip to train on, and a demo that trained on nothing must
    not end as if it had worked."""
    failed = {clip_id: reason for reasons in features.failures.values() for clip_id, reason in reasons.items()}
    if len(failed) == n_clips:
        reason = next(iter(failed.values()))
        raise MediaError(
            f"stage one failed each of the {n_clips} synthetic clips in some feature set"
            f" ({', '.join(features.failures)}), so stage two was not run; the first: {reason}"
        )
