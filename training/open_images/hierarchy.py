"""Open Images' class hierarchy (bbox_labels_600_hierarchy.json): --include-subclasses folds a
class's subclasses into its folder, --list-classes prints the tree with box counts."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from training.open_images.classes import Class
from training.open_images.csv_files import read_header, stream_csv

HIERARCHY_FILE = "bbox_labels_600_hierarchy.json"
ROOT_LABEL, ROOT_NAME = "/m/0bl9f", "Entity"  # the root is in no class-descriptions file


@dataclass(frozen=True)
class Hierarchy:
    """Open Images' class hierarchy, as bbox_labels_600_hierarchy.json distributes it: nested
    {"LabelName", "Subcategory": [...], "Part": [...]} from the root Entity. A label can sit under
    several parents (the file repeats its node, e.g. a cookie under both dessert and baked goods),
    so the children are gathered per label over every place it appears."""

    subcategories: dict[str, list[str]]  # label -> the labels one Subcategory step below, in file order
    parts: dict[str, list[str]]  # label -> its Part labels (a wheel of a car: not a kind of car)

    def below(self, label: str) -> list[str]:
        """The label and every label under it by Subcategory, recursively (not by Part), each once."""
        found, todo = [], [label]
        while todo:
            current = todo.pop(0)
            if current not in found:
                found.append(current)
                todo += self.subcategories.get(current, [])
        return found

    def __contains__(self, label: str) -> bool:
        return label == ROOT_LABEL or any(label in children for table in (self.subcategories, self.parts)
                                          for children in table.values())


def read_hierarchy(meta: Path, digests: dict) -> Hierarchy | None:
    """The hierarchy in --meta, or None where it is not there (classes are then matched exactly)."""
    path = meta / HIERARCHY_FILE
    if not path.is_file():
        return None
    content = path.read_bytes()
    digests[path.name] = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    try:
        root = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path} is not valid JSON ({error}): expected Open Images' {HIERARCHY_FILE} as distributed")
    subcategories, parts = defaultdict(list), defaultdict(list)
    todo = [(root, "the root")]
    while todo:
        node, where = todo.pop()
        label = node.get("LabelName") if isinstance(node, dict) else None
        if not isinstance(label, str) or not label.strip():
            raise SystemExit(f"{path}: {where} is not a node with a LabelName: not Open Images' {HIERARCHY_FILE}?")
        for key, table in (("Subcategory", subcategories), ("Part", parts)):
            children = node.get(key, [])
            if not isinstance(children, list):
                raise SystemExit(f"{path}: the {key} of {label} is not a list")
            for i, child in enumerate(children):
                todo.append((child, f"{key} {i} of {label}"))
                name = child.get("LabelName") if isinstance(child, dict) else None
                if isinstance(name, str) and name not in table[label]:
                    table[label].append(name)
    return Hierarchy(dict(subcategories), dict(parts))


def need_hierarchy(hierarchy: Hierarchy | None, option: str, meta: Path) -> Hierarchy:
    if hierarchy is None:
        raise SystemExit(f"{option} needs Open Images' class hierarchy: put {HIERARCHY_FILE} (from the "
                         f"Open Images download page) in {meta}")
    return hierarchy


@dataclass(frozen=True)
class Folded:
    """What --include-subclasses made of the requested classes."""
    targets: dict[str, Class]  # annotation label -> the requested class its boxes go to
    ambiguous: dict[str, list[str]]  # label -> the folders of the requested classes it is under
    names: dict[str, str]  # display names, for the manifest


def fold_subclasses(classes: list[Class], hierarchy: Hierarchy, names: dict[str, str]) -> Folded:
    """Every label under a requested class goes to the most specific requested class above it
    (asking for Sandwich and Hamburger keeps hamburgers in hamburger). A label under two requested
    classes neither of which is under the other would make one box two classes: it is left out."""
    under = {c.label: set(hierarchy.below(c.label)) for c in classes}
    targets, ambiguous = {}, {}
    for label in sorted(set().union(*under.values())):
        holders = [c for c in classes if label in under[c.label]]
        innermost = [c for c in holders if all(c.label in under[other.label] for other in holders)]
        if len(innermost) == 1:
            targets[label] = innermost[0]
        else:
            ambiguous[label] = sorted(c.folder for c in holders)
    return Folded(targets, ambiguous, names)


def count_boxes(meta: Path, digests: dict, progress: bool) -> Counter:
    """Boxes per label over every annotation file, for --list-classes."""
    counts = Counter()
    for path in sorted(meta.glob("*-annotations-bbox.csv")):
        rows = stream_csv(path, digests, progress)
        columns, _ = read_header(path, rows, ("LabelName",))
        for _, row in rows:
            if isinstance(row, list) and len(row) > columns["LabelName"]:
                counts[row[columns["LabelName"]].strip()] += 1
    return counts


def boxes(count: int) -> str:
    return f"{count:,} box" + ("" if count == 1 else "es")


def class_tree(hierarchy: Hierarchy, names: dict[str, str], counts: Counter, start: str) -> list[str]:
    """The tree below `start` as indented lines with box counts; parts marked [part] (they are not
    kinds of their parent, so --include-subclasses leaves them out). A label under several parents
    is shown under each, as the file has it."""
    lines = []

    def visit(label, depth, part, path):
        below = hierarchy.below(label)
        line = f"{'  ' * depth}{'[part] ' if part else ''}{names.get(label, label)} ({label}): {boxes(counts[label])}"
        if len(below) > 1:
            line += f", {boxes(sum(counts[other] for other in below))} with subclasses"
        lines.append(line)
        if label in path:
            return  # a label under itself: shown once, not forever
        for child in hierarchy.subcategories.get(label, []):
            visit(child, depth + 1, False, path | {label})
        for child in hierarchy.parts.get(label, []):
            visit(child, depth + 1, True, path | {label})

    visit(start, 0, False, frozenset())
    return lines
