"""Training benchmark (not a test): memory against dataset size, whether the input keeps up, and
what several workers cost.

    python -m bench.train [--sizes 2000 20000] [--work DIR] [--backbone efficientnetb3 --image-size 300]
                          [--mixed-precision] [--skip-memory]
    python -m bench.train --workers 2 [--sizes 960] [--image-size 128] [--batch-size 32] [--epochs 5] [--no-cache]
                          [--repeats 3]

On synthetic sets in the Stanford Dogs layout at real photo sizes (JPEG, 500 x 375, 120 breed
folders, Kaggle layout), prints:

1. memory: the peak resident memory (RSS) of a one-epoch run of `python -m training.dog_breed` for
   each size, and the ratio of the largest to the smallest. The input pipeline is the recipe's
   whatever the backbone; the run uses the small from-scratch CNN (`conv4-gap`) at the default
   300 px so that an epoch over 20,000 images takes minutes on a CPU, not hours.
2. input: the streaming pipeline alone (decode, resize, batch), images per second, and per core;
   again from the on-disk cache (`--cache`), which skips decoding.
3. step: the training step alone, on a batch already in memory, images per second, for the
   recipe's default backbone at its default size (EfficientNetB3, 300 px), with mixed precision
   if asked.
The input keeps the accelerator fed when (2) >= (3).

With `--workers N`, instead: the recipe (`python -m training.dog_breed`, `conv4-gap`) on the smallest
set, once as one process and once as a cluster of N worker processes on this machine
(MultiWorkerMirroredStrategy over loopback, tests/support/local_cluster.py: in a network namespace of its
own where the system allows), each worker given its share of the cores, both reading decoded images
from a --cache that the first epoch fills (`--no-cache`: decoding every epoch, which on one
machine makes the workers' decoders compete for the same cores). Prints, side by side, the
replicas, global batch, steps per epoch, step time and images per second (the median of the epochs
after the first, which traces), and the overhead per step: the cluster's step time less N times the single
process's. On one machine the workers share the cores, so images per second cannot rise; the
overhead is what synchronising the workers costs (the all-reduce of the gradients, keeping them in
step), the figure that carries over to a real cluster.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "tests")]

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PHOTO = (500, 375)


def make_photos(root: Path, count: int, breeds: int = 120, seed: int = 0) -> Path:
    """`root/Images/<wnid>-<breed>/*.jpg`: `count` dog pictures of 500 x 375, spread over `breeds`
    folders (the real dataset's 120), made once and reused."""
    from training.synthetic.dogs import DOG_BREEDS, draw_dog

    images = root / "Images"
    if images.is_dir() and sum(1 for _ in images.rglob("*.jpg")) == count:
        return root
    rng = np.random.default_rng(seed)
    for index in range(count):
        breed = index % breeds
        _, colour, pattern = DOG_BREEDS[breed % len(DOG_BREEDS)]
        folder = images / f"n{breed:08d}-breed_{breed}"
        folder.mkdir(parents=True, exist_ok=True)
        picture, _ = draw_dog(rng, colour, pattern, PHOTO[0])
        picture.crop((0, (PHOTO[0] - PHOTO[1]) // 2, PHOTO[0], (PHOTO[0] + PHOTO[1]) // 2)).save(
            folder / f"n{breed:08d}_{index}.jpg", quality=90)
    return root


def peak_memory(data: Path, out: Path, image_size: int) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one epoch of the recipe in a fresh process."""
    command = [sys.executable, "-m", "training.dog_breed", "--data", str(data), "--out", str(out),
               "--backbone", "conv4-gap", "--weights", "none", "--image-size", str(image_size), "--epochs", "1",
               "--fine-tune-epochs", "0", "--batch-size", "32", "--restart"]
    started = time.monotonic()
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code, *command], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1]) / 1024, time.monotonic() - started


def input_rate(data: Path, image_size: int, batch_size: int, batches: int, cache: Path | None) -> float:
    """Images per second through the streaming pipeline alone (decode or cache, resize, batch)."""
    import tensorflow as tf

    from training import inputs
    from training.datasets.stanford_dogs import read_stanford_dogs

    _, (train, _, _), _, _ = read_stanford_dogs(data, crop_boxes=False, seed=0)
    train = train[:batch_size * batches]
    source = inputs.resized_images(image_size, cache)(train)
    signature = (inputs.image_signature(image_size), tf.TensorSpec((), tf.int64))
    dataset = inputs.batches(source, lambda i, decoded, rng: (decoded[0], source.records[i].label), signature,
                             batch_size, seed=0)
    started, seen = time.monotonic(), 0
    for x, _, _ in dataset:
        seen += int(x.shape[0])
    return seen / (time.monotonic() - started)


def step_rate(backbone: str, image_size: int, batch_size: int, steps: int, mixed: bool) -> float:
    """Images per second of the training step alone, on one batch held in memory."""
    import keras
    import tensorflow as tf

    from training import classification, fitting

    fitting.set_precision(mixed)
    model, _ = classification.build_classifier(120, image_size, backbone, "none", "dog_breed", dense_units=512)
    classification.compile_classifier(model, 1e-3)
    x = tf.random.uniform((batch_size, image_size, image_size, 3), 0, 255)
    y = tf.random.uniform((batch_size,), 0, 120, dtype=tf.int64)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    started = time.monotonic()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    return steps * batch_size / (time.monotonic() - started)


def recipe_command(data: Path, out: Path, image_size: int, batch_size: int, epochs: int,
                   cache: Path | None) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--backbone", "conv4-gap", "--weights", "none",
            "--image-size", str(image_size), "--epochs", str(epochs), "--patience", str(epochs),
            "--fine-tune-epochs", "0", "--batch-size", str(batch_size), "--restart",
            *(["--cache", str(cache)] if cache else [])]


def recipe_speed(data: Path, folder: Path, workers: int, image_size: int, batch_size: int, epochs: int,
                 cores: int, cache: Path | None) -> dict:
    """One run of the dog-breed recipe as `workers` processes (1: a plain run), each with
    cores // workers threads: replicas, global batch, steps per epoch, step time (s) and images/s
    over the epochs after the first, and the wall time of the whole run."""
    from support.local_cluster import LocalCluster

    threads = str(max(1, cores // workers))
    env = {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}
    out = folder / f"bundle-{workers}"
    started = time.monotonic()
    if workers == 1:
        result = subprocess.run([sys.executable, "-m", "training.dog_breed",
                                 *recipe_command(data, out, image_size, batch_size, epochs, cache)],
                                cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
        log = result.stdout + result.stderr
        if result.returncode:
            raise SystemExit(f"the single run failed:\n{log[-3000:]}")
    else:
        run = LocalCluster(folder / f"cluster-{workers}", "training.dog_breed",
                           recipe_command(data, out, image_size, batch_size, epochs, cache), workers=workers,
                           env=env).start()
        exits = run.wait(3600)
        log = run.log(0)
        if any(exits.values()):
            raise SystemExit(f"the cluster failed ({exits}):\n{run.logs()}")
    wall = time.monotonic() - started
    steps = int(re.findall(r"(\d+)/\1 - ", log)[-1])
    with open(out / "logs" / "classifier-1.csv", newline="") as handle:
        seconds = [float(row["epoch_seconds"]) for row in csv.DictReader(handle)][1:]
    step = float(np.median(seconds)) / steps  # the median epoch: a shared machine has slow moments
    return {"workers": workers, "replicas": workers, "global_batch": batch_size * workers, "steps": steps,
            "step_s": step, "images_per_s": batch_size * workers / step, "wall_s": wall, "epochs_s": seconds}


def compare_workers(data: Path, folder: Path, workers: int, image_size: int, batch_size: int, epochs: int,
                    cores: int, cache: Path | None, repeats: int) -> None:
    """Each configuration `repeats` times, in turn (a shared machine's slow moments fall on both),
    every run's figures, then the medians and the overhead per step."""
    runs = [recipe_speed(data, folder, n, image_size, batch_size, epochs, cores, cache)
            for _ in range(repeats) for n in (1, workers)]
    print(f"{'workers':>7} {'replicas':>8} {'global batch':>12} {'steps/epoch':>11} {'step (ms)':>9} "
          f"{'images/s':>8} {'run (s)':>7}  timed epochs (s)")
    for row in runs:
        print(f"{row['workers']:>7} {row['replicas']:>8} {row['global_batch']:>12} {row['steps']:>11} "
              f"{1000 * row['step_s']:>9.0f} {row['images_per_s']:>8.1f} {row['wall_s']:>7.0f}  "
              + " ".join(f"{s:.1f}" for s in row["epochs_s"]))
    one, many = ({key: float(np.median([r[key] for r in runs if r["workers"] == n])) for key in ("step_s", "images_per_s")}
                 for n in (1, workers))
    overhead = many["step_s"] - workers * one["step_s"]
    print(f"median of {repeats}: 1 process {1000 * one['step_s']:.0f} ms a step, {one['images_per_s']:.1f} images/s; "
          f"{workers} workers {1000 * many['step_s']:.0f} ms, {many['images_per_s']:.1f} images/s")
    print(f"overhead per step with {workers} workers: {1000 * many['step_s']:.0f} - {workers} x "
          f"{1000 * one['step_s']:.0f} = {1000 * overhead:.0f} ms ({overhead / many['step_s']:.0%} of the step)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="dataset sizes (images)")
    parser.add_argument("--work", type=Path, help="where the synthetic sets are made and kept (default: a temp dir)")
    parser.add_argument("--backbone", default="efficientnetb3", help="backbone of the step benchmark")
    parser.add_argument("--image-size", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--input-batches", type=int, default=30, help="timed input batches")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--skip-memory", action="store_true", help="only the input and step rates")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="instead: the recipe as one process and as N worker processes, side by side")
    parser.add_argument("--epochs", type=int, default=5, help="with --workers: epochs of each run (the first "
                        "is not timed)")
    parser.add_argument("--no-cache", action="store_true", help="with --workers: decode the photos every epoch")
    parser.add_argument("--repeats", type=int, default=1, help="with --workers: runs of each, in turn (medians)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-train-"))
    cores = os.cpu_count() or 1
    print(f"{cores} cores; photos {PHOTO[0]} x {PHOTO[1]} JPEG; image size {args.image_size}")

    if args.workers:
        # Fewer breeds than the real 120, so that a few hundred photos still fill three splits.
        size = min(args.sizes)
        breeds = max(2, min(120, size // 24))
        data = make_photos(work / f"dogs-{size}-{breeds}", size, breeds=breeds)
        print(f"dog-breed recipe, conv4-gap, {size} photos of {breeds} breeds, batch {args.batch_size} per replica, "
              f"{args.epochs} epochs (the first not timed), "
              f"{'decoding every epoch' if args.no_cache else 'from the --cache the first epoch fills'}; "
              f"1 process, then {args.workers} workers")
        cache = None if args.no_cache else work / f"cache-{size}-{breeds}"
        compare_workers(data, work, args.workers, args.image_size, args.batch_size, args.epochs, cores, cache,
                        args.repeats)
        return
    sets = {size: make_photos(work / f"dogs-{size}", size) for size in sorted(args.sizes)}
    if not args.skip_memory:
        peaks = {}
        for size, data in sets.items():
            peaks[size], seconds = peak_memory(data, work / f"bundle-{size}", args.image_size)
            print(f"memory: {size:>6} images, one epoch: peak RSS {peaks[size]:7.0f} MB ({seconds:.0f} s)")
        if len(peaks) > 1:
            low, high = min(peaks), max(peaks)
            print(f"memory: peak RSS ratio {high}/{low} images = {peaks[high] / peaks[low]:.2f} (target <= 1.2)")

    data = sets[min(sets)]
    decoded = input_rate(data, args.image_size, args.batch_size, args.input_batches, None)
    print(f"input: decode + resize + batch: {decoded:7.1f} images/s ({decoded / cores:.1f} per core)")
    cache = work / "cache"
    input_rate(data, args.image_size, args.batch_size, args.input_batches, cache)  # fill the cache
    cached = input_rate(data, args.image_size, args.batch_size, args.input_batches, cache)
    print(f"input: from the --cache:          {cached:7.1f} images/s ({cached / cores:.1f} per core)")

    step = step_rate(args.backbone, args.image_size, args.batch_size, args.steps, args.mixed_precision)
    print(f"step: {args.backbone} at {args.image_size} px, batch {args.batch_size}"
          f"{', mixed precision' if args.mixed_precision else ''}: {step:7.1f} images/s")
    verdict = "keeps up with" if decoded >= step else "limits"
    print(f"the input {verdict} the step here ({decoded:.1f} vs {step:.1f} images/s)")


if __name__ == "__main__":
    main()
