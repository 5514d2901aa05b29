"""predict's console summary, counted clip by clip: what each result adds."""

from __future__ import annotations

from types import SimpleNamespace

from mvemo.pipeline.predict.tally import Tally


def model_of(target: str, outputs: list[str]) -> SimpleNamespace:
    classes = outputs if target == "label" else []
    return SimpleNamespace(saved=SimpleNamespace(target=target), classes=classes, outputs=outputs)


def test_a_tally_counts_labels_accuracy_training_clips_and_failures() -> None:
    model = model_of("label", ["calm", "tense"])
    tally = Tally(model, {"a": "calm", "b": "calm", "c": "other"})  # type: ignore[arg-type]
    tally.add({"clip_id": "a", "label": "calm", "in_training": True})
    tally.add({"clip_id": "b", "label": "tense", "in_training": False})
    tally.add({"clip_id": "c", "label": "tense", "in_training": None})
    tally.add({"clip_id": "d", "error": "no audio"})
    assert (tally.clips, tally.labelled, dict(tally.called)) == (4, 3, {"calm": 1, "tense": 2})
    assert (tally.right, tally.known) == (1, 2), "a label the model does not know is not scored"
    assert tally.seen == ["a"] and tally.failed == [("d", "no audio")] and tally.signs == []


def test_a_tally_of_tags_counts_each_tag_called_and_of_values_keeps_signs_of_quadrant_labels() -> None:
    tags = Tally(model_of("tags", ["happy", "sad"]), {})  # type: ignore[arg-type]
    tags.add({"clip_id": "a", "label": "happy;sad"})
    tags.add({"clip_id": "b", "label": ""})
    assert dict(tags.called) == {"happy": 1, "sad": 1} and tags.labelled == 2 and tags.known == 0

    values_model = model_of("valence,arousal", ["valence", "arousal"])
    values = Tally(values_model, {"a": "Q2", "b": "happy"})  # type: ignore[arg-type]
    values.add({"clip_id": "a", "label": "Q1", "values": {"valence": 0.5, "arousal": -0.25}})
    values.add({"clip_id": "b", "label": "Q3", "values": {"valence": -1.0, "arousal": -1.0}})
    assert values.signs == [([0.5, -0.25], "Q2")] and values.called["Q1"] == 1 and values.called["Q4"] == 0
