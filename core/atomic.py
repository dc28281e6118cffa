"""Files written whole or not at all: written aside (by default as <name>.part), then renamed into
place once complete, so that a run or a request cut off leaves no half-written file under its
final name. Open Images' downloads, crops and manifest, the training cache's entries, a stage's
final weights, a comparison's rows and a flag's image all go through `atomic_file`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: Path, part: Path | None = None) -> Iterator[Path]:
    """Yields the file to write (`part`, by default <path>.part, in the same folder so that the
    rename is atomic); renames it to `path` when the block ends without an exception, and removes
    it in every other case (an error, a check that failed, Ctrl-C)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part or path.with_name(path.name + ".part")
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes, part: Path | None = None) -> None:
    with atomic_file(path, part) as file:
        file.write_bytes(data)
