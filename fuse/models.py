"""The inputs a cache holds, the models they compose into by default, and the matrix each input reads.

Inputs: every net's embedding, ``lldstats`` (the mean and standard deviation
over time of every LLD column, a cheap handcrafted baseline) and every cached set
that holds one named vector per clip (``descriptors``, ``egemaps``, ``compare``).
Default models, over the inputs stage one has finished (``complete_inputs``): each
input alone, paper 001's four audio + video pairs, ``integrated`` (or
``integrated-audio`` without video): the inner-best of each input alone, all of them
concatenated, their late fusion and their stacking (``fuse.compose``), and
``integrated-decision``: the late fusion of the pairs. Embeddings of nets with
random weights that were never fine-tuned enter no default fusion: name them in
``--models`` to fuse them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mvemo.cache.layout import DONE, FAILED, TODO
from mvemo.cache.read import Cache
from mvemo.fuse.compose import Best, Features, Late, Node, Stack, inputs_of, integrated
from mvemo.fuse.grammar import parse_models
from mvemo.manifests.errors import CacheError, ConfigError

AUDIO_NETS = ("onedcnn", "twodcnn", "crnn", "musicnn", "msdvgg")
VIDEO_NETS = ("c3d", "i3d", "r3d_18", "r2plus1d_18", "mc3_18")
PAPER_PAIRS = (("c3d", "onedcnn"), ("i3d", "onedcnn"), ("c3d", "twodcnn"), ("i3d", "twodcnn"))
LLDSTATS = "lldstats"
INTEGRATED = ("integrated", "integrated-audio")


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
    order = {net: i for i, net in enumerate((*AUDIO_NETS, *VIDEO_NETS))}
    return sorted(found, key=lambda name: (order.get(base_net(name), len(order)), base_net(name), name))


def base_net(name: str) -> str:
    """The net an input of a net variant (``musicnn.taggram``) comes from; any other name as it is."""
    return name.split(".", 1)[0]


def cached_inputs(cache: Cache) -> list[str]:
    """Every input the cache can feed a model: the nets' embeddings, ``lldstats`` where LLDs are cached, then the
    clip-level vector sets."""
    return cached_nets(cache) + ([LLDSTATS] if "lld" in cache.feature_sets() else []) + vector_sets(cache)


def vector_sets(cache: Cache) -> list[str]:
    """The cached feature sets that hold one vector of named columns per clip: each is an input by its name."""
    return [
        name
        for name in cache.feature_sets()
        if not name.startswith("emb/") and cache.columns(name) and len(cache.row_shape(name)) == 1
    ]


def random_init_nets(cache: Cache) -> list[str]:
    """Nets whose embeddings come from random weights never fine-tuned: noise a default fusion leaves out."""
    nets = []
    for net in cached_nets(cache):
        sets = input_sets(cache, net)
        if all(_weights(cache, n) == "random init" and cache.config(n).get("finetune", "none") == "none" for n in sets):
            nets.append(net)
    return nets


def input_sets(cache: Cache, name: str) -> list[str]:
    """Every cached set an input reads, for any test fold or the final model."""
    if name == LLDSTATS:
        return ["lld"]
    if name in vector_sets(cache):
        return [name]
    return sorted(s for s in cache.feature_sets() if s.startswith(f"emb/{name}/"))


def pending_rows(cache: Cache, set_name: str) -> np.ndarray:
    """The rows a set still has to compute: never computed, or computed before their media changed (stale).
    Failed rows and rows of an absent modality are final."""
    status = cache.status(set_name)
    return (status == TODO) | ((status == DONE) & ~cache.done(set_name))


def incomplete_inputs(cache: Cache) -> dict[str, str]:
    """The inputs that stage one has not finished, each with why and the command that completes it: a set with rows
    still to compute, or a net fine-tuned per fold with a fold set missing."""
    n_folds = int(cache.folds.max()) + 1 if len(cache) else 0
    incomplete = {}
    for name in cached_inputs(cache):
        sets = input_sets(cache, name)
        pending = {s: int(pending_rows(cache, s).sum()) for s in sets}
        why = [f"{s}: {n} of {len(cache)} clips not computed yet or stale" for s, n in pending.items() if n]
        tuned = [s for s in sets if "/fold" in s]
        if tuned and len(tuned) < n_folds:
            why.append(f"fine-tuned for {len(tuned)} of {n_folds} folds")
        if why:
            incomplete[name] = f"{'; '.join(why)}; complete it with {_completing_command(cache, name, tuned=bool(tuned))}"
    return incomplete


def _completing_command(cache: Cache, name: str, *, tuned: bool) -> str:
    """The ``mvemo extract`` command that finishes a cached input (it resumes where it stopped)."""
    if name == LLDSTATS:
        option = "--features lld"
    elif name in vector_sets(cache):
        option = f"--features {name}"
    else:
        option = f"--nets {name}" + (" --finetune last|full" if tuned else "")
    return f"`mvemo extract MANIFEST --cache {cache.path} {option}` (it resumes where it stopped)"


def complete_inputs(cache: Cache, incomplete: dict[str, str] | None = None) -> list[str]:
    """The cached inputs that stage one has finished (all but ``incomplete``, computed where not given): the
    default models read these alone."""
    incomplete = incomplete_inputs(cache) if incomplete is None else incomplete
    return [name for name in cached_inputs(cache) if name not in incomplete]


def named_models(cache: Cache, complete: list[str]) -> dict[str, Node]:
    """The models that have names: ``integrated`` (or ``integrated-audio``) and ``integrated-decision``,
    where the cache holds two ``complete`` inputs (pairs) of pretrained or fine-tuned nets."""
    random_init = random_init_nets(cache)
    trusted = [name for name in complete if name not in random_init]
    named: dict[str, Node] = {}
    if len(trusted) > 1:
        name = INTEGRATED[1] if not any(base_net(n) in VIDEO_NETS for n in trusted) else INTEGRATED[0]
        named[name] = integrated(tuple(Features((input_name,)) for input_name in trusted))
    pairs = paper_pairs(trusted)
    if len(pairs) > 1:
        named["integrated-decision"] = Late(tuple(pairs))
    return named


def paper_pairs(nets: list[str]) -> list[Features]:
    return [Features((video, audio)) for video, audio in PAPER_PAIRS if video in nets and audio in nets]


def available_models(cache: Cache, complete: list[str] | None = None) -> list[FusionModel]:
    """The default models: every complete input alone, the paper's pairs of trusted nets, and the named models
    (``complete``: the complete inputs where the caller has them)."""
    random_init = random_init_nets(cache)
    complete = complete_inputs(cache) if complete is None else complete
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
    known: dict[str, Node] = {name: Features((name,)) for name in cached_inputs(cache)} | named_models(cache, complete)
    chosen = parse_models(names, known, _unknown(cache, known))
    return list(dict.fromkeys(FusionModel(name, node) for name, node in chosen))


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
    if name in (*INTEGRATED, "integrated-decision"):
        return f"{command} --nets ...` (two pretrained or fine-tuned nets at least)"
    return f"{command} --nets {name}` for a net, or {command} --features {name}` for a feature set"


def input_set(cache: Cache, net: str, fold: int | None) -> str:
    """The feature set one net contributes for test fold ``fold`` (None: the final model, all clips).

    A fold reads ``emb/<net>/fold<k>``; it reads ``emb/<net>/all`` only where the net
    was never fine-tuned: a fine-tuned ``all`` has trained on the test fold, and a
    net with some fold sets but not this one is a fine-tuning that did not finish.
    """
    sets = set(cache.feature_sets())
    fold_set, all_set = f"emb/{net}/fold{fold}", f"emb/{net}/all"
    where = f"cache {str(cache.path)!r}"
    command = f"`mvemo extract MANIFEST --cache {cache.path} --nets {net}"
    if fold is None:
        if all_set in sets:
            return all_set
        raise CacheError(f"{where} lacks {all_set}; compute it with {command}`")
    if fold_set in sets:
        return fold_set
    if any(name.startswith(f"emb/{net}/fold") for name in sets):
        raise CacheError(
            f"{where} lacks {fold_set} while other folds of {net} are fine-tuned: the fine-tuning did not finish;"
            f" rerun it with {command} --finetune last|full` (it resumes where it stopped)"
        )
    if all_set not in sets:
        raise CacheError(f"{where} lacks {fold_set}; compute it with {command}`")
    if cache.config(all_set).get("finetune", "none") != "none":
        raise CacheError(
            f"{where} lacks {fold_set}, and {all_set} was fine-tuned on every clip, fold {fold}'s included:"
            f" testing on it would leak; fine-tune per fold with {command} --finetune last|full`"
        )
    return all_set


def input_set_name(cache: Cache, name: str, fold: int | None) -> str:
    """The cached set an input reads for test fold ``fold`` (None: the final model): ``lld`` for ``lldstats``, a
    vector set itself."""
    if name == LLDSTATS:
        return "lld"
    return name if name in vector_sets(cache) else input_set(cache, name, fold)


def read_input(cache: Cache, set_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The float32 matrix an input reads from ``set_name``, shape (n_clips, n_features), and the mask of rows done
    (float32 as cached: the heads' solver runs 3x faster than on float64, with the same accuracy)."""
    if set_name == "lld":
        X, done = lld_statistics(cache)
    else:
        X, done = cache.read_matrix(set_name), cache.done(set_name)
    return np.asarray(X.reshape(len(cache), -1), dtype=np.float32), done


