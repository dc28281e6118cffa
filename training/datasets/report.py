"""The data report: what a reader or a recipe left out, counted by kind, with a few examples."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_LISTED = 50  # entries listed per problem in a data report; all are counted


def report_problems(report: dict, limit: int = MAX_LISTED) -> dict:
    """Print each listed problem's count with an example; keep every count, list at most `limit`."""
    for key, entries in list(report.items()):
        if isinstance(entries, list):
            if entries:
                print(f"  {len(entries)} {key.replace('_', ' ')}, e.g. {entries[0]}")
            report[f"{key}_count"] = len(entries)
            report[key] = entries[:limit]
    return report


def readable_path(path, data) -> str:
    """A file as a report names it: relative to the dataset folder when it is inside it, else its
    name (reports are published with the bundle: never the trainer's own folders)."""
    path, data = Path(path), Path(data)
    return str(path.relative_to(data)) if path.is_relative_to(data) else path.name


LISTED = 20  # examples kept per drop reason; all are counted


@dataclass
class DropReport:
    """Rows dropped by cleaning or parsing: a count per reason and a few examples each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def drop(self, reason: str, example: str):
        self.counts[reason] += 1
        listed = self.examples.setdefault(reason, [])
        if len(listed) < LISTED:
            listed.append(example)

    def as_dict(self) -> dict:
        return {"dropped": dict(sorted(self.counts.items())), "examples": self.examples}
