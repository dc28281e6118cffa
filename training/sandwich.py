"""Hamburger or sandwich? A classifier on crops carved out of Open Images.

    python -m training.open_images --classes "Hamburger" "Sandwich" --meta META --out data/sandwich
    python -m training.sandwich --data data/sandwich/images_cropped --out models/sandwich
    python -m training.sandwich --data hf://datasets/OWNER/NAME@COMMIT --out models/sandwich

--data is any folder of class folders, as training.open_images writes `images_cropped/<class>/*.jpg`
(any number of classes), or such a dataset on the Hub (the builder's `--push-to-hub`) pinned by
commit: task.json then names its repo and commit. The recipe follows the course: a small CNN
(three convolution blocks, one dense layer, dropout) with augmentation, trained with
EarlyStopping (patience 4) — or a transfer-learning backbone with `--backbone efficientnetb0
--weights imagenet`. The split is stratified 80/10/10. When the builder's manifest.json sits
beside images_cropped/ (or in the Hub dataset), its hash and sources go into the bundle, so
{data, code, environment} rebuild it. Several `--backbone` names are compared and the best by
validation accuracy kept; `--flags FOLDER` adds corrections flagged in the app to the
training split (training/classification.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from training import classification, options, publishing
from training.datasets.hub import resolve_data
from training.datasets.image_folders import builder_manifest, read_crops, readable_class
from training.datasets.splits import stratified_split

TASK = "sandwich"


def parser():
    cli = options.common_parser(__doc__.split("\n\n")[0], default_size=128, default_backbone="simple", hub_data=True,
                                compare_backbones=True)
    cli.set_defaults(weights="none", epochs=50, patience=4, batch_size=16, fine_tune_epochs=0)
    return cli


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)

    # 1. Data: the class folders (from the Hub, pinned, if so named), split 80/10/10 per class.
    root, hub = resolve_data(args.data)
    folders, samples = read_crops(root)
    classes = [readable_class(f) for f in folders]
    train, val, test = ([samples[i] for i in part] for part in
                        stratified_split([s.label for s in samples], (0.8, 0.1, 0.1), args.seed))
    data = classification.Data("Open Images crops", root, classes, train, val, test,
                               f"stratified 80/10/10, seed {args.seed}", details={**builder_manifest(root), **hub})
    card = publishing.Card(
        title=f"{' or '.join(classes)}? (Open Images)",
        summary=f"Classifies a photo as one of {', '.join(classes)}, trained on boxes cropped from Open Images. "
                "Backbone: {backbone}.",
        tags=["open-images"], datasets=["open-images", *([hub["repo"]] if hub else [])])

    # 2.-5. Model, training, evaluation and bundle: the single-label recipe.
    return classification.train(TASK, data, card, args, options.command(__spec__.name, argv), label_ids=folders)


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic crops (round stacked burgers, triangular sandwiches)."""
    from training.synthetic.food import make_food_crops

    data = make_food_crops(workdir / "images_cropped", per_class=60, size=96)
    main(["--data", str(data), "--out", str(out), "--image-size", "64", "--epochs", "8", "--patience", "8",
          "--with-examples", "--demo"])


if __name__ == "__main__":
    main()