def missing_reasons(cache: Cache, set_name: str) -> dict[int, str]:
    """Why each row a set does not hold is missing: its failure, a changed media file, or never computed."""
    status = cache.status(set_name)
    done = cache.done(set_name)
    errors = cache.errors(set_name)
    reasons = {}
    for row in np.flatnonzero(~done):
        if status[row] == FAILED:
            reasons[int(row)] = f"{set_name} failed: {errors[int(row)]}"
        elif status[row] == DONE:
            reasons[int(row)] = f"{set_name} is stale: the media changed since it was computed; rerun `mvemo extract`"
        else:
            reasons[int(row)] = f"{set_name} not computed; run `mvemo extract` on the manifest"
    return reasons


# Clips whose LLDs are summarized at once: (64, 1292, 63) float64 and its temporaries stay near 150 MB, whatever the
# number of clips (the whole tensor of 100,000 clips was 33 GB as float32).
LLD_CHUNK_ROWS = 64


def lld_statistics(cache: Cache) -> tuple[np.ndarray, np.ndarray]:
    """``lldstats`` of every clip of the cache, read ``LLD_CHUNK_ROWS`` clips at a time, and the mask of clips with
    LLDs."""
    lengths = cache.valid_lengths("lld")
    columns = cache.row_shape("lld")[-1]
    stats = np.empty((len(cache), 2 * columns), dtype=np.float32)
    for start in range(0, len(cache), LLD_CHUNK_ROWS):
        rows = np.arange(start, min(start + LLD_CHUNK_ROWS, len(cache)))
        stats[rows] = summarize_lld(cache.read_matrix("lld", rows), lengths[rows])
    return stats, cache.done("lld")


