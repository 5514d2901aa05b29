"""Stage one's steps run alone, as ``extract_features`` runs them: each on a cache handle opened for the call."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from mvemo.cache.handle import CacheHandle
from mvemo.extract.embed import EmbedSummary, export_embeddings
from mvemo.extract.features import FeatureRunSummary, compute_feature_sets
from mvemo.extract.finetune.train import TrainConfig
from mvemo.extract.finetune.units import FinetuneSummary, finetune_embeddings
from mvemo.manifests.schema import Manifest


def features_into(
    manifest: Manifest, path: str | os.PathLike[str], names: Iterable[str], **options: Any
) -> FeatureRunSummary:
    with CacheHandle(path, manifest) as cache:
        return compute_feature_sets(manifest, cache, names, **options)


def embeddings_into(
    manifest: Manifest, path: str | os.PathLike[str], nets: Iterable[str], **options: Any
) -> EmbedSummary:
    with CacheHandle(path, manifest) as cache:
        return export_embeddings(cache, nets, **options)


def finetune_into(
    manifest: Manifest, path: str | os.PathLike[str], nets: Iterable[str], config: TrainConfig, **options: Any
) -> FinetuneSummary:
    with CacheHandle(path, manifest) as cache:
        return finetune_embeddings(cache, nets, config, **options)
