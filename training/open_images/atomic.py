"""Files written whole or not at all: written as <name>.part, renamed into place once complete,
so a run cut off leaves no half-written file under its final name. Downloads, crops, the
manifest and download_failures.json all go through atomic_file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yields <path>.part to write; renames it to `path` when the block ends without an exception,
    and removes it in every other case (an error, a check that failed, Ctrl-C)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes):
    with atomic_file(path) as part:
        part.write_bytes(data)
