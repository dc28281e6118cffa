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
