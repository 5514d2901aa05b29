from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.imported import _match, import_vectors
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.cache.verify import verify_cache
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.inputs import missing_reasons
from mvemo.fuse.models import incomplete_inputs
from mvemo.fuse.provenance import provenance
from mvemo.manifests import ConfigError
from mvemo.manifests.errors import ManifestError
from mvemo.pipeline.cli.main import cli
from tests.cache.helpers import MEL, row_values, stand_in_manifest
from tests.fuse.helpers import CLASSES, embedding_cache


def features_csv(path: Path, ids: list[str], values: np.ndarray, key: str = "song") -> Path:
    lines = [",".join([key, *(f"f{j}" for j in range(values.shape[1]))])]
    lines += [",".join([clip, *(repr(float(v)) for v in row)]) for clip, row in zip(ids, values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_imported_set_is_an_input_like_any_other(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"a": (4, 0.0)}, n_per_class=8)
    with Cache(cache) as reader:
        ids, y = reader.clip_ids, reader.y
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((len(ids), 3)) + 3.0 * y[:, None]).astype(np.float32)
    shuffled = rng.permutation(len(ids))
    file = features_csv(tmp_path / "mine.csv", [ids[i] for i in shuffled], values[shuffled])
    result = CliRunner().invoke(cli, ["cache", "import", str(cache), str(file), "--set", "mine", "--key", "song"])
    assert result.exit_code == 0, result.output
    with Cache(cache) as reader:
        np.testing.assert_array_equal(reader.read_matrix("mine"), values)
        assert reader.columns("mine") == ["f0", "f1", "f2"]
        assert provenance(reader)["mine"]["weights"].startswith("imported from mine.csv (sha256 ")
    metrics = cross_validate(cache, models="mine,a+mine").metrics
    assert metrics["mine"]["accuracy"]["mean"] > 0.9 and "a+mine" in metrics
    import_vectors(cache, "mine", features_csv(tmp_path / "fixed.csv", ids, values + 1), key="song")
    with Cache(cache) as reader:
        np.testing.assert_array_equal(reader.read_matrix("mine"), values + 1)
        assert provenance(reader)["mine"]["weights"].startswith("imported from fixed.csv"), (
            "a corrected file replaces it"
        )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda ids, v: ([*ids, "stranger"], np.vstack([v, v[:1]])),
            r"1 row\(s\) of no clip of the cache \('stranger'\)",
        ),
        (lambda ids, v: (ids + ids[:1], np.vstack([v, v[:1]])), r"1 row\(s\) of a clip already given \('c0'\)"),
        (lambda ids, v: (ids[1:], v[1:]), r"1 clip\(s\) without a row \('c0'\)"),
        (
            lambda ids, v: (ids, np.where(np.arange(v.size).reshape(v.shape) == 4, np.nan, v)),
            r"not finite float32 numbers \(line 3 \('c1'\), column 'f1'",
        ),
        (lambda ids, v: (ids, np.where(np.arange(v.size).reshape(v.shape) == 5, 1e300, v)), r"column 'f2': '1e\+300'"),
        (lambda ids, v: (ids, np.where(np.arange(v.size).reshape(v.shape) == 0, np.inf, v)), r"column 'f0': 'inf'"),
    ],
)
def test_a_bad_csv_is_refused_whole_naming_its_rows(tmp_path: Path, edit, message: str) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"a": (4, 1.0)}, n_per_class=4)
    with Cache(cache) as reader:
        ids = reader.clip_ids
    values = np.arange(len(ids) * 3, dtype=np.float64).reshape(len(ids), 3)
    file = features_csv(tmp_path / "bad.csv", *edit(list(ids), values))
    with pytest.raises(ConfigError, match=message):
        import_vectors(cache, "mine", file)
    with Cache(cache) as reader:
        assert "mine" not in reader.feature_sets(), "nothing written"
    result = CliRunner().invoke(cli, ["cache", "import", str(cache), str(file), "--set", "mine"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_malformed_files_and_names_are_refused(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"a": (4, 1.0)}, n_per_class=4, vectors={"descriptors": (3, 1.0)})
    twice = tmp_path / "twice.csv"
    twice.write_text("song,x,x\nc0,1,2\n")
    with pytest.raises(ConfigError, match=r"column name\(s\) given twice \('x'\)"):
        import_vectors(cache, "mine", twice)
    short = tmp_path / "short.csv"
    short.write_text("song,f0\nc0,1,2\n")
    with pytest.raises(ConfigError, match="line 2: 3 fields, the header has 2"):
        import_vectors(cache, "mine", short)
    with pytest.raises(ConfigError, match="no column 'id'"):
        import_vectors(cache, "mine", short, key="id")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("song,f0\nc\xe9,1\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        import_vectors(cache, "mine", latin)
    with pytest.raises(ConfigError, match="computed set has that name"):
        import_vectors(cache, "descriptors", features_csv(tmp_path / "ok.csv", ["c0"], np.ones((1, 1))))
    with pytest.raises(ConfigError, match=r"one word of lowercase letters, digits and '_'; e\.g\. 'emb_a_all'"):
        import_vectors(cache, "emb/a/all", tmp_path / "ok.csv")
    result = CliRunner().invoke(cli, ["cache", "import", str(cache), str(tmp_path / "ok.csv"), "--set", "Mine"])
    assert result.exit_code == 2 and "e.g. 'mine'" in result.output and "emb/i3d" not in result.output
    result = CliRunner().invoke(cli, ["cache", "import", str(cache), str(tmp_path / "ok.csv"), "--set", "mine"])
    assert "e.g." not in result.output, "the name suggested is one import takes"
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("song;f0\nc0;1,5\n")
    with pytest.raises(ConfigError, match="one field that holds ';': mvemo reads comma-separated values"):
        import_vectors(cache, "mine", semicolons)
    for text in ("1_000", "\u0661\u0662", "0x10", "1e", "--1"):
        odd = tmp_path / "odd.csv"
        odd.write_text("song,f0\n" + "".join(f"c{i},{text if i == 3 else 1.0}\n" for i in range(12)), encoding="utf-8")
        with pytest.raises(
            ConfigError, match=r"1 value\(s\) not finite float32 numbers \(line 5 \('c3'\), column 'f0'"
        ):
            import_vectors(cache, "mine", odd)
    import_vectors(cache, "a", features_csv(tmp_path / "noise.csv", [f"c{i}" for i in range(12)], np.ones((12, 1))))
    with pytest.raises(ConfigError, match="set 'a' has the name of a net, of lldstats or of a model"):
        cross_validate(cache, models="a")  # a set imported through the API under a net's name never stands for it
    for taken in ("musicnn", "musicnn.mine", "lldstats", "integrated", "expressive"):
        result = CliRunner().invoke(cli, ["cache", "import", str(cache), str(tmp_path / "ok.csv"), "--set", taken])
        assert result.exit_code == 2 and "mvemo names a net, a feature set or a model so" in result.output, taken


def test_an_imported_set_outlives_gc_and_a_grown_cache_asks_for_it_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with CacheWriter(cache, stand_in_manifest(tmp_path / "media")) as writer:
        writer.prepare([MEL])
        for row in range(12):
            writer.write("mel", [row], [row_values(MEL, row)])
    ids = [f"c/{i}" for i in range(15)]
    values = np.arange(45, dtype=np.float64).reshape(15, 3)
    import_vectors(cache, "mine", features_csv(tmp_path / "first.csv", ids[:12], values[:12]), key="song")
    result = CliRunner().invoke(cli, ["cache", "gc", str(cache), "--features", "mel"])
    assert result.exit_code == 0, result.output
    with Cache(cache) as reader:
        assert reader.feature_sets() == ["mel", "mine"], "gc keeps what no extract writes again"
        assert incomplete_inputs(reader) == {}
    grown = stand_in_manifest(tmp_path / "media", n=15)
    with CacheWriter(cache, grown) as writer:
        writer.prepare([MEL])
    again = f"`mvemo cache import {cache} FILE --set mine --key song` again"
    with Cache(cache) as reader:
        why = incomplete_inputs(reader)["mine"]
        assert "3 of 15 clips not computed" in why and again in why and "mvemo extract" not in why
        assert again in missing_reasons(reader, "mine")[14]

    (tmp_path / "media" / "clip 0.mp4").write_bytes(b"edited")
    extract_first = f"run `mvemo extract MANIFEST --cache {cache}` (it records the changed media), then {again}"
    assert any(extract_first in problem for problem in verify_cache(cache).problems)
    with CacheWriter(cache, grown) as writer:  # what extract does first: record the changed media
        writer.prepare([MEL])
    with Cache(cache) as reader:
        assert extract_first in incomplete_inputs(reader)["mine"]
    import_vectors(cache, "mine", features_csv(tmp_path / "all.csv", ids, values), key="song")
    with Cache(cache) as reader:
        assert "mine" not in incomplete_inputs(reader)
        np.testing.assert_array_equal(reader.read_matrix("mine"), values.astype(np.float32))
    assert not any("mine" in problem for problem in verify_cache(cache).problems), "the advice, followed, clears it"


def test_an_npz_imports_as_its_csv_does_and_bad_arrays_are_refused(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"a": (4, 1.0)}, n_per_class=4)
    with Cache(cache) as reader:
        ids = reader.clip_ids
    values = np.arange(len(ids) * 2, dtype=np.float64).reshape(len(ids), 2)
    np.savez(tmp_path / "mine.npz", clip_id=np.array(ids[::-1]), features=values[::-1], columns=np.array(["u", "v"]))
    import_vectors(cache, "mine", tmp_path / "mine.npz")
    with Cache(cache) as reader:
        np.testing.assert_array_equal(reader.read_matrix("mine"), values)
        assert reader.columns("mine") == ["u", "v"]
    np.savez(tmp_path / "bytes.npz", clip_id=np.array(ids, dtype="S"), features=values, columns=np.array([b"u", b"v"]))
    import_vectors(cache, "mine", tmp_path / "bytes.npz")
    with Cache(cache) as reader:
        np.testing.assert_array_equal(reader.read_matrix("mine"), values)
        assert reader.columns("mine") == ["u", "v"], "bytes read as the text they encode"
    np.savez(tmp_path / "nan.npz", clip_id=np.array(ids), features=np.where(values == 3, np.nan, values))
    with pytest.raises(ConfigError, match=r"1 value\(s\) not finite float32 numbers \(row 1 \('c1'\), column 'f1'\)"):
        import_vectors(cache, "other", tmp_path / "nan.npz")
    np.savez(tmp_path / "keyless.npz", features=values)
    with pytest.raises(ConfigError, match=r"needs arrays 'clip_id' and 'features' \(it has \['features'\]\)"):
        import_vectors(cache, "other", tmp_path / "keyless.npz")
    np.savez(tmp_path / "short.npz", clip_id=np.array(ids[:-1]), features=values)
    with pytest.raises(ConfigError, match="a row per entry of 'clip_id'"):
        import_vectors(cache, "other", tmp_path / "short.npz")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    (tmp_path / "pickled.npz").write_bytes((tmp_path / "objects.npy").read_bytes())
    with pytest.raises(ConfigError, match=r"not a NumPy \.npz of plain arrays"):
        import_vectors(cache, "other", tmp_path / "pickled.npz")
    with Cache(cache) as reader:
        assert "other" not in reader.feature_sets()


def test_rows_match_a_clip_id_or_a_stem_that_one_clip_alone_has() -> None:
    clips = ["Q1/a.ogg", "Q2/b.ogg", "Q3/x.ogg", "Q4/x.ogg"]
    assert _match(clips, ["b", "Q1/a.ogg", "Q3/x.ogg", "Q4/x.ogg"], "f") == [1, 0, 2, 3]
    with pytest.raises(ConfigError, match=r"row\(s\) of no clip of the cache \('x'\)"):
        _match(clips, ["a", "b", "x", "Q4/x.ogg"], "f")


def test_a_model_over_an_imported_set_predicts_new_clips_from_their_given_columns(tmp_path: Path) -> None:
    from mvemo.fuse.saved.model import load_fusion_model
    from mvemo.fuse.stage import fuse_cache
    from mvemo.pipeline.predict.predictor import Predictor

    cache = embedding_cache(tmp_path / "c.h5", nets={"a": (4, 1.0)}, n_per_class=6)
    with Cache(cache) as reader:
        ids, y = reader.clip_ids, reader.y
    rng = np.random.default_rng(1)
    values = np.column_stack([y + 0.1 * rng.standard_normal(len(y)), -y]).astype(float)
    import_vectors(cache, "mine", features_csv(tmp_path / "mine.csv", ids, values), key="song")
    _, folder = fuse_cache(cache, tmp_path / "out", models="mine")
    saved = load_fusion_model(folder)
    with pytest.raises(ConfigError, match=r"reads mine, imported .* from mine.csv: give its columns .* --features"):
        Predictor(folder, "mine")

    new = rng.standard_normal((3, 2)) + np.array([[0.0, 0.0], [1.0, -1.0], [2.0, -2.0]])
    files = [tmp_path / f"new{i}.wav" for i in range(4)]
    for file in files:
        file.write_bytes(b"not read: the model computes nothing from media")
    given = tmp_path / "given.csv"  # the columns in another order, keyed by file stem; new3 has no row
    given.write_text("id,f1,f0\n" + "".join(f"new{i},{float(b)!r},{float(a)!r}\n" for i, (a, b) in enumerate(new)))
    args = ["predict", str(folder), *map(str, files), "--model", "mine", "--json"]
    result = CliRunner().invoke(cli, [*args, "--features", str(given)])
    assert result.exit_code == 3, result.output
    results = json.loads(result.stdout)
    expected = saved.predict("mine", {"mine": new})
    for row, p in zip(results[:3], expected):
        np.testing.assert_allclose([row["probabilities"][c] for c in saved.classes], p, atol=1e-6)
    assert [r["label"] for r in results[:3]] == [saved.classes[i] for i in expected.argmax(1)]
    error = results[3]["error"]
    assert "new3.wav': " in error and "given.csv has no row for it" in error and "label" not in results[3]

    np.savez(
        tmp_path / "given.npz", song=np.array(["new0", "new1", "new2"]), features=new, columns=np.array(["f0", "f1"])
    )
    result = CliRunner().invoke(cli, [*args, "--features", str(tmp_path / "given.npz")])
    assert [r.get("label") for r in json.loads(result.stdout)] == [r.get("label") for r in results], (
        "keyed by the import's key"
    )

    result = CliRunner().invoke(cli, [*args, "--features", str(given), "--features", str(tmp_path / "given.npz")])
    assert result.exit_code == 2 and "both hold every column of mine" in result.output
    result = CliRunner().invoke(cli, ["predict", str(folder), str(files[0]), "--model", "mine", "--timeline"])
    assert result.exit_code == 2 and "imported once per clip, not per window" in result.output, "not: give --features"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    same_stem = [tmp_path / d / "new0.wav" for d in "ab"]
    for file in same_stem:
        file.write_bytes(b"two clips of one stem")
    result = CliRunner().invoke(cli, ["predict", str(folder), *map(str, same_stem), "--json", "--features", str(given)])
    assert result.exit_code == 3 and all("has no row for it" in r["error"] for r in json.loads(result.stdout))

    lacking = tmp_path / "lacking.csv"
    lacking.write_text("id,f0\nnew0,1.0\n")
    result = CliRunner().invoke(cli, [*args, "--features", str(lacking)])
    assert result.exit_code == 2 and "lacks 1 ('f1')" in result.output
    twice = tmp_path / "twice.csv"
    twice.write_text("id,f0,f1\nnew0,1,2\nnew0,1,2\n")
    result = CliRunner().invoke(cli, [*args, "--features", str(twice)])
    assert result.exit_code == 2 and "1 row(s) of a clip already given ('new0')" in result.output


def test_predict_features_refuse_what_import_refuses_and_a_model_of_imported_sets_reads_no_media(
    tmp_path: Path,
) -> None:
    """A clip given a row under its id and another under its stem (other values): import refuses the file, and
    predict took one row silently. A model of imported sets alone needs no media file at all."""
    from mvemo.fuse.stage import fuse_cache

    cache = embedding_cache(tmp_path / "c.h5", nets={"a": (4, 1.0)}, n_per_class=6)
    with Cache(cache) as reader:
        ids, y = reader.clip_ids, reader.y.astype(float)
    values = np.column_stack([y, -y])
    import_vectors(cache, "mine", features_csv(tmp_path / "mine.csv", ids, values), key="song")
    _, folder = fuse_cache(cache, tmp_path / "out", models="mine")
    by_id_and_stem = [*ids, "c0"], np.vstack([values, values[:1] + 5])
    with pytest.raises(ConfigError) as refused:
        import_vectors(cache, "mine", features_csv(tmp_path / "both.csv", *by_id_and_stem), key="song")
    import_words = re.search(r"1 row\(s\) of a clip already given \('c0'\)", str(refused.value))
    assert import_words

    ghost = str(tmp_path / "ghost" / "nofile.mp4")  # no such file, nor folder
    given = tmp_path / "given.csv"
    given.write_text(f"song,f0,f1\n{ghost},2.0,-2.0\nnofile,0.0,0.0\n")
    result = CliRunner().invoke(cli, ["predict", str(folder), ghost, "--model", "mine", "--features", str(given)])
    assert result.exit_code == 2, result.output
    assert (
        f"{given}: 1 row(s) of a clip already given ('nofile'); every clip needs one row, keyed by its clip id"
        in result.output
    )

    given.write_text("song,f0,f1\nnofile,2.0,-2.0\n")
    result = CliRunner().invoke(
        cli, ["predict", str(folder), ghost, "--model", "mine", "--features", str(given), "--json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["label"] == CLASSES[2] and row["in_training"] is None


def test_two_sets_of_the_same_column_names_are_not_read_from_one_file(tmp_path: Path) -> None:
    from mvemo.fuse.stage import fuse_cache

    cache = embedding_cache(tmp_path / "c.h5", nets={"a": (4, 1.0)}, n_per_class=6)
    with Cache(cache) as reader:
        ids, y = np.array(reader.clip_ids), reader.y.astype(float)
    np.savez(tmp_path / "x.npz", clip_id=ids, features=np.column_stack([y, y, -y]))
    np.savez(tmp_path / "z.npz", clip_id=ids, features=np.column_stack([-y, y]))
    import_vectors(cache, "xs", tmp_path / "x.npz")
    import_vectors(cache, "zs", tmp_path / "z.npz")  # both with the default column names f0, f1, ...
    _, folder = fuse_cache(cache, tmp_path / "out", models="xs+zs")
    new = tmp_path / "new.wav"
    new.write_bytes(b"not read")
    np.savez(tmp_path / "newx.npz", clip_id=np.array(["new"]), features=np.array([[2.0, 2.0, -2.0]]))
    args = ["predict", str(folder), str(new), "--model", "xs+zs", "--features", str(tmp_path / "newx.npz")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "xs and zs would both read" in result.output and "'f0', 'f1'" in result.output
