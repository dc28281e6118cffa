"""The command-line options every recipe shares, and what a run records of them."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from training import cluster
from training.backbones import BACKBONES

# Options that do not change what a run computes: a run interrupted with one value of these
# resumes with another.
NOT_SETTINGS = ("push_to_hub", "private", "with_examples", "cache", "restart", "demo", "deterministic",
                "cluster_timeout")


FLAGS_HELP = ("a folder of corrections flagged in the app (images/<id>.<ext> and metadata.jsonl, as its Flag "
                   "button writes them; or the flag directory above it), or a Hub dataset of them at a commit "
                   "(hf://datasets/OWNER/NAME@COMMIT), added to the training split only; unusable lines are skipped "
                   "and counted")


def folder_or_hub(text: str) -> Path | str:
    """--flags: a folder as a Path, a Hub reference as text (a Path would fold hf:// into hf:/)."""
    return text if text.startswith("hf://") else Path(text)


# The option that adds examples to the training split was --extra-data in every recipe, whatever it
# read; each recipe now names it for what it reads (--flags, caries' --extra-radiographs). The old
# name is still read for one release.
DEPRECATED_EXTRA = "--extra-data"


class ExtraData(argparse.Action):
    """Stores the value; says so when it came under the old name."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == DEPRECATED_EXTRA:
            print(f"{DEPRECATED_EXTRA} is deprecated: use {self.option_strings[0]} (the old name goes in the next "
                  f"release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def common_parser(description: str, default_size: int, default_backbone: str, backbones=None,
                  hub_data: bool = False, compare_backbones: bool = False,
                  extra_option: str = "--flags", extra_help: str = FLAGS_HELP,
                  extra_hub: bool = True) -> argparse.ArgumentParser:
    """The options every recipe shares; `backbones` replaces the classifier backbones (e.g. U-Net encoders).
    With `hub_data`, --data may also be a Hub dataset pinned by commit, kept as text for
    training.datasets.hub.resolve_data (a Path would fold hf:// into hf:/). With
    `compare_backbones`, --backbone takes several names (a list, even of one). `extra_option` is the
    option that adds examples to the training split, named for what it reads (args.extra_data); with
    `extra_hub` it may be a Hub reference too (training.datasets.flagged reads it)."""
    parser = argparse.ArgumentParser(description=description)
    if hub_data:
        parser.add_argument("--data", required=True, metavar="DIR or hf://datasets/OWNER/NAME@COMMIT",
                            help="the dataset folder, or a Hub dataset repo at a commit")
    else:
        parser.add_argument("--data", required=True, type=Path, help="the dataset folder, as distributed")
    parser.add_argument("--out", required=True, type=Path, help="where to write the model bundle")
    parser.add_argument("--epochs", type=int, default=10, help="epochs with the backbone frozen")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="epochs with the top of the backbone unfrozen")
    parser.add_argument("--fine-tune-fraction", type=float, default=0.2, help="share of backbone layers to unfreeze")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="not scaled with the number of devices: raise it yourself if you raise the global batch")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per step on each device (per replica): with N GPUs a step sees N times as many")
    parser.add_argument("--image-size", type=int, default=default_size, help="square input side in pixels")
    if compare_backbones:
        parser.add_argument("--backbone", nargs="+", default=[default_backbone], choices=sorted(backbones or BACKBONES),
                            metavar="NAME", help="one backbone, or several to compare on the same split: each trains "
                            "in turn and the one with the best validation accuracy is kept (from-scratch ones ignore "
                            "--weights in a comparison); choices: " + ", ".join(sorted(backbones or BACKBONES)))
    else:
        parser.add_argument("--backbone", default=default_backbone, choices=sorted(backbones or BACKBONES))
    parser.add_argument("--weights", default="imagenet", help="imagenet, none, or a path to a no-top weights file")
    parser.add_argument("--patience", type=int, default=5, help="EarlyStopping patience (epochs)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument(extra_option, DEPRECATED_EXTRA, dest="extra_data", action=ExtraData, metavar="FOLDER",
                        type=folder_or_hub if extra_hub else Path, help=extra_help + f" ({DEPRECATED_EXTRA}: the old name)")
    parser.add_argument("--deterministic", action="store_true",
                        help="the same command gives the same model on the same machine (TensorFlow's op "
                             "determinism; slower, mostly on GPUs)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="compute in float16 on GPUs (mixed_float16); the bundle is saved in float32")
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="keep decoded, resized images here: later epochs and later runs skip decoding")
    parser.add_argument("--restart", action="store_true",
                        help="discard an interrupted run of this bundle instead of resuming it")
    parser.add_argument("--cluster-timeout", type=float, default=cluster.TIMEOUT, metavar="SECONDS",
                        help="with TF_CONFIG naming several machines (training/cluster.py): how long a worker waits "
                             "for the others to answer before it stops, naming those it could not reach")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the bundle to this Hub model repo")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    parser.add_argument("--with-examples", action="store_true",
                        help="copy a few held-out dataset images into the bundle as the tab's examples (they are "
                             "the dataset's images, under its terms: mind them before publishing)")
    parser.add_argument("--demo", action="store_true", help=argparse.SUPPRESS)  # set by training.demo: synthetic data
    return parser


def settings(args: argparse.Namespace, **recorded) -> dict:
    """The options that shape the result, as a run's work folder records them, and what else the
    recipe records beside them (e.g. the --flags folder's content hash: that folder grows as
    people flag, so its name alone does not say a resumed run would train on the same data)."""
    return {**{key: value for key, value in sorted(vars(args).items()) if key not in NOT_SETTINGS}, **recorded}


def command(module: str, argv: list[str]) -> str:
    """The command that ran, as a person re-runs it from the same folder: `python -m
    training.dog_breed --data ...`. An absolute path becomes relative to the working folder when it
    is inside it, else its last part alone: bundles and cards are published, and the trainer's own
    folders (a home directory's name, say) are nobody's business."""
    cwd = Path.cwd()

    def shown(argument: str) -> str:
        path = Path(argument)
        if not path.is_absolute():
            return argument
        return path.relative_to(cwd).as_posix() if path.is_relative_to(cwd) else path.name
    return shlex.join(["python", "-m", module, *map(shown, argv)])
