"""Files written whole or not at all: written as <name>.part, renamed into place once complete,
so a run cut off leaves no half-written file under its final name."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)  # only left when cut off before the rename
