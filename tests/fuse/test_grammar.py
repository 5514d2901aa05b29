"""The --models grammar: compositions of cached inputs, and errors that name what the cache has."""

from __future__ import annotations

import pytest

from mvemo.fuse.compose import Best, Features, Late, Stack, inputs_of, leaves
from mvemo.fuse.grammar import parse_models
from mvemo.manifests import ConfigError

INTEGRATED = Best((Features(("a",)), Features(("b",))))
NAMES = {"a": Features(("a",)), "b": Features(("b",)), "c": Features(("c",)), "integrated": INTEGRATED}


def unknown(name: str) -> Exception:
    return ConfigError(f"unknown {name}")


def parse(text: str) -> list[tuple[str, object]]:
    return parse_models(text, NAMES, unknown)


def test_each_form_parses_to_its_tree_and_back_to_its_text() -> None:
    models = parse("a, b+c ,late(a,b+c),late(a,b,weights=inner),stack(a,b),best(a,late(b,c)),integrated")
    assert [name for name, _ in models] == [
        "a",
        "b+c",
        "late(a,b+c)",
        "late(a,b,weights=inner)",
        "stack(a,b)",
        "best(a,late(b,c))",
        "integrated",
    ]
    nodes = [node for _, node in models]
    assert nodes[1] == Features(("b", "c"))
    assert nodes[2] == Late((Features(("a",)), Features(("b", "c"))))
    assert nodes[3] == Late((Features(("a",)), Features(("b",))), "inner")
    assert nodes[4] == Stack((Features(("a",)), Features(("b",))))
    assert nodes[5] == Best((Features(("a",)), Late((Features(("b",)), Features(("c",))))))
    assert nodes[6] is INTEGRATED
    for name, node in models[:6]:
        assert parse(name) == [(name, node)], "an expression is its own canonical name"


def test_a_composite_reads_each_input_once_and_fits_each_head_once() -> None:
    ((_, node),) = parse("stack(a+b,late(a,a+b),best(c,a))")
    assert inputs_of(node) == ("a", "b", "c")
    assert [leaf.expr for leaf in leaves(node)] == ["a+b", "a", "c"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a+d", "unknown d"),
        ("late(a,zz)", "unknown zz"),
        ("integrated+a", "only cached inputs join with '+'"),
        ("late(a)", "late() needs at least two different models"),
        ("late(a,a)", "late() needs at least two different models"),
        ("stack(a,b,weights=inner)", "stack() takes no weights"),
        ("late(a,b,weights=best)", "write weights=equal, weights=trimmed"),
        ("late(a,b", "expected ',' or ')'"),
        ("a,,b", "expected a name, found ','"),
        ("a b", "unexpected 'b'"),
        ("a;b", "unexpected ';'"),
    ],
)
def test_mistakes_are_config_errors_that_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse(text)