def summarize_lld(lld: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over each clip's valid frames of every LLD column.

    ``lld`` (n_clips, n_frames, n_columns), ``lengths`` (n_clips,); returns (n_clips, 2 * n_columns).
    """
    lld = np.asarray(lld, dtype=np.float64)
    lengths = np.maximum(np.asarray(lengths), 1)
    valid = (np.arange(lld.shape[1])[None, :] < lengths[:, None])[..., None]
    mean = (lld * valid).sum(axis=1) / lengths[:, None]
    var = (((lld - mean[:, None, :]) * valid) ** 2).sum(axis=1) / lengths[:, None]
    return np.concatenate([mean, np.sqrt(var)], axis=1)


def fine_tuned_nets(cache: Cache) -> list[str]:
    """The nets whose embeddings in the cache come from fine-tuning (not from the weights as they are)."""
    sets = [name for name in cache.feature_sets() if name.startswith("emb/")]
    return sorted({name.split("/")[1] for name in sets if cache.config(name).get("finetune", "none") != "none"})


def provenance(cache: Cache) -> dict[str, dict[str, str]]:
    """Per net: the weights its embeddings started from (file and sha256, or "random init"; fine-tuned sets start
    from their ``pretrained_sha256``), how it was fine-tuned and the protocol (modes of its sets joined by "/")."""
    described = {}
    for net in cached_nets(cache):
        sets = input_sets(cache, net)
        described[net] = {
            "weights": " / ".join(sorted({_weights(cache, n) for n in sets})),
            "finetune": "/".join(sorted({cache.config(n).get("finetune", "none") for n in sets})),
            "protocol": "/".join(sorted({cache.config(n).get("protocol", "leakfree") for n in sets})),
        }
    return described


def _weights(cache: Cache, set_name: str) -> str:
    training = cache.config(set_name).get("training")
    sha256 = training["pretrained_sha256"] if training else cache.weights_sha256(set_name)
    return f"{cache.weights_file(set_name) or 'weights'} sha256 {sha256}" if sha256 else "random init"


def top_tags(cache: Cache, k: int = 3) -> dict[str, list[list[str]]]:
    """Per embedding set of named tag probabilities (``[net.musicnn] layer = "taggram"``), each clip's ``k`` most
    probable tags with their mean probability over its patches (the max where only the max is cached), or [] for a
    clip the set lacks."""
    tagged = {}
    for set_name in cache.feature_sets():
        columns = cache.columns(set_name) if set_name.startswith("emb/") else []
        kind = " (mean)" if any(c.endswith(" (mean)") for c in columns) else " (max)"
        picked = [i for i, c in enumerate(columns) if c.endswith(kind)]
        if not picked:
            continue
        proba, done = cache.read_matrix(set_name)[:, picked], cache.done(set_name)
        names = [columns[i].removesuffix(kind) for i in picked]
        tagged[set_name] = [
            [f"{names[j]} {row[j]:.2f}" for j in np.argsort(-row)[:k]] if ok else [] for row, ok in zip(proba, done)
        ]
    return tagged


def protocol(cache: Cache) -> str:
    """``paper`` if any embedding set was fine-tuned on every clip (the papers' leaky protocol), else ``leakfree``."""
    for name in cache.feature_sets():
        if name.startswith("emb/") and cache.config(name).get("protocol") == "paper":
            return "paper"
    return "leakfree"
