"""User config files (TOML) turned into validated config dataclasses.

A file may hold the tables ``[audio]`` (``offset_s``, ``duration_s``: the window every audio feature analyses;
``timeout_s``: how long one clip's audio may take to decode), one table per audio set (``[mel]``, ``[logmel]``,
``[lld]``, ``[waveform]``, ``[audio48k]``, ``[descriptors]``, ``[expressive]``, ``[egemaps]``, ``[compare]``) and
``[frames]`` (``extract.frame_sets.FrameConfig``), each overriding the defaults of its dataclass. ``[train]``
(``extract.finetune.train.TrainConfig``: ``max_epochs``, ``patience``, ``batch_size``, ``validation_share``, ``seed``)
and ``[optim.<net>]`` (``name``, ``lr``, ``momentum``) set fine-tuning. ``[net.<name>]`` sets a net's options (those of
``extract.nets.get_net``, e.g. ``[net.i3d] pool = "global"``), for its embeddings with or without fine-tuning;
``[net.<name>.<variant>]`` defines the variant ``<name>.<variant>`` (``--nets musicnn.taggram``), the net with those
options too, cached as an input of its own. ``[head]`` sets stage two's fusion head: its ``name`` (``logistic`` or
``softmax``) and the parameters of ``fuse.heads.linear.LogisticHead`` or ``SoftmaxHead`` (``optimizer``, ``lr``, ``l2``,
...; a parameter left out is chosen on inner folds where the head chooses it: ``C``, ``lr``, ``l2``). ``[clip]``
(``extract.windows.plan.WindowConfig``: ``windows``, ``hop_s``, ``pooling``) reads whole files as windows of
``[audio] duration_s``. ``[fuse]`` (``fuse.selection.SelectionConfig``: ``inner_folds``, ``scoring``, ``C_grid``,
``lr_grid``, ``l2_grid``, ``seed``, ``heads``, ``upper_lr_grid``, ``upper_weight_decay_grid``, ``upper_max_epochs``,
``choice_scoring``, ``choice_rule``) sets how stage two chooses, and its ``reference`` the model every other is compared
with. The frames' window follows ``[audio]`` unless ``[frames]`` sets it, so both modalities see the same part of a
video. Unknown tables or keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from mvemo.manifests.errors import ConfigError

# The tables besides one per audio set (``extract.audio.audio_features``, the handcrafted registry's among them)
TABLES = ("clip", "audio", "frames", "faces", "train", "optim", "net", "head", "fuse", "sets")
ARRAYS = ("sets",)  # the tables a config may repeat, [[sets]]: a list of tables


def known_tables() -> tuple[str, ...]:
    """Every table a config file may hold."""
    from mvemo.extract.audio import audio_features

    return (*TABLES[:2], *audio_features(), *TABLES[2:])


def load_toml(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The tables of a TOML config file ({} for None)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {os.fspath(path)!r} does not exist; give a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--config {os.fspath(path)!r} is not valid TOML ({err}); fix the file") from None
    unknown = sorted(set(table) - set(known_tables()))
    if unknown:
        raise ConfigError(f"--config: unknown table(s) {unknown}; known tables are {list(known_tables())}")
    values = [
        name
        for name, value in table.items()
        if not (isinstance(value, dict) or (name in ARRAYS and all(isinstance(v, dict) for v in value)))
    ]
    if values:
        raise ConfigError(
            f"--config {os.fspath(path)!r}: {values[0]} = {table[values[0]]!r} is a value where a table belongs; write"
            f" [{values[0]}] on a line of its own with its keys below it"
        )
    return table


def build(cls: type, values: dict[str, Any], *, table: str, taken: tuple[str, ...] = (), **fixed: Any) -> Any:
    """``cls(**values, **fixed)``, naming the table and the allowed keys for an unknown key (the ``taken`` keys
    of the table read before included)."""
    names = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    unknown = sorted(set(values) - names)
    names |= set(taken)
    if unknown:
        raise ConfigError(f"[{table}]: unknown key(s) {unknown}; allowed keys are {sorted(names)}")
    try:
        return cls(**values, **fixed)
    except TypeError as err:
        raise ConfigError(f"[{table}]: {err}") from None


def tables_of(config: str | os.PathLike[str] | dict[str, Any] | None) -> dict[str, Any]:
    """A config's tables: those of a TOML file (``load_toml``), or ``config`` itself where it holds them already (a
    ready-made recipe's)."""
    return config if isinstance(config, dict) else load_toml(config)


def feature_configs(config: str | os.PathLike[str] | dict[str, Any] | None) -> Any:
    """The ``extract.features.FeatureConfigs`` of a config file or its tables (defaults where it says nothing):
    ``[audio]`` (the window every audio set analyses), one table per set (``[mel]``, ``[descriptors]``, ...),
    ``[frames]`` and ``[faces]``."""
    from mvemo.extract.audio import audio_configs
    from mvemo.extract.decode.audio import AudioWindow
    from mvemo.extract.faces.sets import FaceConfig
    from mvemo.extract.features import FeatureConfigs
    from mvemo.extract.frame_sets import FrameConfig

    tables = tables_of(config)
    audio = dict(tables.get("audio", {}))
    timeout_s = audio.pop("timeout_s", FeatureConfigs.audio_timeout_s)
    window = build(AudioWindow, audio, table="audio", taken=("timeout_s",))
    frames = {"window_start_s": window.offset_s, "window_duration_s": window.duration_s, **tables.get("frames", {})}
    sets = {
        name: build(cls, tables.get(name, {}), table=name, audio_window=window) for name, cls in audio_configs().items()
    }
    faces = build(FaceConfig, tables.get("faces", {}), table="faces", weights_dir=None)
    return FeatureConfigs.of_window(
        window, **sets, frames=FrameConfig.from_json(frames), faces=faces, audio_timeout_s=timeout_s
    )


