"""Stage one as one library function: features, then each net's embeddings (as they are, or fine-tuned), into the cache.

``mvemo extract`` parses its options, calls :func:`extract_features` and prints
what it returns; a notebook or a cluster job calls the same function.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mvemo.cache.handle import CacheHandle
from mvemo.cache.lock import CacheLock
from mvemo.extract.embed import export_embeddings, input_kinds
from mvemo.extract.features import (
    FEATURE_GROUPS,
    FeatureConfigs,
    FeatureRunSummary,
    compute_feature_sets,
    parse_features,
)
from mvemo.extract.finetune.train import TrainConfig
from mvemo.extract.finetune.units import UnitSummary, finetune_embeddings
from mvemo.extract.forward import resolve_device
from mvemo.extract.nets import base_name, expand_nets, require_trainable
from mvemo.extract.overlap import EmbeddingsAlongside
from mvemo.extract.windows.cache import check_windowing, pool_windows, write_times
from mvemo.extract.windows.plan import WindowConfig, plan_clips, window_cache
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor, ProgressFactory
from mvemo.manifests.folds import require_whole_groups
from mvemo.manifests.io import read_manifest
from mvemo.manifests.schema import Manifest

DEFAULT_FEATURES = ("mel", "lld", "descriptors")


@dataclass(frozen=True)
class StageTime:
    """One stage of a run: its name, wall seconds and what it did."""

    stage: str
    seconds: float
    what: str


@dataclass
class StageOneSummary:
    """What a stage-one run did.

    Attributes
    ----------
    features : FeatureRunSummary
        Per feature set: rows done, computed now, failed (clip -> reason), absent.
    embeddings : dict of str to int
        Per embedding set (``emb/<net>/all``, ``emb/<net>/fold<k>``): clips done.
    failed_embeddings : dict of str to dict of str to str
        Per embedding set: clip id -> reason.
    units : list of UnitSummary
        The fine-tuning units (empty when the nets ran as they are).
    notes : list of str
        One line per net: the weights it started from.
    stages : list of StageTime
    pooled : dict of str to int
        With windows: per clip-level set pooled from the window cache, clips done.
    failed_pooled : dict of str to dict of str to str
        With windows: per pooled set, clip id -> reason.
    """

    features: FeatureRunSummary
    embeddings: dict[str, int] = field(default_factory=dict)
    failed_embeddings: dict[str, dict[str, str]] = field(default_factory=dict)
    units: list[UnitSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stages: list[StageTime] = field(default_factory=list)
    pooled: dict[str, int] = field(default_factory=dict)
    failed_pooled: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether any clip (or window) failed a feature set, an embedding or a pooled set."""
        failures = (self.failed_embeddings, self.failed_pooled)
        return bool(self.features.failures) or any(reasons for failed in failures for reasons in failed.values())


def feature_names(
    features: str | Iterable[str] | None, nets: Iterable[str], net_options: Mapping[str, Mapping[str, Any]] = {}
) -> tuple[str, ...]:
    """The feature sets a run computes: those asked for, then the nets' inputs.

    ``features`` None (or empty) means the nets' inputs alone, or ``mel, lld, descriptors`` without nets;
    ``frames`` stands for ``frames224, frames112``.
    """
    nets = tuple(nets)
    if not features:
        features = () if nets else DEFAULT_FEATURES
    asked = parse_features(features if isinstance(features, str) else ",".join(features)) if features else ()
    return tuple(dict.fromkeys([*asked, *input_kinds(nets, net_options)]))


