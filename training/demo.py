"""Build a small demo bundle for every task, offline, in a few minutes on a CPU.

    python -m training.demo [--models-dir models] [--force]

Each task's own training recipe runs on synthetic images written in its
dataset's real layout (training/synthetic.py, the generators the tests use).
Bundles land in <models-dir>/demo/<task>/ and are reused until --force.
The app uses a demo bundle only when a task has no real model, and says so.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

from core import source
from core.bundle import BundleError, read_metadata
from tasks import TASKS


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
        if out.exists() and not args.force:
            try:
                read_metadata(out)
                print(f"{task.NAME}: demo bundle present in {out} (--force rebuilds it)")
                continue
            except BundleError as error:
                print(f"{task.NAME}: rebuilding the demo bundle ({error})")
        started = time.monotonic()
        recipe = importlib.import_module(f"training.{task.NAME}")
        with tempfile.TemporaryDirectory(prefix=f"demo-{task.NAME}-") as workdir:
            recipe.build_demo(out, Path(workdir))
        print(f"{task.NAME}: demo bundle built in {time.monotonic() - started:.0f} s -> {out}")


if __name__ == "__main__":
    main()
