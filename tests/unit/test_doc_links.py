"""Every link between the repository's documents leads somewhere: a relative link in README.md,
docs/ or an example's README names a file of the checkout (and an anchor, a heading of it), so
a reader never follows a link to something they do not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO / "README.md", *REPO.glob("docs/**/*.md"), *REPO.glob("examples/*/*.md")])
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#+\s+(.*)$", _FENCE.sub("", markdown), re.M):
        text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
        found.add(text.replace(" ", "-"))
    return found


def _links(markdown: str) -> list[str]:
    prose = _CODE.sub("", _FENCE.sub("", markdown))
    return [a or b for a, b in _LINK.findall(prose)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files_and_headings_of_the_checkout(document: Path) -> None:
    broken = []
    for link in _links(document.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        if not path.exists() or (REPO not in path.parents and path != REPO):
            broken.append(f"{link}: no {path.relative_to(REPO) if REPO in path.parents else path}")
            continue
        if anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text()):
            broken.append(f"{link}: no heading #{anchor} in {path.relative_to(REPO)}")
    assert not broken, f"{document.relative_to(REPO)}: " + "; ".join(broken)


def test_the_link_reader_finds_links_and_anchors() -> None:
    text = "# Run it in a cluster\nsee [a](b.md#x), ![img](i.png) and `[no](code.md)`\n"
    assert _links(text) == ["b.md#x", "i.png"]
    assert _anchors(text) == {"run-it-in-a-cluster"}
