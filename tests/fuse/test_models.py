"""What stage two reads from a cache: LLD statistics in chunks of clips, and standardization that a column constant
up to rounding cannot blow up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mvemo.fuse.inputs
from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.extract.nets import NET_GROUPS, expand_nets
from mvemo.fuse.heads.linear import LogisticHead
from mvemo.fuse.heads.standardize import standardization
from mvemo.fuse.inputs import lld_statistics, summarize_lld
from mvemo.fuse.models import ENCODERS, MUSIC_ENCODERS, available_models
from mvemo.manifests import Clip, Manifest
from tests.fuse.helpers import embedding_cache


def lld_cache(path: Path, lengths: list[int], *, frames: int = 40, columns: int = 5) -> Path:
    media = path.parent / "media"
    media.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(len(lengths)):
        (media / f"{i}.wav").write_bytes(i.to_bytes(4, "little"))
        clips.append(Clip(f"c{i}", "ab"[i % 2], audio=media / f"{i}.wav", fold=i % 2))
    rng = np.random.default_rng(0)
    values = [(rng.standard_normal((n, columns)) * (1 + i % 3) + i).astype(np.float32) for i, n in enumerate(lengths)]
    spec = FeatureSpec("lld", (frames, columns), "float32", "test", "1", variable_length=True)
    with CacheWriter(path, Manifest(("a", "b"), tuple(clips))) as writer:
        writer.prepare([spec])
        writer.write("lld", range(len(lengths)), values)
    return path


def test_lld_statistics_read_in_chunks_equal_the_whole_tensor_summarized(tmp_path: Path, monkeypatch) -> None:
    lengths = [40, 12, 1, 33, 40, 7, 25, 40, 3, 18, 40]
    cache = lld_cache(tmp_path / "c", lengths)
    with Cache(cache) as reader:
        whole = summarize_lld(reader.read_matrix("lld"), reader.valid_lengths("lld"))
        monkeypatch.setattr(mvemo.fuse.inputs, "LLD_CHUNK_ROWS", 4)
        read = []
        original = reader.read_rows
        monkeypatch.setattr(reader, "read_rows", lambda name, rows=None: read.append(len(rows)) or original(name, rows))
        stats, done = lld_statistics(reader)
    assert read == [4, 4, 3], "never more than a chunk of clips at once"
    assert stats == pytest.approx(whole.astype(np.float32), rel=1e-6) and done.all()
    assert stats[2, 5:] == pytest.approx(0.0), "a one-frame clip has no spread"


def test_a_column_constant_up_to_rounding_is_scaled_by_its_level() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3)) * [1.0, 2.0, 1e-9] + [0.0, 0.0, 0.5]
    _, scale = standardization(X)
    assert scale[:2] == pytest.approx(X[:, :2].std(axis=0))
    typical = np.median(X.std(axis=0))
    assert scale[2] == pytest.approx(max(0.5, typical)), (
        "the near-constant column is scaled by its level, not its noise"
    )
    assert standardization(np.zeros((5, 2)))[1] == pytest.approx([1.0, 1.0])
    y = (X[:, 0] > 0).astype(int)
    head = LogisticHead(C=1.0).fit(X, y)
    shifted = X[:5].copy()
    shifted[:, 2] += 0.1  # new clips where that column moved a little
    assert head.predict_proba(shifted) == pytest.approx(head.predict_proba(X[:5]), abs=0.05)


def test_the_music_encoders_fuse_late_and_the_integrated_model_is_the_plain_late_fusion_of_every_input(
    tmp_path: Path,
) -> None:
    encoders = {name: (6, 0.5) for name in MUSIC_ENCODERS}
    cache = embedding_cache(tmp_path / "c", nets=encoders, vectors={"descriptors": (5, 0.5)})
    with Cache(cache) as reader:
        models = {m.name: m.node.expr for m in available_models(reader)}
    assert models[ENCODERS] == f"late({','.join(MUSIC_ENCODERS)})"
    assert models["integrated-audio"] == f"late({','.join([*MUSIC_ENCODERS, 'descriptors'])})"
    video = embedding_cache(tmp_path / "v", nets={"musicnn": (6, 0.5), "i3d": (6, 0.5)}, vectors={"faces": (5, 0.5)})
    with Cache(video) as reader:
        assert {m.name: m.node.expr for m in available_models(reader)}["integrated"] == "late(musicnn,i3d,faces)"
    offline = tuple(name for name in MUSIC_ENCODERS if name != "clap")
    assert NET_GROUPS[ENCODERS] == offline, "stage one's --nets encoders are stage two's encoders, but CLAP's download"
    assert expand_nets(("i3d", "encoders", "musicnn")) == ("i3d", *offline)
    one = embedding_cache(tmp_path / "one", nets={"musicnn": (6, 0.5)}, vectors={"descriptors": (5, 0.5)})
    with Cache(one) as reader:
        assert ENCODERS not in {m.name for m in available_models(reader)}, "one encoder is no ensemble"


def test_an_inputs_modality_is_what_its_sets_record_they_read(tmp_path: Path) -> None:
    """A net's embedding is of the video modality where its sets record reading a clip's frames, as stage one writes
    them for every net that reads frames; the faces are video, the handcrafted sets audio."""
    from mvemo.cache.layout import modality as set_modality
    from mvemo.extract.nets import NET_NAMES, input_kind
    from mvemo.fuse.models import modality

    nets = {"i3d": (4, 1.0), "c3d": (4, 1.0), "musicnn": (4, 1.0), "made_up": (4, 1.0)}
    cache = embedding_cache(
        tmp_path / "c", nets=nets, vectors={"faces": (4, 1.0), "descriptors": (4, 1.0)}, n_per_class=4
    )
    with Cache(cache) as opened:
        read = {name: modality(opened, name) for name in [*nets, "faces", "descriptors"]}
    assert read == {
        "i3d": "video",
        "c3d": "video",
        "musicnn": "audio",
        "made_up": "audio",
        "faces": "video",
        "descriptors": "audio",
    }
    kinds = {net: input_kind(net) for net in NET_NAMES}
    video = {
        net
        for net, kind in kinds.items()
        if any(set_modality(k) == "video" for k in ([kind] if isinstance(kind, str) else kind))
    }
    assert video == {"c3d", "i3d", "r3d_18", "r2plus1d_18", "mc3_18"}, "each net's own record of what it reads"


def test_a_named_model_is_found_wherever_models_name_it() -> None:
    """The models whose inputs the cache's complete inputs decide, alone or nested; integrated(a,b) names its own."""
    from mvemo.fuse.models import names_a_named_model

    named = [
        "integrated",
        "late(integrated,lldstats)",
        "a,integrated-audio",
        "best(encoders,a)",
        "integrated(a,b),encoders",
    ]
    unnamed = ["a", "integrated(a,b)", "encoders2", "late(a,b,weights=trimmed)"]
    assert [names_a_named_model(n) for n in named + unnamed] == [True] * len(named) + [False] * len(unnamed)


def test_stage_two_knows_every_net_stage_one_runs() -> None:
    """Its order of the nets in reports, and the names an imported set may not take, cover the registry."""
    from mvemo.extract.nets import NET_NAMES
    from mvemo.fuse.models import NETS

    assert sorted(NETS) == sorted(NET_NAMES)
