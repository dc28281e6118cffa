"""The classes asked for: display names (or label ids) resolved against
class-descriptions-boxable.csv, and the folder each class's crops go to."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from training.open_images.csv_files import stream_csv

NO_FOLDER = "class name gives no folder name"


@dataclass(frozen=True)
class Class:
    name: str  # display name, as Open Images spells it
    label: str  # e.g. /m/0cdn1
    folder: str  # e.g. hamburger


def read_class_names(meta: Path, digests: dict) -> dict[str, str]:
    """label id -> display name."""
    path = meta / "class-descriptions-boxable.csv"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --meta must hold Open Images' class-descriptions-boxable.csv")
    return {row[0].strip(): row[1].strip() for _, row in stream_csv(path, digests, False) if isinstance(row, list) and len(row) == 2}


def folder_name(name: str) -> str:
    """'Hot dog' -> 'hot_dog': the class's folder, as image-classification loaders name classes.
    A folder is one plain name inside the build: path separators and control characters become
    '_', and a name of nothing but dots ('', '.', '..') gives "": no folder (the class is skipped)."""
    folder = re.sub(r"[/\\\x00-\x1f\x7f]", "_", name.lower().replace(" ", "_"))
    return "" if not folder.strip(".") else folder


def resolve_classes(wanted: list[str], names: dict[str, str]) -> list[Class]:
    """Match the requested names case-insensitively, or a label id (/m/...) as it is. An unknown
    name stops with close matches; a name that two labels share stops with both labels."""
    by_lower = defaultdict(list)
    for label, name in sorted(names.items()):
        by_lower[name.lower()].append(label)
    classes = {}
    for text in wanted:
        key = text.strip()
        if key in names:
            label = key
        elif len(by_lower.get(key.lower(), ())) == 1:
            label = by_lower[key.lower()][0]
        elif key.lower() in by_lower:
            labels = by_lower[key.lower()]
            raise SystemExit(f"Class name {text!r} is the display name of {len(labels)} labels: {', '.join(labels)}. "
                             f"Ask for one by its label, e.g. --classes {labels[0]}")
        else:
            close = [names[by_lower[m][0]] for m in difflib.get_close_matches(key.lower(), list(by_lower), n=5)]
            close += sorted(names[labels[0]] for k, labels in by_lower.items()
                            if key and key.lower() in k and names[labels[0]] not in close)[:10]
            raise SystemExit(f"Unknown class {text!r}. " + (f"Close matches: {', '.join(close)}" if close else "No close matches."))
        classes[label] = Class(names[label], label, folder_name(names[label]))
    foldered = [c for c in classes.values() if c.folder]  # those without one are skipped, not clashing
    if len({c.folder for c in foldered}) < len(foldered):
        raise SystemExit("Two classes would share one folder: " + ", ".join(f"{c.name} ({c.label})" for c in foldered))
    return sorted(classes.values(), key=lambda c: c.folder)
