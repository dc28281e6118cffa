"""A folder per class (`<root>/<class>/*.jpg`), as training.open_images writes `images_cropped/`
and as image-classification loaders expect; the builder's manifest.json beside it (or in it, as
a dataset pushed to the Hub has it), if any."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from training.inputs import Sample


def readable_class(folder: str) -> str:
    """'hamburger' -> 'Hamburger', 'hot_dog' -> 'Hot dog'."""
    name = folder.replace("_", " ").strip()
    return name[:1].upper() + name[1:]


def read_crops(data: Path):
    """Class folders and one sample per file."""
    if not data.is_dir():
        raise SystemExit(f"{data} is not a folder: expected images_cropped/<class>/*.jpg from training.open_images "
                         f"(or hf://datasets/OWNER/NAME@COMMIT for one on the Hub)")
    folders = sorted(p.name for p in data.iterdir() if p.is_dir() and any(p.iterdir()))
    if len(folders) < 2:
        raise SystemExit(f"{data} holds {len(folders)} non-empty class folder(s); at least two are needed")
    samples = [Sample(path, label) for label, folder in enumerate(folders)
               for path in sorted((data / folder).iterdir()) if path.is_file()]
    return folders, samples


def builder_manifest(data: Path) -> dict:
    """The Open Images builder's manifest, summarised, if there is one: beside the crops as built,
    or among the class folders as pushed to the Hub."""
    manifest = next((m for m in (data / "manifest.json", data.parent / "manifest.json") if m.is_file()), None)
    if manifest is None:
        return {}
    content = manifest.read_bytes()
    summary = json.loads(content)
    return {"manifest_sha256": hashlib.sha256(content).hexdigest(),
            "sources": summary.get("sources"), "classes": summary.get("classes")}
