"""The default fusion rule on the fine-tuned path: a net fine-tuned per fold has memorised the outer training rows, so
its inner out-of-fold probabilities are in-sample. The default (the plain late fusion) keeps it at its equal share,
a trimmed late fusion never lets it set the bar the other members are judged against, and no threshold is chosen on
its probabilities; a stack over-trusts it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.fuse.compose import Features, Late, Stack
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.fitting import Trainings, fit
from mvemo.fuse.heads.families import make_head
from mvemo.fuse.selection import SelectionConfig
from mvemo.manifests import Clip, Manifest

pytestmark = pytest.mark.heavy

HONEST = {"musicnn": 0.7, "msdvgg": 0.7}  # used as they are: each alone right on about four clips in five
TUNED = "twodcnn"
A, B = (
    Features(("a",)),
    Features(("b",)),
)  # fine-tuned per fold: it knows each fold's training rows by heart and little of the others
K = 3


def memorising_cache(path: Path, classes: tuple[str, ...], n_per_class: int = 30, seed: int = 0) -> Path:
    """Two honest inputs (``emb/<net>/all``) and ``TUNED``'s ``emb/twodcnn/fold<k>``: for the rows outside fold k (those
    that trained it) its class exactly, for fold k's rows a faint trace of it, as a net that memorised its rows."""
    rng = np.random.default_rng(seed)
    n = n_per_class * len(classes)
    media = path.parent / "media"
    media.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        (media / f"{i}.wav").write_bytes(i.to_bytes(4, "little"))
        clips.append(Clip(f"c{i}", classes[i % len(classes)], audio=media / f"{i}.wav", fold=(i // len(classes)) % K))
    manifest = Manifest(classes, tuple(clips))
    y, folds = manifest.y, np.array([c.fold for c in clips])
    dim = 8
    specs, values = [], {}
    for net, separation in HONEST.items():
        means = rng.standard_normal((len(classes), dim)) * separation
        name = f"emb/{net}/all"
        specs.append(FeatureSpec(name, (dim,), "float32", net, "1", {"finetune": "none"}, f"{net}-sha256"))
        values[name] = (means[y] + rng.standard_normal((n, dim))).astype(np.float32)
    means = rng.standard_normal((len(classes), dim)) * 3
    for k in range(K):
        name = f"emb/{TUNED}/fold{k}"
        trained = folds != k
        X = np.where(
            trained[:, None],
            means[y] + 0.05 * rng.standard_normal((n, dim)),
            0.1 * means[y] + rng.standard_normal((n, dim)),
        )
        config = {"finetune": "full", "protocol": "leakfree"}
        specs.append(FeatureSpec(name, (dim,), "float32", TUNED, "1", config, f"{TUNED}-sha256"))
        values[name] = X.astype(np.float32)
    with CacheWriter(path, manifest) as writer:
        writer.prepare(specs)
        for name, X in values.items():
            writer.write(name, range(n), X)
    return path


def test_the_default_keeps_a_memorising_net_at_its_equal_share_where_a_stack_trusts_it(tmp_path: Path) -> None:
    cache = memorising_cache(tmp_path / "c", ("calm", "sad", "tense"))
    members = ("musicnn", "msdvgg", TUNED)
    stack = f"stack({','.join(members)})"
    result = cross_validate(cache, models=f"{','.join(members)},integrated-audio,{stack}")
    accuracy = {name: m["accuracy"]["mean"] for name, m in result.metrics.items()}
    for fold in result.predictions["integrated-audio"].choices:
        assert list(fold["members"]) == [TUNED, "musicnn", "msdvgg"] and fold["weights"] == pytest.approx([1 / 3] * 3)
    trimmed = cross_validate(cache, models=f"late({','.join(members)},weights=trimmed)")
    for fold in next(iter(trimmed.predictions.values())).choices:
        kept = list(fold["members"])
        assert TUNED in kept and len(kept) >= 2, "the memoriser is kept, never judged; an honest member too"
        assert fold["weights"] == pytest.approx([1 / len(kept)] * len(kept)), "no more than its equal share"
        assert all(d["under"] != TUNED for d in fold["dropped"].values()), "its in-sample scores set no bar"
    assert accuracy[TUNED] < 0.6, "on clips it never trained on, the memoriser knows little"
    assert accuracy["integrated-audio"] >= max(accuracy["musicnn"], accuracy["msdvgg"])
    assert accuracy[stack] < accuracy["integrated-audio"]
    assert result.fine_tuned_models == [TUNED, "integrated-audio", stack]
    with Cache(cache) as reader:  # the stack of fold 0, fitted as its CV fitted it: where its meta-head looks
        y, folds, groups = reader.y, reader.folds, reader.groups
        blocks = {name: reader.read_matrix(f"emb/{name}/all") for name in HONEST} | {
            TUNED: reader.read_matrix(f"emb/{TUNED}/fold0")
        }
    trainings = Trainings(y, groups, 3, make_head(), SelectionConfig(), in_sample=frozenset({TUNED}))
    fitted = fit(Stack(tuple(Features((name,)) for name in members)), trainings.on(np.flatnonzero(folds != 0), blocks))
    weights = fitted.meta.linear_.weights  # (classes, 3 members x 3 log-probabilities), over standardized columns
    musicnn, msdvgg, tuned = (float(np.linalg.norm(weights[:, 3 * i : 3 * i + 3])) for i in range(3))
    assert tuned > 2 * max(musicnn, msdvgg), (
        "the meta-head leans on the member whose inner probabilities looked perfect"
    )


def test_no_threshold_is_chosen_on_in_sample_probabilities(tmp_path: Path) -> None:
    cache = memorising_cache(tmp_path / "c", ("calm", "tense"), n_per_class=45)
    honest = "late(musicnn,msdvgg)"
    result = cross_validate(cache, models=f"{honest},integrated-audio")
    assert result.predictions["integrated-audio"].thresholds == [0.5] * K, "its inner probabilities are in-sample"
    chosen = result.predictions[honest].thresholds
    assert len(set(chosen)) == K and 0.5 not in chosen, "out of sample at every level: each fold's best inner F1"


@pytest.mark.parametrize("node", [Stack((A, B)), Late((A, B), "inner")], ids=["stack", "inner-weights"])
def test_a_learned_combinations_inner_probabilities_read_no_fit_of_their_own_rows(
    node: Stack | Late, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thresholds and inner accuracy of a stack (or of inner weights) come from its inner probabilities: the labels
    of an inner validation fold must not move that fold's own probabilities, at either level. The inner folds are held
    as the original labels draw them, so that only the labels change."""
    from mvemo.fuse import fitting
    from mvemo.fuse.heads import linear
    from mvemo.manifests import folds

    rng = np.random.default_rng(0)
    n = 90
    y = np.arange(n) % 3
    blocks = {name: rng.standard_normal((3, 6))[y] * 0.8 + rng.standard_normal((n, 6)) for name in ("a", "b")}
    groups = [f"r{i}" for i in range(n)]
    original = dict(zip(groups, y))

    def splits_of_the_original_labels(labels: np.ndarray, rows: list[str], *, k: int, seed: int) -> list:
        return folds.inner_splits(np.array([original[g] for g in rows]), rows, k=k, seed=seed)

    monkeypatch.setattr(fitting, "inner_splits", splits_of_the_original_labels)
    monkeypatch.setattr(linear, "inner_splits", splits_of_the_original_labels)

    def inner_proba(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        training = Trainings(labels, groups, 3, make_head(), SelectionConfig()).on(np.arange(n), blocks)
        return fit(node, training, inner=True).inner_proba, training.splits()[0][1]

    before, first_fold = inner_proba(y)
    relabelled = y.copy()
    relabelled[first_fold] = (y[first_fold] + 1) % 3
    after, _ = inner_proba(relabelled)
    np.testing.assert_allclose(after[first_fold], before[first_fold], atol=1e-9)


def test_inner_weights_learn_nothing_from_a_memorising_nets_in_sample_probabilities(tmp_path: Path) -> None:
    """``late(...,weights=inner)`` fits its mixture on the members whose inner probabilities are out of sample; a member
    over a net fine-tuned on the rows keeps its equal share, so neither the mixture nor a choice above it trusts it."""
    cache = memorising_cache(tmp_path / "c", ("calm", "sad", "tense"))
    with Cache(cache) as reader:
        y, folds, groups = reader.y, reader.folds, reader.groups
        blocks = {name: reader.read_matrix(f"emb/{name}/all") for name in HONEST}
        blocks[TUNED] = reader.read_matrix(f"emb/{TUNED}/fold0")
    trainings = Trainings(y, groups, 3, make_head(), SelectionConfig(), in_sample=frozenset({TUNED}))
    members = (Features((TUNED,)), Features(("musicnn",)), Features(("msdvgg",)))
    fitted = fit(Late(members, "inner"), trainings.on(np.flatnonzero(folds != 0), blocks))
    assert fitted.weights[0] == pytest.approx(1 / 3), "the memoriser keeps its equal share, no more"
    assert fitted.weights.sum() == pytest.approx(1) and fitted.weights[1] != pytest.approx(fitted.weights[2])
    honest = fit(Late(members[1:], "inner"), trainings.on(np.flatnonzero(folds != 0), blocks))
    np.testing.assert_allclose(fitted.weights[1:], 2 / 3 * honest.weights, atol=1e-6)
