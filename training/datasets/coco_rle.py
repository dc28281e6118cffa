"""COCO run-length masks: the uncompressed form (`counts` a list of integers) and the compressed
one (`counts` a string, what pycocotools and the tools built on it write for brush and crowd masks).

Both encode the mask in column-major order as alternating runs, background first. The compressed
string packs each run into 5-bit groups, least significant first, each a character of value + 48,
bit 0x20 set while more groups follow and bit 0x10 the sign of the last group; from the fourth run
on, a run is stored as the difference from the run two before it (pycocotools' maskApi.c,
rleToString / rleFrString). Decoded here in a few lines rather than with pycocotools: one compiled
dependency for one training tool's input format is not worth it, and this decoder checks what
pycocotools' does not (characters outside the alphabet, a truncated last run, negative runs, runs
past the mask's end), each a `ValueError` naming the problem.
"""

from __future__ import annotations

import numpy as np

FIRST, LAST = ord("0"), ord("0") + 63  # the 64 characters a compressed count is written with


def compressed_counts(text: str) -> list[int]:
    """The run lengths a compressed COCO `counts` string holds."""
    counts: list[int] = []
    value = shift = 0
    more = False
    for position, char in enumerate(text):
        code = ord(char)
        if not FIRST <= code <= LAST:
            raise ValueError(f"character {char!r} at {position} is not one of a compressed count's '0'..'o'")
        code -= FIRST
        value |= (code & 0x1F) << shift
        shift += 5
        more = bool(code & 0x20)
        if more:
            continue
        if code & 0x10:
            value -= 1 << shift  # the last group's top bit is the sign
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise ValueError(f"run {len(counts)} of the compressed counts is negative ({value})")
        counts.append(value)
        value = shift = 0
    if more:
        raise ValueError("the compressed counts end inside a run (truncated string)")
    return counts


def rle_mask(counts, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of COCO run-length `counts`: a list of run lengths or a
    compressed string. Runs may stop short of the last pixel (the rest is background), never
    go past it."""
    runs = compressed_counts(counts) if isinstance(counts, str) else [_run(v) for v in counts]
    total = height * width
    if sum(runs) > total:
        raise ValueError(f"the runs cover {sum(runs)} pixels; a {width} x {height} mask has {total}")
    values = np.arange(len(runs)) % 2 == 1  # background first
    flat = np.zeros(total, dtype=bool)
    flat[:sum(runs)] = np.repeat(values, runs)
    return flat.reshape(width, height).T


def _run(value) -> int:
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0:
        raise ValueError(f"run length {value!r} is not a whole number >= 0")
    return int(value)
