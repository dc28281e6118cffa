"""The command-line options every recipe shares."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.backbones import BACKBONES


def common_parser(description: str, default_size: int, default_backbone: str,
                  backbones=None) -> argparse.ArgumentParser:
    """The options every recipe shares; `backbones` replaces the classifier backbones (e.g. U-Net encoders)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, type=Path, help="the dataset folder, as distributed")
    parser.add_argument("--out", required=True, type=Path, help="where to write the model bundle")
    parser.add_argument("--epochs", type=int, default=10, help="epochs with the backbone frozen")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="epochs with the top of the backbone unfrozen")
    parser.add_argument("--fine-tune-fraction", type=float, default=0.2, help="share of backbone layers to unfreeze")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=default_size, help="square input side in pixels")
    parser.add_argument("--backbone", default=default_backbone, choices=sorted(backbones or BACKBONES))
    parser.add_argument("--weights", default="imagenet", help="imagenet, none, or a path to a no-top weights file")
    parser.add_argument("--patience", type=int, default=5, help="EarlyStopping patience (epochs)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the bundle to this Hub model repo")
    parser.add_argument("--demo", action="store_true", help=argparse.SUPPRESS)  # set by training.demo: synthetic data
    return parser
