"""The documentation states what the code does: every limit on the security page is the code's own."""

import importlib
import re

from conftest import ROOT


def test_every_limit_on_the_security_page_is_the_one_the_code_uses():
    rows = [line.split("|")[1:-1] for line in (ROOT / "docs" / "security.md").read_text().splitlines()
            if line.startswith("| ") and "`" in line]
    checked = 0
    for _, value, _, where in (cells for cells in rows if len(cells) == 4):
        name = re.search(r"`([\w.]+)`", where).group(1)
        module, attribute = name.rsplit(".", 1)
        actual = getattr(importlib.import_module(module), attribute)
        stated = value.split()[0]
        if isinstance(actual, str):
            assert stated == actual, (name, stated, actual)
        else:
            assert float(stated) == float(actual), (name, stated, actual)
        checked += 1
    assert checked >= 12


def slug(heading: str) -> str:
    """A heading's anchor as GitHub (and the Hub) make it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_pages_resolves():
    """The README and docs/ link to each other by file and heading: a page renamed or a heading
    reworded must not leave a link to nothing."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}: no such file"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", linked.read_text(), flags=re.S), re.M)
                assert anchor in {slug(h) for h in headings}, f"{page.name}: {target}: no such heading"
            checked += 1
    assert checked >= 30


def test_the_readme_is_read_in_five_minutes_and_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = set(re.findall(r"\(docs/(\w+\.md)", readme))
    assert linked == {page.name for page in (ROOT / "docs").glob("*.md")}, "a docs page the README does not link"
