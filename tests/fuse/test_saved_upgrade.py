"""A model saved in format 2 (a late record said ``weighted``) opens as format 3 and predicts as it did; format 1 is
still refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.fuse.saved.model import MODEL_JSON, load_fusion_model
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.stage import fuse_cache
from mvemo.manifests import ConfigError
from tests.fuse.helpers import embedding_cache
from tests.fuse.test_saved_targets import targeted

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

MODELS = "a,b,late(a,b),late(a,b,weights=inner),stack(late(a,b,weights=inner),a),best(late(a,b),a)"
QUICK = SelectionConfig(inner_folds=3, C_grid=(1.0,))  # what is chosen on inner folds does not matter here


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embedding_cache(
        tmp_path_factory.mktemp("u") / "cache", nets={"a": (6, 2.0), "b": (4, 1.0)}, n_per_class=10, retarget=targeted
    )


def as_format_2(record: Any) -> Any:
    """A format-3 record as format 2 wrote it: a late record's ``rule`` (equal or inner) as ``weighted``, no
    ``dropped``; every nested record too."""
    if isinstance(record, list):
        return [as_format_2(item) for item in record]
    if not isinstance(record, dict):
        return record
    old = {key: as_format_2(value) for key, value in record.items()}
    if old.get("kind") == "late":
        assert old.pop("dropped") == {} and old["rule"] in ("equal", "inner")
        old["weighted"] = old.pop("rule") == "inner"
    return old


def saved_as_format_2(folder: Path, copy: Path) -> Path:
    shutil.copytree(folder, copy)
    document = json.loads((folder / MODEL_JSON).read_text())
    (copy / MODEL_JSON).write_text(json.dumps(as_format_2(document) | {"format": 2}))
    return copy


@pytest.mark.parametrize("target", ["label", "tags"])
def test_a_format_2_model_opens_and_predicts_as_its_format_3_twin(cache: Path, tmp_path: Path, target: str) -> None:
    fuse_cache(cache, tmp_path / "fused", target=target, models=MODELS, selection=QUICK)
    new = load_fusion_model(tmp_path / "fused" / "model")
    old = load_fusion_model(saved_as_format_2(tmp_path / "fused" / "model", tmp_path / "format2"))
    assert '"weighted"' in (tmp_path / "format2" / MODEL_JSON).read_text(), "the copy is format 2's"
    assert old.document == new.document and old.models == new.models
    with Cache(cache) as c:
        inputs = {name: c.read_matrix(f"emb/{name}/all") for name in ("a", "b")}
    for name in new.models:
        np.testing.assert_array_equal(old.predict(name, inputs), new.predict(name, inputs), err_msg=name)


def test_a_format_1_model_is_still_refused_in_one_line(cache: Path, tmp_path: Path) -> None:
    fuse_cache(cache, tmp_path / "fused", models="a,late(a,b)", selection=QUICK)
    folder = saved_as_format_2(tmp_path / "fused" / "model", tmp_path / "format1")
    document = json.loads((folder / MODEL_JSON).read_text())
    (folder / MODEL_JSON).write_text(json.dumps(document | {"format": 1}))
    refusal = r"model format 1, this one reads 3, 4 and 5\); save the model again"
    with pytest.raises(ConfigError, match=refusal) as refused:
        load_fusion_model(folder)
    assert "\n" not in str(refused.value)
