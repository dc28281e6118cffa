"""Getting the images into the network: samples, decoding and resizing, the dataset's content hash."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.images import ImageError
from core.preprocess import model_input


@dataclass
class Sample:
    path: Path
    label: int
    box: tuple | None = None  # (left, top, right, bottom) in the frame below
    frame: tuple | None = None  # (width, height) the box was annotated in


def load_images(samples: list[Sample], size: tuple[int, int], workers: int = 4):
    """Decode and resize every sample once, in threads (Pillow releases the GIL).

    Returns (uint8 array N x H x W x 3, labels, skipped) where `skipped` lists
    (path, reason) for the files that could not be read; they are left out.
    """

    def decode(sample):
        try:
            return model_input(sample.path, size, sample.box, sample.frame).astype(np.uint8), None
        except ImageError as error:
            return None, str(error)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(decode, samples))
    kept = [(pixels, sample.label) for (pixels, _), sample in zip(results, samples) if pixels is not None]
    skipped = [(str(sample.path), reason) for (pixels, reason), sample in zip(results, samples) if pixels is None]
    images = np.stack([pixels for pixels, _ in kept]) if kept else np.zeros((0, *size, 3), np.uint8)
    labels = np.array([label for _, label in kept], dtype=np.int64)
    return images, labels, skipped


def fingerprint(files, root: Path) -> str:
    """SHA-256 over the sorted relative paths and bytes of the files a model was trained on."""
    digest = hashlib.sha256()
    for file in sorted(Path(f) for f in files):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
