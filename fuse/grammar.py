"""The ``--models`` grammar: a comma-separated list of models composed from what the cache holds.

::

    models   := model ("," model)*
    model    := features | late(args) | stack(args) | best(args) | integrated(args)
    features := NAME ("+" NAME)*            feature level: one head over the inputs' columns
    args     := model ("," model)* ["," "weights=" ("equal" | "trimmed" | "inner")]   (weights only in late)

NAME is a cached input (a net's embedding, ``lldstats``) or a named model
(``integrated``, ``integrated-audio``, ``integrated-decision``), which stands alone
rather than in a ``+``. For example ``twodcnn+lldstats``, ``late(i3d,twodcnn)``,
``late(i3d,twodcnn+lldstats,weights=inner)``, ``late(musicnn,msdvgg,lldstats,weights=trimmed)``, ``stack(i3d,twodcnn)``,
``best(twodcnn,i3d+twodcnn)``, ``integrated(onedcnn,twodcnn,lldstats)`` (the default fusion rule over those,
``fuse.compose.integrated``: random-init nets included when named). A model is named by its text without spaces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from mvemo.fuse.compose import LATE_WEIGHTS, Best, Features, Late, Node, Stack, integrated
from mvemo.manifests.errors import ConfigError

CALLS: dict[str, Callable[[tuple[Node, ...], str], Node]] = {
    "late": Late,
    "stack": lambda members, weights: Stack(members),
    "best": lambda members, weights: Best(members),
    "integrated": lambda members, weights: integrated(members),
}
TOKEN = re.compile(r"\s*(?:([A-Za-z0-9_.\-]+)|(.))")


def tokenize(text: str) -> list[str]:
    tokens = []
    for match in TOKEN.finditer(text):
        name, symbol = match.groups()
        if symbol is not None and symbol.strip() and symbol not in "(),+=":
            raise ConfigError(
                f"--models {text!r}: unexpected {symbol!r}; models are written like a+b, late(a,b), stack(a,b)"
            )
        tokens.append(name or symbol)
    return [t for t in tokens if t and t.strip()]


def parse_models(text: str, names: Mapping[str, Node], unknown: Callable[[str], Exception]) -> list[tuple[str, Node]]:
    """(name, model) of each model of ``text``: a named model keeps its name, any other is named by its expression.

    ``names`` maps every name a model may use to its model (an input to ``Features((input,))``);
    ``unknown(name)`` is the error for a name the cache cannot feed.
    """
    parser = _Parser(text, tokenize(text), names, unknown)
    models = [parser.top()]
    while parser.accept(","):
        models.append(parser.top())
    if parser.position < len(parser.tokens):
        parser.fail(f"unexpected {parser.tokens[parser.position]!r}")
    return models


class _Parser:
    def __init__(
        self, text: str, tokens: list[str], names: Mapping[str, Node], unknown: Callable[[str], Exception]
    ) -> None:
        self.text, self.tokens, self.names, self.unknown = text, tokens, names, unknown
        self.position = 0

    def fail(self, what: str) -> None:
        raise ConfigError(f"--models {self.text!r}: {what}; see `mvemo cv --help` for the grammar")

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def accept(self, token: str) -> bool:
        if self.peek() == token:
            self.position += 1
            return True
        return False

    def name(self) -> str:
        token = self.peek()
        if token is None or token in "(),+=":
            self.fail(f"expected a name, found {token or 'the end'!r}")
        self.position += 1
        return token  # type: ignore[return-value]

    def top(self) -> tuple[str, Node]:
        start = self.position
        node = self.model()
        return "".join(self.tokens[start : self.position]), node

    def model(self) -> Node:
        first = self.name()
        if first in CALLS and self.accept("("):
            return self.call(first)
        parts = [self.lookup(first)]
        while self.accept("+"):
            name = self.name()
            if name in CALLS and self.peek() == "(":
                self.fail(f"only cached inputs join with '+', not {name}(...): put the inputs inside it")
            parts.append(self.lookup(name))
        if len(parts) == 1:
            return parts[0]
        if not all(isinstance(p, Features) for p in parts):
            self.fail(
                "only cached inputs join with '+'; a named or composed model goes inside late(), stack() or best()"
            )
        return Features(tuple(dict.fromkeys(name for p in parts for name in p.inputs)))  # type: ignore[union-attr]

    def lookup(self, name: str) -> Node:
        if name not in self.names:
            raise self.unknown(name)
        return self.names[name]

    def call(self, kind: str) -> Node:
        members, weights, weights_given = [], "equal", False
        while True:
            if self.peek() == "weights":
                if weights_given:
                    self.fail("weights= given twice")
                weights_given = True
                self.position += 1
                if not self.accept("=") or self.peek() not in LATE_WEIGHTS:
                    self.fail(
                        "write weights=equal,"
                        " weights=trimmed (equal over the members not clearly weaker on inner folds)"
                        " or weights=inner (a mixture fitted on inner folds)"
                    )
                weights = self.name()
                if kind != "late":
                    self.fail(f"{kind}() takes no weights; late() does")
            else:
                members.append(self.model())
            if self.accept(")"):
                break
            if not self.accept(","):
                self.fail(f"expected ',' or ')' in {kind}(...)")
        members = list(dict.fromkeys(members))
        if len(members) < 2:
            self.fail(f"{kind}() needs at least two different models")
        return CALLS[kind](tuple(members), weights)
