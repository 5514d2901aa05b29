"""The ready-made models: each one's recipe (data, labels, folds, inputs, target), where the shipped model lies, and
what its folder says of it (``recipe.json``: the recipe, its cross-validated figures, Russell's plane of its classes).

A ready-made model is a saved fusion model (``fuse.saved``: heads and config, no net weights) trained by
``pipeline.readymade.train`` on one of the real labelled sets that ``../shared/data`` holds, with the default fusion
rule. It names each net's published weights by sha256, which ``mvemo weights fetch`` brings.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mvemo.manifests.errors import ConfigError

SHIPPED = Path(__file__).parent / "shipped"
RECIPE_JSON = "recipe.json"
# Russell's circumplex: each of 4Q's quadrants as the signs of its valence and arousal
QUADRANT_PLANE = {"Q1": (1, 1), "Q2": (-1, 1), "Q3": (-1, -1), "Q4": (1, -1)}


@dataclass(frozen=True)
class Recipe:
    """How a ready-made model is made: the data folder (``data``, by its name under ``../shared/data``), its side table
    of labels (``labels``, keyed by ``key``; none: a folder per class), the column whose clips share a fold
    (``group_by``), ``k`` folds drawn with ``seed``, stage one's ``features`` and ``nets``, stage two's ``target``
    and named ``model``, ``repeats`` of the CV its figures come from; ``config``: the tables of a config file
    (``pipeline.config``: ``[audio]``, ``[clip]``...) stage one runs with; ``plane``: each class's valence and arousal
    sign, for a timeline on Russell's plane; ``title``: what it labels, in a few words. ``group_repeats``: the
    recordings the data holds twice share a fold (``mvemo manifest folds --group-repeats``). ``also``: the recipes
    whose data and labels a values model learns from besides its own, each computed with this recipe's features, nets
    and config (``fuse.targets.plane``: their classes need a place on the plane), by ``method`` (None:
    ``fuse.targets.plane.DEFAULT_METHOD``)."""

    name: str
    title: str
    data: str
    features: tuple[str, ...]
    nets: tuple[str, ...]
    model: str
    target: str = "label"
    labels: str | None = None
    key: str = "clip_id"
    group_by: str | None = None
    k: int = 10
    seed: int = 0
    repeats: int = 10
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    plane: dict[str, tuple[int, int]] = field(default_factory=dict)
    group_repeats: bool = False
    also: tuple[str, ...] = ()
    method: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


QUADRANTS = Recipe(
    "4q-quadrants",
    "a song's quadrant of Russell's plane (Q1..Q4), with its path on the plane over time (--timeline)",
    "4q-dev",
    features=("logmel", "lld", "descriptors"),
    nets=("encoders",),
    model="integrated-audio",
    labels="labels.csv",
    key="song",
    group_by="artist",
    plane=QUADRANT_PLANE,
)
MOODS = replace(
    QUADRANTS,
    name="4q-moods",
    title="a song's AllMusic moods (24 tags: happy, sad, angry, calm...)",
    target="tags",
    plane={},
)
VIDEO_CLASSES = Recipe(
    "mved-classes",
    "a music video's emotion among paper 001's six classes, from its sound and its pictures",
    "mved-sample",
    features=("mel", "lld"),
    nets=("twodcnn", "i3d", "encoders"),
    model="integrated",
    k=6,
)
# The values of the plane: musemo's rated 6-s fragments and 4q-dev's quadrant-labelled songs, each read as 6-s windows
# every 6 s, their inputs pooled (a fragment is one window, a song five)
VALENCE_AROUSAL = Recipe(
    "valence-arousal",
    "a song's valence and arousal on a scale of -10 to 10 and its quadrant, learnt from rated fragments and"
    " quadrant-labelled songs",
    "musemo",
    features=("logmel", "lld", "descriptors"),
    nets=("encoders",),
    model="integrated-audio",
    target="valence,arousal",
    labels="labels.csv",
    key="clip",
    config={"audio": {"duration_s": 6.0}, "clip": {"windows": True, "hop_s": 6.0}},
    group_repeats=True,
    also=("4q-quadrants",),
)
RECIPES = {r.name: r for r in (QUADRANTS, MOODS, VIDEO_CLASSES, VALENCE_AROUSAL)}
# the values model whose point a model of quadrants draws on Russell's plane, where its weights are found
PLANE_VALUES = VALENCE_AROUSAL.name


# the ready-made models replaced, and why
REPLACED = {"musemo-va": "valence-arousal, which learns from musemo's ratings and 4q-dev's quadrants together"}


def recipe(name: str) -> Recipe:
    """The recipe of a ready-made model, or a ``ConfigError`` listing them (naming a replaced model's successor)."""
    if name in REPLACED:
        raise ConfigError(f"the ready-made model {name!r} is replaced by {REPLACED[name]} (`mvemo models list`)")
    if name not in RECIPES:
        raise ConfigError(f"no ready-made model {name!r}; there are {', '.join(RECIPES)} (`mvemo models list`)")
    return RECIPES[name]


def shipped_folder(name: str) -> Path:
    """Where the package holds ready-made model ``name`` (``recipe``'s name), a saved model folder."""
    folder = SHIPPED / recipe(name).name
    if not (folder / RECIPE_JSON).is_file():
        raise ConfigError(f"ready-made model {name!r} is not in this installation ({folder}); reinstall mvemo")
    return folder


def model_card(folder: Path) -> dict[str, Any]:
    """What a ready-made model's folder says of it (``recipe.json``): its recipe, its figures and how it was made."""
    return json.loads((folder / RECIPE_JSON).read_text())


def ship_model(name: str, folder: Path) -> Path:
    """Replace the package's copy of ready-made model ``name`` with a rebuilt model's whole ``folder`` (model, heads,
    recipe, the checkpoints of its fine-tuned nets), for a release: copied beside it first, then swapped in, so that a
    copy that fails leaves the shipped model as it was. A source checkout only (``require_source_checkout``)."""
    require_source_checkout()
    target = SHIPPED / recipe(name).name
    new, old = (target.with_name(f".{target.name}.{part}") for part in ("new", "old"))
    for leftover in (new, old):  # of a ship that stopped half-way
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(folder, new)
    shipped_before = target.exists()
    if shipped_before:
        target.rename(old)
    new.rename(target)
    if shipped_before:
        shutil.rmtree(old)
    return target


def require_source_checkout() -> None:
    """Refuse (``ConfigError``) to ship into an installed package: ``--ship`` rewrites the models that a source
    checkout's next release ships (``in_source_checkout``), never those of an installed mvemo."""
    if not in_source_checkout(SHIPPED):
        raise ConfigError(
            f"--ship is for a source checkout of mvemo (a release's models); this mvemo is installed ({SHIPPED}): run"
            " `mvemo models train NAME` without --ship to compare with the shipped model, or --ship in a clone of mvemo"
        )


def in_source_checkout(folder: Path) -> bool:
    """Whether ``folder``, the package's shipped models, lies in a source checkout: a checkout's ``setup.cfg`` two or
    three folders above the package's, and no ``site-packages`` or ``dist-packages`` on the way."""
    if {"site-packages", "dist-packages"} & set(folder.parts):
        return False
    return any((above / "setup.cfg").is_file() for above in folder.parents[2:4])
