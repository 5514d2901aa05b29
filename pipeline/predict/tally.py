"""What ``mvemo predict`` says of a run, added up clip by clip: a catalogue's results stream into its CSV and are not
kept for the summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mvemo.manifests.targets import QUADRANTS, VALUE_COLUMNS
from mvemo.pipeline.predict.predictor import Predictor, categories_of


class Tally:
    """The counts of one run's results (``Predictor.predict``'s, and an earlier run's that a resumed CSV holds).

    Attributes
    ----------
    clips, labelled : int
        The results added, and those with a label (the others failed).
    called : Counter
        What the model named clips by: each class, tag called, or quadrant, by clip.
    right, known : int
        For a model of classes, the clips it labelled as ``labels`` does, and the clips whose label in ``labels`` is one
        of its classes.
    signs : list of (list of float, str)
        For a valence and arousal model, the values of each clip that ``labels`` gives a quadrant, and that quadrant
        (``fuse.metrics.sign_agreement`` scores them).
    seen : list of str
        The clips whose media the model trained on.
    failed : list of (str, str)
        Each failed clip and its error.
    """

    def __init__(self, predictor: Predictor, labels: dict[str, str]) -> None:
        self.target, self.classes, self.labels = predictor.saved.target, predictor.classes, labels
        self.values = predictor.outputs == list(VALUE_COLUMNS)
        self.clips = self.labelled = self.right = self.known = 0
        self.called: Counter[str] = Counter({c: 0 for c in categories_of(self.target, predictor.outputs)})
        self.signs: list[tuple[list[float], str]] = []
        self.seen: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def add(self, result: dict[str, Any]) -> None:
        self.clips += 1
        if "error" in result:
            self.failed.append((result["clip_id"], result["error"]))
            return
        self.labelled += 1
        self.called.update(name for name in result["label"].split(";") if name)
        if result.get("in_training"):
            self.seen.append(result["clip_id"])
        given = self.labels.get(result["clip_id"])
        if self.target == "label" and given in self.classes:
            self.known += 1
            self.right += result["label"] == given
        if self.values and given in QUADRANTS:
            self.signs.append(([result["values"][name] for name in VALUE_COLUMNS], given))
