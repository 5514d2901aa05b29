"""The documentation: docs/cli.md and docs/descriptors.md are what the code renders now, and every relative link
lands on a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mvemo.extract.handcrafted.descriptors import DescriptorConfig
from mvemo.pipeline import descriptor_reference
from mvemo.pipeline.cli.bench import BENCHES
from mvemo.pipeline.cli.reference import cli_reference, command_paths

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(page: Path) -> list[str]:
    """The targets of the page's Markdown links outside code, less web addresses and in-page anchors."""
    text = CODE_SPAN.sub("", FENCED.sub("", page.read_text(encoding="utf-8")))
    targets = LINK.findall(text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_docs_cli_md_is_the_rendered_reference() -> None:
    written = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert written == cli_reference(), "docs/cli.md is out of date with the click commands: run `make docs`"


def test_docs_descriptors_md_is_the_rendered_column_table() -> None:
    written = (REPO / "docs" / "descriptors.md").read_text(encoding="utf-8")
    assert written == descriptor_reference.render(), "docs/descriptors.md is out of date with the code: run `make docs`"
    assert all(f"`{name}`" in written for name in DescriptorConfig().columns)


def test_the_reference_does_not_depend_on_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = cli_reference()
    monkeypatch.setenv("COLUMNS", "40")
    assert cli_reference() == wide


def test_every_command_has_its_section_and_usage_line() -> None:
    text = cli_reference()
    paths = command_paths()
    assert {
        "mvemo",
        "mvemo extract",
        "mvemo manifest scan",
        "mvemo cache verify",
        "mvemo weights fetch",
        "mvemo-cv",
    } <= set(paths)
    for path in paths:
        assert f"\n## {path}\n" in text, path
        assert f"\n```\n{path} [OPTIONS]" in text, path


def test_every_option_of_extract_is_in_its_table() -> None:
    text = cli_reference()
    section = text.split("\n## mvemo extract\n")[1].split("\n## ")[0]
    for option in ("--cache", "--features", "--nets", "--finetune", "--protocol", "--config", "--device"):
        assert f"| `{option}` |" in section, option
    assert "| `--finetune` | `none` or `last` or `full` | `none` |" in section


def test_table_cells_escape_pipes_and_markup() -> None:
    text = cli_reference()
    choices = "\\|".join(BENCHES)  # mvemo bench's choices, each pipe escaped
    assert choices.startswith("audio\\|video\\|") and f"`{{{choices}}}`" in text
    assert "[optim.\\<net\\>]" in text
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)
            assert len(cells) == 6, line  # four cells between the outer pipes


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings: lower case, punctuation but - and _ dropped, spaces to -."""
    headings = re.findall(r"^#+ (.+)$", FENCED.sub("", page.read_text(encoding="utf-8")), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_relative_links_point_to_files_that_exist(page: Path) -> None:
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"
    anchored = [t.split("#") for t in relative_links(page) if "#" in t and t.split("#")[0].endswith(".md")]
    dangling = [f"{path}#{anchor}" for path, anchor in anchored if anchor not in heading_anchors(page.parent / path)]
    assert not dangling, f"{page.relative_to(REPO)} links to headings that do not exist: {dangling}"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(REPO / t.split("#")[0]).resolve() for t in relative_links(REPO / "README.md")}
    pages = set((REPO / "docs").glob("*.md"))
    assert pages, "docs/ holds no page"
    assert {p.resolve() for p in pages} <= linked, sorted(p.name for p in pages if p.resolve() not in linked)


def test_each_docs_page_links_back_to_the_readme() -> None:
    for page in (REPO / "docs").glob("*.md"):
        assert "../README.md" in relative_links(page), page.name
