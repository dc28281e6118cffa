"""Dog breed identification on Stanford Dogs, by transfer learning.

    python -m training.dog_breed --data DIR --out models/dog_breed

DIR is the dataset as distributed: `Images/<wnid>-<Breed>/*.jpg`,
`Annotation/<wnid>-<Breed>/<file>` (Pascal VOC boxes) and, for the official
split, `train_list.mat` / `test_list.mat` (beside Images/ or in lists/). Without
the lists (the Kaggle copy) the split is stratified 80/10/10.

The recipe follows the course: EfficientNetB3 base, global pooling, a dense
layer, dropout, softmax over the breeds; augmentation layers; first the base
frozen, then the top of the base fine-tuned at a tenth of the learning rate;
EarlyStopping keeps the best weights in both phases.

`--backbone efficientnetb3 xception` compares backbones as the course does (the same split and
seed for each; the table of parameters, time to fit, train / validation / test accuracy and
test macro recall goes into the bundle and its card) and keeps the best by validation accuracy.
`--extra-data FOLDER` adds corrections flagged in the app to the training split.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training import classification, options, publishing
from training.datasets.stanford_dogs import read_stanford_dogs, readable_breed

TASK = "dog_breed"
CARD = publishing.Card(
    title="Dog breed classifier (Stanford Dogs)",
    summary="Predicts one of {classes} dog breeds from a photo. Backbone: {backbone}.",
    tags=["stanford-dogs", "dog-breed"], datasets=["stanford-dogs"], label_name="breed")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = options.common_parser(__doc__.split("\n\n")[0], default_size=300, default_backbone="efficientnetb3",
                                   compare_backbones=True)
    parser.add_argument("--crop-boxes", action="store_true", help="train and test on the annotated dog boxes")
    args = parser.parse_args(argv)

    # 1. Data: the dataset as distributed (unreadable files and bad annotations are reported).
    folders, (train, val, test), split, report = read_stanford_dogs(args.data, args.crop_boxes, args.seed)
    data = classification.Data("Stanford Dogs", args.data, [readable_breed(f) for f in folders], train, val, test,
                               split, report, details={"crop_boxes": args.crop_boxes})

    # 2.-5. Model, training, evaluation and bundle: the single-label recipe.
    return classification.train(TASK, data, CARD, args, options.command(__spec__.name, argv), dense_units=512,
                                label_ids=[f.split("-", 1)[0] for f in folders])


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic dogs (one coat pattern per breed)."""
    from training.synthetic.dogs import make_stanford_dogs

    data = make_stanford_dogs(workdir / "stanford_dogs", breeds=6, per_breed=30, size=128)
    main(["--data", str(data), "--out", str(out), "--backbone", "conv4-gap", "--weights", "none", "--image-size", "64",
          "--epochs", "8", "--patience", "8", "--fine-tune-epochs", "0", "--batch-size", "16", "--learning-rate",
          "0.003", "--with-examples", "--demo"])


if __name__ == "__main__":
    main()
