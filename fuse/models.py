"""Fusion models as data, adapted to what a cache holds, and the feature matrix each one reads.

Unimodal: one net's embedding (and ``lldstats``, the mean and standard deviation
over time of every LLD column, a cheap handcrafted baseline). Pairs: paper 001's
four audio + video pairs. ``integrated``: every net's embedding concatenated
(paper 001's integrated multimodal, feature level). ``integrated-decision``: the
average of the pair models' probabilities (the other reading of the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvemo.cache.read import Cache
from mvemo.manifests.errors import CacheError, ConfigError

AUDIO_NETS = ("onedcnn", "twodcnn", "crnn")
VIDEO_NETS = ("c3d", "i3d", "r3d_18", "r2plus1d_18", "mc3_18")
PAPER_PAIRS = (("c3d", "onedcnn"), ("i3d", "onedcnn"), ("c3d", "twodcnn"), ("i3d", "twodcnn"))
LLDSTATS = "lldstats"


@dataclass(frozen=True)
class FusionModel:
    """A named model: the inputs it concatenates, or (decision level) the models it averages."""

    name: str
    inputs: tuple[str, ...] = ()
    averages: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        if self.averages:
            return "decision"
        return "unimodal" if len(self.inputs) == 1 else "fusion"


def cached_nets(cache: Cache) -> list[str]:
    """Nets with embeddings in the cache (``emb/<net>/fold<k>`` or ``emb/<net>/all``), audio first."""
    found = {name.split("/")[1] for name in cache.feature_sets() if name.startswith("emb/")}
    return [n for n in (*AUDIO_NETS, *VIDEO_NETS) if n in found] + sorted(found - set(AUDIO_NETS) - set(VIDEO_NETS))


def available_models(cache: Cache) -> list[FusionModel]:
    """Every model the cache can feed: unimodal, the paper's pairs, integrated (both levels)."""
    nets = cached_nets(cache)
    models = [FusionModel(net, (net,)) for net in nets]
    if "lld" in cache.feature_sets():
        models.append(FusionModel(LLDSTATS, (LLDSTATS,)))
    pairs = [FusionModel(f"{video}+{audio}", (video, audio)) for video, audio in PAPER_PAIRS if video in nets and audio in nets]
    models += pairs
    if len(nets) > 1:
        audio_only = not any(n in VIDEO_NETS for n in nets)
        models.append(FusionModel("integrated-audio" if audio_only else "integrated", tuple(nets)))
    if len(pairs) > 1:
        models.append(FusionModel("integrated-decision", averages=tuple(p.name for p in pairs)))
    return models


def select_models(cache: Cache, names: str | None) -> list[FusionModel]:
    """The models named in ``--models`` (comma-separated), or all available ones."""
    models = available_models(cache)
    if not names:
        if not models:
            raise CacheError(
                f"cache {str(cache.path)!r} has no embeddings or LLDs to fuse;"
                f" compute them with `mvemo extract MANIFEST --cache {cache.path} --nets ...` (or --features lld)"
            )
        return models
    by_name = {m.name: m for m in models}
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in by_name:
            raise ConfigError(
                f"--models: {name!r} cannot be built from this cache (available: {', '.join(by_name) or 'none'});"
                f" compute its inputs with `mvemo extract MANIFEST --cache {cache.path} {_inputs_option(name)}`"
            )
        chosen.append(by_name[name])
    required = [by_name[m] for model in chosen for m in model.averages]  # a decision model needs its pairs
    return list(dict.fromkeys([*required, *chosen]))


def _inputs_option(model: str) -> str:
    """The ``mvemo extract`` options that compute a model's inputs: ``--features lld`` for lldstats, else its nets."""
    if model == LLDSTATS:
        return "--features lld"
    if model.startswith("integrated"):
        return "--nets ..."
    return f"--nets {','.join(part for part in model.split('+') if part != LLDSTATS)}"


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


def resolve_sets(cache: Cache, inputs: tuple[str, ...], fold: int | None) -> tuple[str, ...]:
    """The cached sets a model reads for test fold ``fold`` (``lldstats`` stands for the LLD statistics)."""
    return tuple(LLDSTATS if name == LLDSTATS else input_set(cache, name, fold) for name in inputs)


def features(cache: Cache, sets: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated float32 matrix of ``sets``, shape (n_clips, n_features), and the mask of rows all of them
    hold (float32 as cached: the heads' solver runs 3x faster than on float64, with the same accuracy)."""
    blocks, usable = [], np.ones(len(cache), dtype=bool)
    for set_name in sets:
        if set_name == LLDSTATS:
            X, done = lld_statistics(cache)
        else:
            X, done = cache.read_matrix(set_name), cache.done(set_name)
        blocks.append(X.reshape(len(cache), -1))
        usable &= done
    return np.concatenate(blocks, axis=1, dtype=np.float32), usable


def lld_statistics(cache: Cache) -> tuple[np.ndarray, np.ndarray]:
    """``lldstats`` of every clip of the cache, and the mask of clips with LLDs."""
    return summarize_lld(cache.read_matrix("lld"), cache.valid_lengths("lld")), cache.done("lld")


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


def protocol(cache: Cache) -> str:
    """``paper`` if any embedding set was fine-tuned on every clip (the papers' leaky protocol), else ``leakfree``."""
    for name in cache.feature_sets():
        if name.startswith("emb/") and cache.config(name).get("protocol") == "paper":
            return "paper"
    return "leakfree"