def extract_features(
    manifest: Manifest | str | os.PathLike[str],
    cache_path: str | os.PathLike[str],
    *,
    features: str | Iterable[str] | None = None,
    nets: Iterable[str] = (),
    training: TrainConfig | None = None,
    protocol: str = "leakfree",
    configs: FeatureConfigs | None = None,
    windows: WindowConfig | None = None,
    net_options: Mapping[str, Mapping[str, Any]] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    recompute: Iterable[str] = (),
    executor: Executor | None = None,
    overlap: bool | None = None,
    lock: CacheLock | None = None,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> StageOneSummary:
    """Stage one: every clip's feature sets, then each net's embeddings, into the cache at ``cache_path``.

    Resumable: rows already done with the same config are skipped, and a changed
    media file is computed again. A clip that fails is recorded with its reason
    and the run goes on (``StageOneSummary.failed``).

    Parameters
    ----------
    manifest : Manifest or path-like
        The clip table; nets need its folds (``mvemo manifest folds``).
    cache_path : path-like
        The cache folder to create or complete.
    features : str or iterable of str, optional
        Feature sets (``waveform, mel, lld, frames224, frames112``; ``frames`` for both).
        Default: the nets' inputs, or ``mel, lld`` without nets.
    nets : iterable of str
        Nets whose embeddings to write (``onedcnn, twodcnn, crnn, c3d, i3d, ...``).
    training : TrainConfig, optional
        Fine-tune the nets (``emb/<net>/fold<k>`` per fold, then ``emb/<net>/all``);
        None runs them as they are (``emb/<net>/all``).
    protocol : {"leakfree", "paper"}
        With ``training``: per fold without its test clips, or once on all clips (paper 001).
    configs : FeatureConfigs, optional
        The feature sets' configs; the papers' settings by default.
    windows : WindowConfig, optional
        ``[clip]``: with ``windows`` true, every file is read whole, in windows of ``[audio] duration_s`` every
        ``hop_s``; every set of every window goes into the window cache (``CACHE/windows``) and each vector set,
        pooled over a clip's windows, into the cache (``extract.windows.cache``).
    net_options : mapping, optional
        Each net's options (a config file's ``[net.<name>]``); default ``training.net_options``.
    weights_dir : path-like, optional
        Where pretrained weights lie (also ``$MVEMO_WEIGHTS``, ``~/.cache/mvemo/weights``).
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
    recompute : iterable of str
        Sets to start over, e.g. after changing their config.
    executor : Executor, optional
        Where clips and batches are computed (serial by default). Fine-tuning units
        fan out only over workers with devices of their own (``own_devices``).
    overlap : bool, optional
        Without ``training``: run the nets in this process on the clips the executor returns while it decodes later
        ones (``extract.overlap``), not after every clip is decoded. Default: where the nets run on a GPU (``device``)
        and the executor's workers have no devices of their own.
    lock : CacheLock, optional
        The cache's writer lock, when the caller already holds it.
    progress : callable, optional
        ``progress(description, unit)`` gives each phase's progress wrapper (a bar).
    log : callable, optional
        Receives one line per fine-tuned unit.
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    nets = expand_nets(tuple(nets))
    if training is not None:
        require_trainable(nets, f"--finetune {training.finetune}")
    if nets and not manifest.has_folds:
        raise ConfigError("nets need the manifest's folds; run `mvemo manifest folds MANIFEST --k 6` first")
    if manifest.has_folds:
        require_whole_groups(manifest.folds, manifest.groups, manifest.clip_ids, where="the manifest")
    require_variant_tables(nets, net_options if net_options is not None else training.net_options if training else {})
    configs = (configs or FeatureConfigs()).with_weights_dir(weights_dir)
    if net_options is None:
        net_options = training.net_options if training is not None else {}
    sets = feature_names(features, nets, net_options)
    run = StageOneRun(
        nets=nets,
        sets=sets,
        training=training,
        protocol=protocol,
        configs=configs,
        net_options=net_options,
        weights_dir=weights_dir,
        device=device,
        recompute=recomputed_sets(recompute, sets, nets),
        executor=executor,
        overlap=bool(nets) and training is None and overlapped(overlap, device, executor),
        progress=progress or (lambda description, unit: None),
        log=log,
    )
    windows = windows or WindowConfig()
    with CacheHandle(cache_path, manifest, lock=lock) as cache:  # the cache, opened once for the stage
        check_windowing(cache, windowed=windows.windows)  # these two before anything is written
        if windows.windows:
            check_window_configs(configs, windows)
            return _extract_windows(run, manifest, cache, windows)
        return _extract_clips(run, manifest, cache)


def recomputed_sets(recompute: str | Iterable[str], sets: tuple[str, ...], nets: tuple[str, ...]) -> tuple[str, ...]:
    """The sets ``--recompute`` starts over (its values comma-separated, or repeated): each name one this run writes,
    a feature set or a net's ``emb/<net>/...``, or a group (``frames``, ``faces``) standing for those of its sets the
    run writes."""
    items = [recompute] if isinstance(recompute, str) else recompute
    net_sets = tuple(f"emb/{net}/" for net in nets)
    chosen: list[str] = []
    for name in (n.strip() for item in items for n in item.split(",") if n.strip()):
        members = [m for m in FEATURE_GROUPS.get(name, (name,)) if m in sets or m.startswith(net_sets)]
        if not members:
            written = [*sets, *(f"emb/{net}/all" for net in nets)]
            raise ConfigError(
                f"--recompute {name}: this run writes no set of that name; it writes {', '.join(written) or 'none'}"
                " (name the set with --features or its net with --nets in the same run)"
            )
        chosen += members
    return tuple(dict.fromkeys(chosen))


def overlapped(overlap: bool | None, device: str, executor: Executor | None) -> bool:
    """Whether the nets embed clips alongside decoding: as asked, else where they run on a GPU of this process."""
    if overlap is not None:
        return overlap
    return resolve_device(device).type != "cpu" and not getattr(executor, "own_devices", False)


@dataclass(frozen=True)
class StageOneRun:
    """What one ``extract_features`` call computes, and with what: its arguments, resolved, passed down as one."""

    nets: tuple[str, ...]
    sets: tuple[str, ...]
    training: TrainConfig | None
    protocol: str
    configs: FeatureConfigs
    net_options: Mapping[str, Mapping[str, Any]]
    weights_dir: str | os.PathLike[str] | None
    device: str
    recompute: tuple[str, ...]
    executor: Executor | None
    overlap: bool
    progress: ProgressFactory
    log: Callable[[str], None]


def _extract_windows(
    run: StageOneRun, manifest: Manifest, cache: CacheHandle, windows: WindowConfig
) -> StageOneSummary:
    """Stage one over whole files: every window's sets into the window cache, then each clip's pooled vectors."""
    length_s = run.configs.audio_window.duration_s
    began = time.perf_counter()
    plan = plan_clips(manifest, length_s=length_s, hop_s=windows.hop_s)
    planned = StageTime("windows", time.perf_counter() - began, f"{len(plan.windows)} windows of {len(manifest)} clips")
    with CacheHandle(window_cache(cache.path), plan.manifest) as windows_cache:
        summary = _extract_clips(run, plan.manifest, windows_cache, offsets=plan.offsets())
        began = time.perf_counter()
        write_times(plan, windows_cache, length_s=length_s, hop_s=windows.hop_s)
        pooled = pool_windows(plan, windows_cache.reopen(), cache, windows, length_s=length_s)
    summary.pooled, summary.failed_pooled = pooled.done, pooled.failed
    summary.stages.insert(0, planned)
    summary.stages.append(
        StageTime("pooling", time.perf_counter() - began, f"{windows.pooling} of {len(pooled.done)} sets")
    )
    return summary


def require_variant_tables(nets: Iterable[str], net_options: Mapping[str, Mapping[str, Any]]) -> None:
    """A net variant (``musicnn.taggram``) is defined by its config table; without one it would be its net again."""
    for net in nets:
        base_name(net)  # an unknown net raises
        if "." in net and net not in net_options:
            base, variant = net.split(".", 1)
            raise ConfigError(
                f"--nets {net}: no [net.{base}.{variant}] table in --config defines that variant of {base};"
                f' add one (e.g. [net.{base}.{variant}] layer = "...") or name {base} alone'
            )


def check_window_configs(configs: FeatureConfigs, windows: WindowConfig) -> None:
    """Windows start at 0 and every set, frames included, reads the same window: refuse what says otherwise."""
    audio, frames = configs.audio_window, configs.frames
    if audio.offset_s:
        raise ConfigError(
            f"[clip] windows = true reads each file whole from 0 s; [audio] offset_s = {audio.offset_s} has no"
            " meaning there: drop it"
        )
    if frames.window_start_s or frames.window_duration_s != audio.duration_s:
        raise ConfigError(
            f"[clip] windows = true: the frames read each window's seconds, so [frames] window_start_s ="
            f" {frames.window_start_s} and window_duration_s = {frames.window_duration_s} must be 0 and [audio]"
            f" duration_s = {audio.duration_s}: drop them from [frames]"
        )
    if windows.hop_s > audio.duration_s:
        raise ConfigError(
            f"[clip] hop_s = {windows.hop_s} is longer than the {audio.duration_s}-s window: seconds between windows"
            " would be left out; give a hop of at most [audio] duration_s"
        )


def _extract_clips(
    run: StageOneRun, manifest: Manifest, cache: CacheHandle, *, offsets: Mapping[str, float] | None = None
) -> StageOneSummary:
    """Features, then embeddings, of every row of ``manifest`` (clips, or the windows of ``offsets``); with
    ``run.overlap``, the embeddings of the clips decoded now alongside their decoding."""
    bar, nets, executor = run.progress, run.nets, run.executor
    alongside = EmbeddingsAlongside(  # started by the first clip it takes: only with run.overlap
        cache,
        nets,
        weights_dir=run.weights_dir,
        net_options=run.net_options,
        recompute=run.recompute,
        device=run.device,
    )
    began = time.perf_counter()
    with alongside:
        features = compute_feature_sets(
            manifest,
            cache,
            run.sets,
            configs=run.configs,
            recompute=run.recompute,
            executor=executor,
            progress=bar("features", "clip"),
            offsets=offsets,
            alongside=alongside if run.overlap else None,
        )
    summary = StageOneSummary(features)
    computed = sum(s.computed for s in features.sets.values())
    failed = sum(map(len, features.failures.values()))
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in features.steps.items() if seconds >= 0.05)
    what = f"{computed} rows computed, {failed} failed" + (f" (steps summed over the clips: {steps})" if steps else "")
    if alongside.sets:
        what += "; " + ", ".join(f"{n} rows of {name} embedded alongside" for name, n in alongside.embedded.items())
    summary.stages.append(StageTime("features", time.perf_counter() - began, what))  # and the nets alongside
    if not nets:
        return summary
    began = time.perf_counter()
    if run.training is None:
        embedded = export_embeddings(
            cache,
            nets,
            weights_dir=run.weights_dir,
            recompute=run.recompute,
            device=run.device,
            net_options=run.net_options,
            executor=None
            if executor is None or getattr(executor, "in_process", False) or run.overlap
            else executor,  # in process: batches stream
            progress=lambda net: bar(f"embeddings of {net}", "batch"),
            built=alongside.sets,
        )
        summary.notes += alongside.notes + embedded.notes
        summary.embeddings = {f"emb/{net}/all": n for net, n in embedded.done.items()}
        summary.failed_embeddings = {f"emb/{net}/all": reasons for net, reasons in embedded.failed.items()}
        summary.stages.append(StageTime("embeddings", time.perf_counter() - began, f"{len(nets)} nets, as they are"))
        return summary
    tuned = finetune_embeddings(
        cache,
        nets,
        run.training,
        protocol=run.protocol,
        weights_dir=run.weights_dir,
        device=run.device,
        recompute=run.recompute,
        executor=executor if getattr(executor, "own_devices", False) else None,  # local units share one device
        log=run.log,
        progress=lambda phase: bar(phase, "unit"),
    )
    summary.notes += tuned.notes
    summary.units = tuned.units
    reader = cache.reopen()
    failures = reader.failures()
    sets = [name for name in reader.feature_sets() if name.startswith(tuple(f"emb/{n}/" for n in nets))]
    summary.embeddings = {name: int(reader.done(name).sum()) for name in sets}
    summary.failed_embeddings = {
        name: {f["clip_id"]: f["reason"] for f in failures if f["feature_set"] == name} for name in sets
    }
    summary.stages.append(
        StageTime("fine-tuning", time.perf_counter() - began, f"{run.training.finetune}, {run.protocol}")
    )
    return summary