def window_config(config: str | os.PathLike[str] | dict[str, Any] | None) -> Any:
    """The ``extract.windows.plan.WindowConfig`` of a config's ``[clip]`` table (one window per clip without it)."""
    from mvemo.extract.windows.plan import WindowConfig

    return build(WindowConfig, tables_of(config).get("clip", {}), table="clip")


def train_config(path: str | os.PathLike[str] | None, *, finetune: str, random_init: tuple[str, ...] = ()) -> Any:
    """The ``extract.finetune.train.TrainConfig`` of a config file's ``[train]``, ``[optim.<net>]`` and ``[net.<name>]``
    tables (the ``random_init`` nets starting from random weights)."""
    from mvemo.extract.finetune.train import OptimizerConfig, TrainConfig

    tables = load_toml(path)
    optim = per_net_tables(tables, "optim")
    optimizers = {net: build(OptimizerConfig, values, table=f"optim.{net}") for net, values in optim.items()}
    net_options = _nets(tables, random_init)
    return build(
        TrainConfig,
        tables.get("train", {}),
        table="train",
        finetune=finetune,
        optimizers=optimizers,
        net_options=net_options,
    )


def net_config(path: str | os.PathLike[str] | None, random_init: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Each net's options from a config file's ``[net.<name>]`` tables, their keys checked against the net's options,
    with ``init = "random"`` for the ``random_init`` nets (``--random-init``)."""
    return _nets(load_toml(path), random_init)


def _nets(tables: dict[str, Any], random_init: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Each net's options, and each variant's (a ``[net.<net>.<variant>]`` table: the net's options, then its own)."""
    from mvemo.cache.layout import FACE_FEATURES
    from mvemo.extract.nets import INIT, base_name, net_options, split_init

    for net in random_init:
        if net in FACE_FEATURES:
            raise ConfigError(
                f"--random-init {net}: the faces sets' detector and expression net run with their published weights"
                " only (a random detector finds no face); leave it out of --random-init"
            )
        try:
            base_name(net)
        except ConfigError as err:
            raise ConfigError(f"--random-init: {err}") from None
    per_net: dict[str, dict[str, Any]] = {}
    for net, values in per_net_tables(tables, "net").items():
        own = {key: value for key, value in values.items() if not isinstance(value, dict)}
        per_net[net] = own
        for variant, options in values.items():
            if isinstance(options, dict):
                per_net[f"{net}.{variant}"] = own | options
    for net in random_init:  # a net's variants with it, as its table's init = "random" reaches them
        per_net.setdefault(net, {})
        for name in per_net:
            if name == net or name.startswith(f"{net}."):
                per_net[name][INIT] = "random"
    for net, values in per_net.items():
        allowed = sorted([*net_options(net), INIT])
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ConfigError(f"[net.{net}]: unknown key(s) {unknown}; {net}'s options are {allowed}")
        split_init(net, values)
    return per_net


def head_config(
    path: str | os.PathLike[str] | None, name: str | None
) -> tuple[str | None, dict[str, Any], Any, str | None]:
    """The fusion head's name (``name`` if given, else the ``[head]`` table's, else None: as ``[fuse] heads``
    says, ``logistic`` by default), its parameters,
    the ``fuse.selection.SelectionConfig`` of the ``[fuse]`` table, and that table's ``reference`` model (None)."""
    from mvemo.fuse.selection import SelectionConfig

    tables = load_toml(path)
    table = dict(tables.get("head", {}))
    configured = table.pop("name", None)
    fuse = dict(tables.get("fuse", {}))
    reference = fuse.pop("reference", None)
    if reference is not None and not isinstance(reference, str):
        raise ConfigError(f'[fuse] reference = {reference!r}: expected a model\'s name, e.g. "musicnn"')
    return name or configured, table, SelectionConfig.from_table(fuse, taken=("reference",)), reference


def per_net_tables(tables: dict[str, Any], table: str) -> dict[str, dict[str, Any]]:
    """The ``[table.<net>]`` sub-tables of a config, each named after a known net."""
    from mvemo.extract.nets import NET_NAMES

    per_net = tables.get(table, {})
    unknown = sorted(set(per_net) - set(NET_NAMES))
    if unknown:
        raise ConfigError(f"[{table}]: unknown net(s) {unknown}; tables are [{table}.<net>] for nets {list(NET_NAMES)}")
    return per_net


def plane_sets(path: str | os.PathLike[str] | None) -> list[tuple[str, dict[str, list[float]] | None]]:
    """The sets of a config's ``[[sets]]`` tables: each one's ``cache`` (relative to the config's folder) and the
    ``places`` of its classes on the plane, {class: [valence sign, arousal sign]} (None: 4Q's quadrant names)."""
    if path is None:
        return []
    sets = []
    for k, table in enumerate(load_toml(path).get("sets", [])):
        unknown = sorted(set(table) - {"cache", "places"})
        if unknown or not isinstance(table.get("cache"), str):
            raise ConfigError(
                f"--config {os.fspath(path)!r}: [[sets]] number {k + 1} holds {sorted(table)}; expected cache ="
                ' "FOLDER" and, for a set of classes other than Q1..Q4, places = { calm = [1, -1], ... }'
            )
        folder = Path(path).parent / table["cache"]
        sets.append((str(folder), table.get("places")))
    return sets
