"""Build a small demo bundle for every task, offline, in a couple of minutes on a CPU.

    python -m training.demo [--models-dir models] [--force] [--only TASK ...]

Each task's own training recipe runs on synthetic images written in its dataset's real layout
(training/synthetic/, the generators the tests use). Bundles land in <models-dir>/demo/<task>/
and are reused until --force. The app uses a demo bundle only when a task has no real model, and
says so; `python app.py --build-demos` (or BUILD_DEMOS=1, on a Space) builds the missing ones
before it starts. Each build prints one line; the recipe's own output (Keras' epoch lines) goes
to <models-dir>/demo/<task>.log.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import tempfile
import time
from pathlib import Path

from core import source
from core.bundle import BundleError, read_metadata
from tasks import TASKS

# About how long each demo build takes on 2 idle CPU cores (measured from a fresh clone: 2 min 51 s
# in all), said before it starts.
SECONDS = {"dog_breed": 25, "hashtags": 25, "movie_genres": 25, "age_gender": 40, "caries": 45, "sandwich": 12}


def present(folder: Path) -> bool:
    try:
        read_metadata(folder)
        return True
    except BundleError:
        return False


def build(task, out: Path) -> float:
    """Run the task's recipe on its synthetic data into `out`; returns the seconds it took."""
    started = time.monotonic()
    log = out.with_name(f"{task.NAME}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"Building the {task.TITLE} demo model (about {SECONDS.get(task.NAME, 30)} s; log: {log}) ...", flush=True)
    recipe = importlib.import_module(f"training.{task.NAME}")
    # Demo data is made afresh in a temporary folder: an earlier, interrupted build cannot be resumed.
    shutil.rmtree(out.with_name(f"{out.name}.work"), ignore_errors=True)
    with open(log, "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle), \
            tempfile.TemporaryDirectory(prefix=f"demo-{task.NAME}-") as workdir:
        recipe.build_demo(out, Path(workdir))
    seconds = time.monotonic() - started
    print(f"  done in {seconds:.0f} s -> {out}", flush=True)
    return seconds


def build_missing(models_root: Path, hub: dict) -> None:
    """The demo bundle of every task that would otherwise have no model: no local bundle, no
    pinned Hub repo, no demo bundle yet."""
    missing = [task for task in TASKS if not (models_root / task.NAME).exists() and task.NAME not in hub
               and not present(models_root / "demo" / task.NAME)]
    if missing:
        print(f"{len(missing)} tab(s) have no model: building demo models on synthetic data "
              f"(about {sum(SECONDS.get(t.NAME, 30) for t in missing)} s on 2 cores), once.", flush=True)
    for task in missing:
        build(task, models_root / "demo" / task.NAME)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", help="root of the bundles (default: models/, or $MODELS_DIR)")
    parser.add_argument("--force", action="store_true", help="rebuild bundles that already exist")
    parser.add_argument("--only", nargs="*", help="task names to build (default: all)")
    args = parser.parse_args(argv)
    root = source.models_dir(args.models_dir) / "demo"
    for task in TASKS:
        if args.only and task.NAME not in args.only:
            continue
        out = root / task.NAME
        if present(out) and not args.force:
            print(f"{task.NAME}: demo bundle present in {out} (--force rebuilds it)")
            continue
        build(task, out)


if __name__ == "__main__":
    main()
