"""Reading Open Images' metadata CSVs: streamed row by row (the real ones run over a gigabyte)
and hashed on the way, so the manifest names exactly the files a build read."""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from pathlib import Path

from tqdm import tqdm


class Hashing(io.RawIOBase):
    """A file read through this is hashed (and its progress shown) on the way: one pass."""

    def __init__(self, handle, sha, bar):
        self.handle, self.sha, self.bar = handle, sha, bar

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self.handle.readinto(buffer)
        self.sha.update(memoryview(buffer)[:count])
        self.bar.update(count)
        return count


def stream_csv(path: Path, digests: dict, progress: bool):
    """Yield (line number, row) without loading the file; its SHA-256 lands in digests.
    A row the csv module cannot parse comes as the csv.Error, so the caller reports it."""
    sha = hashlib.sha256()
    with path.open("rb", buffering=0) as raw, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"reading {path.name}",
                                                   file=sys.stderr, disable=not progress, leave=False) as bar:
        # utf-8-sig drops a byte-order mark; newline="" as the csv module wants
        text = io.TextIOWrapper(io.BufferedReader(Hashing(raw, sha, bar), 1 << 20), "utf-8-sig", "replace", newline="")
        reader = csv.reader(text)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                row = error
            yield reader.line_num, row
    digests[path.name] = {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def read_header(path: Path, rows, required) -> tuple[dict[str, int], int]:
    _, header = next(rows, (0, []))
    columns = {name.strip(): i for i, name in enumerate(header if isinstance(header, list) else [])}
    missing = [name for name in required if name not in columns]
    if missing:
        raise SystemExit(f"{path} lacks column(s) {', '.join(missing)}: not an Open Images file of this kind?")
    return columns, len(header)
