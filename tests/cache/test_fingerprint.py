from __future__ import annotations

import copy
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvemo.cache.fingerprint import fingerprint, fingerprint_record, media_hash, media_stat_key, record_diff

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

scalars = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.booleans()
)
configs = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(
        scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(min_size=1, max_size=4), scalars, max_size=3)
    ),
    min_size=1,
    max_size=8,
)


def record(config) -> dict:
    return fingerprint_record(extractor="mel", extractor_version="1", config=config, weights_sha256="")


def shuffled(value):
    if isinstance(value, dict):
        items = list(value.items())
        random.Random(len(items)).shuffle(items)
        return {k: shuffled(v) for k, v in items}
    return value


@given(configs)
def test_dict_order_does_not_change_the_fingerprint(config) -> None:
    assert fingerprint(record(config)) == fingerprint(record(shuffled(copy.deepcopy(config))))


@given(configs, st.data())
def test_any_changed_value_changes_the_fingerprint_and_is_named(config, data) -> None:
    key = data.draw(st.sampled_from(sorted(config)))
    new_value = data.draw(scalars.filter(lambda v: repr(v) != repr(config[key]) and v != config[key]))
    changed = {**config, key: new_value}
    assert fingerprint(record(config)) != fingerprint(record(changed))
    assert record_diff(record(config), record(changed)) == [f"config.{key}"]


def test_every_field_of_the_record_counts() -> None:
    base = fingerprint_record(extractor="i3d", extractor_version="1", config={"a": 1}, weights_sha256="00")
    for field, value in (
        ("extractor", "c3d"),
        ("extractor_version", "2"),
        ("weights_sha256", "11"),
        ("schema_version", 99),
    ):
        assert fingerprint({**base, field: value}) != fingerprint(base)
        assert record_diff(base, {**base, field: value}) == [field]


def test_media_hash_follows_content_not_time(tmp_path) -> None:
    a = tmp_path / "a.mp4"
    a.write_bytes(b"abc")
    first = media_hash([a, None])
    key = media_stat_key([a, None])
    a.write_bytes(b"abc")
    assert media_hash([a, None]) == first
    a.write_bytes(b"abd")
    assert media_hash([a, None]) != first
    assert media_hash([None, a]) != media_hash([a, None]), "which modality a file gives counts"
    assert isinstance(key, str) and len(key) == 64
