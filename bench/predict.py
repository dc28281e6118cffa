"""Predictions over a folder (not a test): `python -m predict`'s batched path against the tab's
one-at-a-time path, on the same real photos, in images per second.

    python -m bench.predict [--task dog_breed] [--models-dir DIR] [--images 128] [--batch-size 32]

The photos are real ones that ship with packages, at their own sizes: scikit-image's data module
(astronaut, chelsea, coffee, rocket, ...) and, when installed, Debian's opencv-doc and darknet
photos; repeated under new names until there are --images of them. The model is the full-size
network (`bench.serve --full-size`'s untrained bundles: the same computation as a trained one)
unless --models-dir names a folder with the task's bundle.

- one at a time: the tab's own `predict(bundle, path)` for each file in turn (decode, resize, one
  forward pass of batch 1, decision), which is what the page does per upload;
- batched: `predict.predict_files` (decoding in a thread pool while the network runs on batches of
  --batch-size), writing the CSV.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEBIAN_PHOTOS = [Path("/usr/share/doc/opencv-doc/examples/data"), Path("/usr/share/darknet/data")]
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "hubble_deep_field", "immunohistochemistry")


def real_photos(folder: Path, count: int) -> tuple[list[Path], int]:
    """`count` files in `folder`, cycling over the real photos found; and how many distinct ones."""
    from PIL import Image
    from skimage import data

    originals = []
    for name in SKIMAGE_PHOTOS:
        path = folder / "originals" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(data, name)()).save(path)
        originals.append(path)
    for source in DEBIAN_PHOTOS:
        originals += sorted(source.glob("*.jpg")) if source.is_dir() else []
    photos = []
    for i in range(count):
        original = originals[i % len(originals)]
        photos.append(folder / "photos" / f"{i:05d}{original.suffix}")
        photos[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(original, photos[-1])
    return photos, len(originals)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="dog_breed", choices=["dog_breed", "hashtags", "movie_genres"])
    parser.add_argument("--models-dir", help="a folder with the task's bundle (default: the full-size network)")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import predict
    from bench.serve import full_size_bundles
    from core.bundle import load_bundle
    from tasks import TASKS

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    models_dir = Path(args.models_dir) if args.models_dir else work / "models"
    if not args.models_dir:
        full_size_bundles(models_dir, only=[args.task])
    task = next(t for t in TASKS if t.NAME == args.task)
    bundle = load_bundle(models_dir / args.task)
    photos, distinct = real_photos(work, args.images)
    print(f"{args.task}: {bundle.input_size[0]} px, {len(bundle.labels)} labels; {len(photos)} photos "
          f"({distinct} distinct real ones), {os.cpu_count()} CPUs")

    task.predict(bundle, photos[0])  # warm-up: graph tracing is not what we measure
    predict.predict_files(task, bundle, photos[: args.batch_size], work / "warm.csv", args.batch_size, progress=False)

    start = time.perf_counter()
    for path in photos:
        task.predict(bundle, path)
    single = len(photos) / (time.perf_counter() - start)

    start = time.perf_counter()
    counts = predict.predict_files(task, bundle, photos, work / "out.csv", args.batch_size, progress=False)
    batched = len(photos) / (time.perf_counter() - start)
    assert counts["errors"] == 0, counts

    print(f"{'path':<28} {'images/s':>9}")
    print(f"{'one at a time (the tab)':<28} {single:>9.1f}")
    print(f"{f'batched, batch {args.batch_size}':<28} {batched:>9.1f}")
    print(f"speed-up {batched / single:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
