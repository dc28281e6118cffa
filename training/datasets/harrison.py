"""HARRISON as distributed: `data_list.txt` (one image path per line, e.g.
`instagram_dataset/sea/image_50.jpg`), `tag_list.txt` (that image's hashtags, space-separated,
same line order), `vocab_index.txt` (a tag and its index per line, padded with spaces) and the
images in per-class folders. Known problems of the real files are counted and reported with
line numbers, never fatal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from training.datasets.report import MAX_LISTED


def read_vocabulary(file: Path) -> list[str]:
    """Tags in index order from `vocab_index.txt` ("love                  0")."""
    entries = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise SystemExit(f"{file.name} line {number}: expected 'tag index', got {line.strip()!r}")
        entries.append((int(fields[1]), fields[0]))
    return [tag for _, tag in sorted(entries)]


def read_harrison(data: Path):
    """Rows (line number, image path, tag indices), the vocabulary, and a report of every problem."""
    for name in ("data_list.txt", "tag_list.txt", "vocab_index.txt"):
        if not (data / name).is_file():
            raise SystemExit(f"{data} has no {name}: expected HARRISON as distributed")
    vocabulary = read_vocabulary(data / "vocab_index.txt")
    index = {tag: i for i, tag in enumerate(vocabulary)}
    paths = (data / "data_list.txt").read_text(encoding="utf-8").splitlines()
    tag_lines = (data / "tag_list.txt").read_text(encoding="utf-8").splitlines()
    report = {"lines": len(paths), "empty_tag_lines": [], "missing_images": [], "unknown_tags": {},
              "unknown_tag_lines": [], "unknown_tag_count": 0}
    if len(paths) != len(tag_lines):
        report["length_mismatch"] = f"data_list.txt has {len(paths)} lines, tag_list.txt {len(tag_lines)}"
    unknown = Counter()
    rows = []
    for number, (path, line) in enumerate(zip(paths, tag_lines), start=1):
        tags = line.split()
        if not path.strip():
            continue
        if not tags:
            report["empty_tag_lines"].append(number)
            continue
        outside = [tag for tag in tags if tag not in index]
        if outside:
            unknown.update(outside)
            report["unknown_tag_lines"].append(number)
        known = sorted({index[tag] for tag in tags if tag in index})
        if not known:
            continue  # counted under unknown tags
        if not (data / path.strip()).is_file():
            report["missing_images"].append(f"line {number}: {path.strip()}")
            continue
        rows.append((number, data / path.strip(), known))
    report["unknown_tag_count"] = sum(unknown.values())
    report["unknown_tags"] = dict(unknown.most_common(MAX_LISTED))
    return rows, vocabulary, report


def keep_top_tags(rows, vocabulary, top: int | None, report: dict):
    """Restrict to the `top` most frequent tags; rows left without a tag are counted and dropped."""
    if not top:
        return rows, vocabulary
    counts = Counter(i for _, _, tags in rows for i in tags)
    kept = [i for i, _ in counts.most_common(top)]
    new_index = {old: new for new, old in enumerate(kept)}
    remapped = [(n, p, sorted(new_index[i] for i in tags if i in new_index)) for n, p, tags in rows]
    report["rows_without_a_top_tag"] = sum(1 for _, _, tags in remapped if not tags)
    return [row for row in remapped if row[2]], [vocabulary[i] for i in kept]
