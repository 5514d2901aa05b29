"""The model catalogue: the inputs a cache holds and the models they compose into by default.

Inputs: every net's embedding, ``lldstats`` (the mean and standard deviation
over time of every LLD column, a cheap handcrafted baseline) and every cached set
that holds one named vector per clip (``descriptors``, ``expressive``, ``egemaps``, ``compare``).
Default models, over the inputs stage one has finished (``complete_inputs``): each
input alone, paper 001's four audio + video pairs, ``integrated`` (or
``integrated-audio`` without video): the plain late fusion of every input (equal weights: the rule
the protocol of docs/results.md kept, "Choosing the default fusion rule"), ``integrated-decision``:
the late fusion of the pairs, and ``encoders``: the late fusion of the music encoders
(``MUSIC_ENCODERS``). Embeddings of nets with random weights
that were never fine-tuned enter no default fusion: name them in ``--models`` to fuse them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from mvemo.cache.imported import reimport_command
from mvemo.cache.layout import DONE, TODO, VIDEO_SETS
from mvemo.cache.layout import modality as set_modality
from mvemo.cache.read import Cache
from mvemo.cache.sets import StartedOver
from mvemo.fuse.compose import Best, Features, Late, Node, Stack, inputs_of, integrated
from mvemo.fuse.grammar import parse_models
from mvemo.manifests.errors import CacheError, ConfigError

# The nets stage one runs, in the order reports list them (audio first); whether a net reads sound or pictures its sets
# say (``modality``).
NETS = (
    "onedcnn",
    "twodcnn",
    "crnn",
    "musicnn",
    "msdvgg",
    "mttmusicnn",
    "mttvgg",
    "clap",
    "c3d",
    "i3d",
    "r3d_18",
    "r2plus1d_18",
    "mc3_18",
)
# the music encoders: musicnn's two nets, each as trained on the Million Song Dataset and on MagnaTagATune (stage one's
# ``--nets encoders``), and CLAP where a user ran it (``--nets clap``); the late fusion of those cached is the default
# model ``encoders``
MUSIC_ENCODERS = ("musicnn", "msdvgg", "mttmusicnn", "mttvgg", "clap")
ENCODERS = "encoders"
PAPER_PAIRS = (("c3d", "onedcnn"), ("i3d", "onedcnn"), ("c3d", "twodcnn"), ("i3d", "twodcnn"))
LLDSTATS = "lldstats"
INTEGRATED = ("integrated", "integrated-audio")
DECISION = "integrated-decision"
NAMED_MODELS = (*INTEGRATED, DECISION, ENCODERS)


@dataclass(frozen=True)
class FusionModel:
    """A named model (``fuse.compose``): its name in reports, and its tree."""

    name: str
    node: Node

    @property
    def kind(self) -> str:
        node = self.node
        if isinstance(node, Features):
            return "unimodal" if len(node.inputs) == 1 else "fusion"
        return {Late: "decision", Stack: "stack", Best: "selected"}[type(node)]

    @property
    def inputs(self) -> tuple[str, ...]:
        return inputs_of(self.node)


def cached_nets(cache: Cache) -> list[str]:
    """Nets with embeddings in the cache (``emb/<net>/fold<k>`` or ``emb/<net>/all``), audio first, each net's
    variants (``musicnn.taggram``) after it."""
    found = {name.split("/")[1] for name in cache.feature_sets() if name.startswith("emb/")}
    order = {net: i for i, net in enumerate(NETS)}
    return sorted(found, key=lambda name: (order.get(base_net(name), len(order)), base_net(name), name))


def modality(cache: Cache, name: str) -> str:
    """``video`` for an input computed from a clip's frames (a set of ``cache.layout.VIDEO_SETS``, the faces, or the
    embedding of a net that reads one, as its sets record the inputs they read), else ``audio``."""
    if name in VIDEO_SETS:
        return "video"
    sets = [s for s in cache.feature_sets() if s.startswith(f"emb/{name}/")]
    return (
        "video"
        if sets and any(set_modality(s) == "video" for s in cache.config(sets[0]).get("inputs", {}))
        else "audio"
    )


def base_net(name: str) -> str:
    """The net an input of a net variant (``musicnn.taggram``) comes from; any other name as it is."""
    return name.split(".", 1)[0]


def cached_inputs(cache: Cache) -> list[str]:
    """Every input the cache can feed a model: the nets' embeddings, ``lldstats`` where LLDs are cached, then the
    clip-level vector sets."""
    nets, sets = cached_nets(cache), vector_sets(cache)
    taken = [n for n in sets if n in nets or base_net(n) in (*NETS, LLDSTATS, *NAMED_MODELS)]
    if taken:
        raise ConfigError(
            f"cache {str(cache.path)!r}: set {taken[0]!r} has the name of a net, of lldstats or of a model, and"
            f" would stand for it; import it again under another name (`mvemo cache import ... --set NAME`)"
        )
    return nets + ([LLDSTATS] if "lld" in cache.feature_sets() else []) + sets


def vector_sets(cache: Cache, among: Iterable[str] | None = None) -> list[str]:
    """The cached feature sets (of ``among`` alone where given: no other set is opened) that hold one vector of named
    columns per clip: each is an input by its name."""
    names = cache.feature_sets() if among is None else [name for name in cache.feature_sets() if name in set(among)]
    return [
        name
        for name in names
        if not name.startswith("emb/") and cache.columns(name) and len(cache.row_shape(name)) == 1
    ]


def random_init_nets(cache: Cache, among: Iterable[str] | None = None) -> list[str]:
    """Nets (of the inputs ``among``, default every one) whose embeddings come from random weights never fine-tuned:
    noise a default fusion leaves out."""
    nets = []
    for net in _nets_among(cache, among):
        sets = input_sets(cache, net)
        if all(
            weights_origin(cache, n) == "random init" and cache.config(n).get("finetune", "none") == "none"
            for n in sets
        ):
            nets.append(net)
    return nets


def per_patch_inputs(cache: Cache, among: Iterable[str] | None = None) -> list[str]:
    """Nets' variants (of the inputs ``among``, default every one) that keep each clip's patches (``pool =
    "patches"``, a cut's activations among them): each is for its own patch-level or fine-tuned head; in a default
    fusion's concatenation they would be raw columns beside the pooled embeddings of the same net, so the default
    fusions leave them out."""
    nets = _nets_among(cache, among)
    return [net for net in nets if any(cache.config(s).get("pool") == "patches" for s in input_sets(cache, net))]


def _nets_among(cache: Cache, among: Iterable[str] | None) -> list[str]:
    """The cached nets, those of ``among`` alone where given (a set of another may be being started over)."""
    nets = cached_nets(cache)
    return nets if among is None else [net for net in nets if net in set(among)]


def input_sets(cache: Cache, name: str) -> list[str]:
    """Every cached set an input reads, for any test fold or the final model."""
    if name == LLDSTATS:
        return ["lld"]
    if name in vector_sets(cache, [name]):
        return [name]
    return sorted(s for s in cache.feature_sets() if s.startswith(f"emb/{name}/"))


def pending_rows(cache: Cache, set_name: str) -> np.ndarray:
    """The rows a set still has to compute: never computed, or computed before their media changed (stale).
    Failed rows and rows of an absent modality are final."""
    status = cache.status(set_name)
    return (status == TODO) | ((status == DONE) & ~cache.done(set_name))


def incomplete_inputs(cache: Cache, among: Iterable[str] | None = None) -> dict[str, str]:
    """The inputs (of ``among`` alone where given) that stage one has not finished, each with why and the command
    that completes it: a set with rows still to compute, or a net fine-tuned per fold with a fold set missing."""
    n_folds = int(cache.folds.max()) + 1 if len(cache) else 0
    incomplete = {}
    for name in cached_inputs(cache) if among is None else among:
        sets = input_sets(cache, name)
        try:
            pending = {s: int(pending_rows(cache, s).sum()) for s in sets}
        except StartedOver as started:
            incomplete[name] = str(started)
            continue
        why = [f"{s}: {n} of {len(cache)} clips not computed yet or stale" for s, n in pending.items() if n]
        tuned = [s for s in sets if "/fold" in s]
        if tuned and len(tuned) < n_folds:
            why.append(f"fine-tuned for {len(tuned)} of {n_folds} folds")
        if why:
            incomplete[name] = (
                f"{'; '.join(why)}; complete it with {_completing_command(cache, name, tuned=bool(tuned))}"
            )
    return incomplete


def _completing_command(cache: Cache, name: str, *, tuned: bool) -> str:
    """The command that finishes a cached input: ``mvemo extract`` (it resumes where it stopped), or for a set of
    ``mvemo cache import`` (which a grown cache leaves without rows for its new clips) that import again."""
    is_set = name in vector_sets(cache)
    stale = is_set and bool(((cache.status(name) == DONE) & ~cache.done(name)).any())
    if is_set and (command := reimport_command(cache, name, stale=stale)):
        return command
    if name == LLDSTATS:
        option = "--features lld"
    elif is_set:
        option = f"--features {name}"
    else:
        option = f"--nets {name}" + (" --finetune last|full" if tuned else "")
    return f"`mvemo extract MANIFEST --cache {cache.path} {option}` (it resumes where it stopped)"


def complete_inputs(cache: Cache, incomplete: dict[str, str] | None = None) -> list[str]:
    """The cached inputs that stage one has finished (all but ``incomplete``, computed where not given): the
    default models read these alone."""
    incomplete = incomplete_inputs(cache) if incomplete is None else incomplete
    return [name for name in cached_inputs(cache) if name not in incomplete]


def fusion_inputs(cache: Cache, complete: list[str] | None = None) -> list[str]:
    """The inputs the default fusions read: the ``complete`` ones (``complete_inputs`` where not given) but embeddings
    of random weights never fine-tuned and per-patch inputs."""
    complete = complete_inputs(cache) if complete is None else complete
    left_out = set(random_init_nets(cache, complete)) | set(per_patch_inputs(cache, complete))
    return [name for name in complete if name not in left_out]


def named_models(cache: Cache, complete: list[str]) -> dict[str, Node]:
    """The models that have names, where the cache holds two ``complete`` inputs (pairs) of pretrained or fine-tuned
    nets (inputs of random weights and per-patch inputs enter none, ``fusion_inputs``): ``integrated`` (or
    ``integrated-audio``), the plain late fusion of every input; ``integrated-decision``; ``encoders``.

    Why the plain late fusion: no other rule read clearly better on any real set while worse on none (the protocol of
    docs/results.md, "Choosing the default fusion rule"); with few rows, estimated weights cost more than they gain."""
    trusted = fusion_inputs(cache, complete)
    encoders = tuple(Features((name,)) for name in trusted if name in MUSIC_ENCODERS)
    named: dict[str, Node] = {}
    if len(trusted) > 1:
        name = INTEGRATED[0] if any(modality(cache, n) == "video" for n in trusted) else INTEGRATED[1]
        named[name] = integrated(tuple(Features((input_name,)) for input_name in trusted))
    pairs = paper_pairs(trusted)
    if len(pairs) > 1:
        named[DECISION] = Late(tuple(pairs))
    if len(encoders) > 1:
        named[ENCODERS] = Late(encoders)
    return named


def paper_pairs(nets: list[str]) -> list[Features]:
    return [Features((video, audio)) for video, audio in PAPER_PAIRS if video in nets and audio in nets]


def available_models(cache: Cache, complete: list[str] | None = None) -> list[FusionModel]:
    """The default models: every complete input alone, the paper's pairs of trusted nets, and the named models
    (``complete``: the complete inputs where the caller has them)."""
    complete = complete_inputs(cache) if complete is None else complete
    random_init = random_init_nets(cache, complete)
    models = [FusionModel(name, Features((name,))) for name in complete]
    models += [FusionModel(p.expr, p) for p in paper_pairs([n for n in complete if n not in random_init])]
    return models + [FusionModel(name, node) for name, node in named_models(cache, complete).items()]


def select_models(cache: Cache, names: str | None) -> list[FusionModel]:
    """The models of ``--models`` (the grammar of ``fuse.grammar``), or the default ones."""
    incomplete = incomplete_inputs(cache)
    complete = complete_inputs(cache, incomplete)
    if not names or not names.strip():
        models = available_models(cache, complete)
        if not models:
            if incomplete:
                name, why = next(iter(incomplete.items()))
                raise CacheError(f"cache {str(cache.path)!r}: no input is complete to fuse; {name}: {why}")
            raise CacheError(
                f"cache {str(cache.path)!r} has no embeddings or LLDs to fuse;"
                f" compute them with `mvemo extract MANIFEST --cache {cache.path} --nets ...` (or --features lld)"
            )
        return models
    named = named_models(cache, complete)
    known: dict[str, Node] = {name: Features((name,)) for name in cached_inputs(cache)} | named
    chosen = parse_models(names, known, _unknown(cache, known))
    return list(dict.fromkeys(FusionModel(name, node) for name, node in chosen))


def names_a_named_model(names: str) -> bool:
    """Whether ``--models`` ``names`` a model whose inputs the cache's complete inputs decide (``integrated``,
    ``encoders``...; alone or inside another, ``late(integrated,lldstats)``), not ``integrated(a,b)`` of named
    inputs."""
    return any(token in NAMED_MODELS for token in re.findall(r"[\w.-]+(?!\w|[.-]|\()", names))


def _unknown(cache: Cache, known: dict[str, Node]) -> Callable[[str], Exception]:
    def error(name: str) -> Exception:
        return ConfigError(
            f"--models: {name!r} cannot be built from this cache (it has {', '.join(known) or 'nothing to fuse'});"
            f" compute its inputs with {_how_to_compute(cache, name)}"
        )

    return error


def _how_to_compute(cache: Cache, name: str) -> str:
    """The ``mvemo extract`` command that computes an input: ``--features lld`` for lldstats, its net, or its
    feature set (two nets or more for a named model)."""
    command = f"`mvemo extract MANIFEST --cache {cache.path}"
    if name == LLDSTATS:
        return f"{command} --features lld`"
    if name in NAMED_MODELS:
        return f"{command} --nets ...` (two pretrained or fine-tuned nets at least)"
    return f"{command} --nets {name}` for a net, or {command} --features {name}` for a feature set"


def weights_origin(cache: Cache, set_name: str) -> str:
    """The weights a set's embeddings started from: file and sha256, or "random init"."""
    training = cache.config(set_name).get("training")
    sha256 = training["pretrained_sha256"] if training else cache.weights_sha256(set_name)
    return f"{cache.weights_file(set_name) or 'weights'} sha256 {sha256}" if sha256 else "random init"
