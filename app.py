"""The vision demos: one tab per task, each backed by a Keras model bundle.

    python app.py [--models-dir DIR] [--hub-config FILE] [--host HOST] [--port PORT] [--build-demos]
                  [--flag-dir DIR | --no-flagging] [--flag-repo OWNER/NAME] [--flag-push-minutes M]

Each tab's model comes from, in order: a local bundle (`<models-dir>/<task>/`),
the task's Hub repo at the commit pinned in models/hub.json, or the synthetic
demo bundle (`python -m training.demo`; `--build-demos` or BUILD_DEMOS=1 builds
the missing ones first, as a Space does on start). Models load once, at start.
Flags (a user's "this answer is wrong") go to `flagged/<task>/` (core/flags.py) and, with a flags
repo set, to that Hub dataset every few minutes and when the app stops (core/flags_hub.py): a
Space's disk does not outlive a restart.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def limit_malloc_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas at `count` unless MALLOC_ARENA_MAX is set; before any thread starts.

    glibc gives threads their own arenas (up to 8 per core) and keeps what they free: with 8
    requests in flight each holding megapixel arrays, the server's RSS climbed from 1.3 to 1.7 GB
    in a 10-minute caries soak; with 2 arenas it stayed between 0.9 and 1.1 GB, and the CPU per
    request stayed within its run-to-run spread (docs/serving.md, "Under load"). False where the C
    library is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:  # glibc read it at start
        return False
    try:
        return ctypes.CDLL("libc.so.6").mallopt(-8, count) == 1  # -8: M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        return False


limit_malloc_arenas()

import gradio as gr  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from core import flags, flags_hub, request_limits, source, ui  # noqa: E402
from tasks import TASKS  # noqa: E402


def load_models(models_dir=None, hub_config=None) -> dict:
    """Resolve every task's model once; never raises (problems become notices)."""
    root = source.models_dir(models_dir)
    hub = source.read_hub_config(hub_config)
    return {task.NAME: source.resolve(task.NAME, task.TRAIN_COMMAND, root, hub, task.METADATA) for task in TASKS}


def build_app(models: dict, flag_root=None, flag_notice: str = flags.NOTICE) -> gr.Blocks:
    """The page; with `flag_root` (a folder), every tab with a model has Flag controls saving there,
    and `flag_notice` next to them says where flags go."""
    with gr.Blocks(title="Vision demos", delete_cache=ui.DELETE_CACHE) as demo:
        gr.Markdown("# Vision demos\nTrained Keras models, one per tab. Models and their held-out scores are listed in each tab.")
        for task in TASKS:
            resolved = models[task.NAME]
            with gr.Tab(task.TITLE, id=task.NAME):
                gr.Markdown(task.DESCRIPTION)
                gr.Markdown(ui.status(resolved, task.headline, task.TRAIN_COMMAND), elem_id=f"{task.NAME}-status")
                if resolved.bundle is not None:
                    flagging = None if flag_root is None else flags.Flagging(
                        flag_root / task.NAME, task.NAME, flags.model_origin(resolved, task.NAME),
                        tuple(resolved.bundle.labels), flag_notice)
                    task.tab(resolved.bundle, ui, flagging)
    return demo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", help="root of the local bundles (default: models/, or $MODELS_DIR)")
    parser.add_argument("--hub-config", help="Hub pins per task (default: models/hub.json, or $HUB_CONFIG)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int,
                        help="serve on this port, or fail if it is taken (default: the first free one from 7860, "
                             "or from $GRADIO_SERVER_PORT)")
    parser.add_argument("--build-demos", action="store_true", default=os.environ.get("BUILD_DEMOS") == "1",
                        help="first build the demo model of every tab that has none (also BUILD_DEMOS=1)")
    parser.add_argument("--flag-dir", help="where flagged answers are saved, one folder per task "
                                           "(default: flagged/, or $FLAG_DIR)")
    parser.add_argument("--no-flagging", action="store_true",
                        help="no Flag controls, nothing saved (also FLAGGING=off)")
    parser.add_argument("--flag-repo", default=os.environ.get("FLAG_REPO") or None, metavar="OWNER/NAME",
                        help="also push the flags to this Hub dataset repo (created private; HF_TOKEN must be able "
                             "to write to it) every --flag-push-minutes and when the app stops (also $FLAG_REPO). "
                             "On a Space, whose disk a restart wipes, flags are otherwise kept only until it restarts")
    parser.add_argument("--flag-push-minutes", type=float, metavar="M",
                        default=os.environ.get("FLAG_PUSH_MINUTES", str(flags_hub.PUSH_MINUTES)),
                        help="minutes between two pushes of the flags to --flag-repo (default: 5, or "
                             "$FLAG_PUSH_MINUTES)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.build_demos:
        from training import demo

        demo.build_missing(source.models_dir(args.models_dir), source.read_hub_config(args.hub_config))
    models = load_models(args.models_dir, args.hub_config)
    for name, resolved in models.items():
        logging.getLogger("app").info("%s: %s %s", name, resolved.origin or "no model", " ".join(resolved.notices))
    flag_root = flags.flag_root(args.flag_dir, enabled=False if args.no_flagging else None)
    logging.getLogger("app").info("flags: %s", flag_root or "off")
    scheduler, notice = (None, flags.NOTICE) if flag_root is None else flags_hub.keep_flags(
        flag_root, args.flag_repo, args.flag_push_minutes, source.on_a_space())
    demo_app = build_app(models, flag_root, notice)
    ui.queue(demo_app)
    # Only the files the page shows (the examples) can be fetched, not the bundles around them.
    shown = [str(path) for resolved in models.values() if resolved.bundle is not None
             for path in ui.example_files(resolved.bundle)]
    ui.cap_cache(demo_app.GRADIO_CACHE, ui.CACHE_MAX_MB * 2**20)
    signal.signal(signal.SIGTERM, stop_serving)
    # What start-up made (TensorFlow, Gradio, the networks: half a million objects) lives as long as
    # the server: out of the collector's sight, a full collection takes no 0.3 s pause from serving,
    # and the app stops in 0.15 s instead of 1.45 s (2026-12-07, one bundle).
    gc.freeze()
    try:
        demo_app.launch(server_name=args.host, server_port=args.port, max_file_size=ui.MAX_FILE_SIZE,
                        allowed_paths=shown, show_error=True, state_session_capacity=ui.SESSIONS,
                        app_kwargs={"middleware": [Middleware(request_limits.BodyLimit)]})
    finally:
        if scheduler is not None:
            scheduler.close()


def stop_serving(signum, frame):
    """SIGTERM (how a Space, or anyone, stops the app) as Ctrl-C: by default it ends Python on the
    spot, skipping the last push of the flags; Gradio closes its server on KeyboardInterrupt."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
