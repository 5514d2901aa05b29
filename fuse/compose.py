"""Fusion models as trees over the cached inputs (``fuse.fitting`` fits them, every choice made on inner folds).

A model is one of:

- ``Features(a, b, ...)``, written ``a+b``: feature level, the inputs' columns
  concatenated (each standardized by the head) into one head;
- ``Late(m, n, ...)``, written ``late(m,n)``: decision level, the mean of the
  members' probabilities; with ``weights=trimmed`` the mean of the members that the
  inner folds do not show clearly weaker than the best (``fuse.selection.trim``);
  with ``weights=inner`` a mixture whose weights maximize the likelihood of the
  inner folds' out-of-fold probabilities (a member in-sample there keeps its equal share);
- ``Stack(m, n, ...)``, written ``stack(m,n)``: a logistic meta-head over the
  log-probabilities of the members, trained on their inner out-of-fold ones;
- ``Best(m, n, ...)``, written ``best(m,n)``: the member with the best inner
  score (``fuse.selection.inner_score`` of its inner out-of-fold probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Features:
    inputs: tuple[str, ...]

    @property
    def expr(self) -> str:
        return "+".join(self.inputs)

    @property
    def members(self) -> tuple[Node, ...]:
        return ()


# How a late fusion weighs its members: equally, equally over those not clearly weaker than the best, or by a mixture
# fitted on inner folds.
LATE_WEIGHTS = ("equal", "trimmed", "inner")


@dataclass(frozen=True)
class Late:
    members: tuple[Node, ...]
    weights: str = "equal"

    @property
    def expr(self) -> str:
        weights = "" if self.weights == "equal" else f",weights={self.weights}"
        return f"late({','.join(m.expr for m in self.members)}{weights})"


@dataclass(frozen=True)
class Stack:
    members: tuple[Node, ...]

    @property
    def expr(self) -> str:
        return f"stack({','.join(m.expr for m in self.members)})"


@dataclass(frozen=True)
class Best:
    members: tuple[Node, ...]

    @property
    def expr(self) -> str:
        return f"best({','.join(m.expr for m in self.members)})"


Node = Features | Late | Stack | Best


def integrated(members: tuple[Node, ...]) -> Late:
    """The default fusion rule (docs/pipeline.md, "The default fusion rule"): the plain late fusion of ``members``,
    equal weights; the named models ``integrated`` and ``integrated-audio`` and ``integrated(a,b,...)`` are this."""
    return Late(members)


def choice_among_fusions(members: tuple[Node, ...]) -> Best:
    """The integrated model of paper 001 as a choice on inner folds (mvemo's default until the protocol of
    docs/results.md, "Choosing the default fusion rule", kept the plain late fusion). Its candidates, broadest first
    (the order the one-standard-error rule prefers, ``fuse.selection.choose``): the late fusion of every member, all
    the members concatenated (where all are feature level), then each member alone. Written out, it is
    ``best(late(a,b),a+b,a,b)``.

    Stacking is not a candidate: its meta-head's inner folds read members' out-of-fold probabilities that
    members fitted on those very rows produced, so its inner score is optimistic and a best-of picks it too
    often (mved-sample, 10 repeats: stack(twodcnn,i3d) 62.1 %, chosen in many folds, against 65.1 % for the
    concatenation).
    """
    concatenated = []
    if all(isinstance(m, Features) for m in members):
        member_inputs = dict.fromkeys(i for m in members for i in m.inputs)  # type: ignore[union-attr]
        concatenated = [Features(tuple(member_inputs))]
    return Best((Late(members), *concatenated, *members))


def leaves(node: Node) -> list[Features]:
    """The feature-level models a model fits heads for, each once, in order."""
    if isinstance(node, Features):
        return [node]
    return list(dict.fromkeys(leaf for member in node.members for leaf in leaves(member)))


def inputs_of(node: Node) -> tuple[str, ...]:
    """Every cached input a model reads, each once, in order."""
    return tuple(dict.fromkeys(name for leaf in leaves(node) for name in leaf.inputs))
