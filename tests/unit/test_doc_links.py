"""The docs point into results/ for their evidence: every link must still lead somewhere after files move, and
the performance page may quote only figures its linked results folders hold."""

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
PAGES = sorted([REPO / "README.md", REPO / "results/README.md", *REPO.glob("docs/*.md"), *REPO.glob("results/*/README.md")])


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces made hyphens."""
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            anchors.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return anchors


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.is_file() and anchor not in heading_anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    assert broken_links(page) == []


def figures(text: str) -> list[str]:
    return NUMBER.findall(LINK.sub("", text))


def held(figure: str, sources: list[float]) -> bool:
    """A figure is held by its sources when one of them, rounded to the figure's decimals, is the figure."""
    decimals = len(figure.partition(".")[2])
    value = float(figure.replace(",", ""))
    return any(abs(round(source, decimals) - value) < 1e-9 for source in sources)


def test_each_figure_in_the_performance_page_findings_is_in_the_results_its_row_links():
    page = REPO / "docs/performance.md"
    rows = [line for line in page.read_text().splitlines() if line.startswith("|") and "](../results/" in line]
    assert rows
    for row in rows:
        linked = [(page.parent / target.partition("#")[0]).resolve() for target in LINK.findall(row)]
        sources = [float(n.replace(",", "")) for path in linked for n in figures(path.read_text())]
        unheld = [figure for figure in figures(row) if not held(figure, sources)]
        assert unheld == [], f"{row[:60]}...: not in {[str(p.relative_to(REPO)) for p in linked]}"
