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
`--flags FOLDER` adds corrections flagged in the app to the training split.

`--backbone efficientnet_lite0 --weights imagenet` starts from ImageNet weights that ship in a
package (no download), and the breed head starts as ImageNet's own rows for the 120 breeds, which
are ImageNet classes; its bundle also says how likely the picture is to show a dog at all (the sum
of ImageNet's dog classes). With `--epochs 0` and no `--data`, that is the whole recipe: a usable
bundle without the dataset (the app's pretrained dog-breed model).
"""

from __future__ import annotations

import sys
from pathlib import Path

from training import classification, options, publishing
from training.datasets.stanford_dogs import BREEDS, DOG_OUTPUTS, IMAGENET_OUTPUT, read_stanford_dogs, readable_breed

TASK = "dog_breed"
CARD = publishing.Card(
    title="Dog breed classifier (Stanford Dogs)",
    summary="Predicts one of {classes} dog breeds from a photo. Backbone: {backbone}.",
    tags=["stanford-dogs", "dog-breed"], datasets=["stanford-dogs"], label_name="breed")
DOG = classification.Detector("dog_probability", tuple(DOG_OUTPUTS))


def parser():
    cli = options.common_parser(__doc__.split("\n\n")[0], default_size=300, default_backbone="efficientnetb3",
                                compare_backbones=True)
    cli.add_argument("--crop-boxes", action="store_true", help="train and test on the annotated dog boxes")
    cli.set_defaults(data=None)
    for action in cli._actions:
        if action.dest == "data":  # optional here: the pretrained bundle needs no dataset
            action.required = False
            action.help += "; without it (--backbone efficientnet_lite0 --weights imagenet --epochs 0), ImageNet's own breeds"
    return cli


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cli = parser()
    args = cli.parse_args(argv)
    if args.data is None:
        if (args.backbone, args.weights, args.epochs) != (["efficientnet_lite0"], "imagenet", 0):
            cli.error("--data is required, except for the pretrained bundle: --backbone efficientnet_lite0 "
                         "--weights imagenet --epochs 0")
        return imagenet_bundle(args, options.command(__spec__.name, argv))

    # 1. Data: the dataset as distributed (unreadable files and bad annotations are reported).
    folders, (train, val, test), split, report = read_stanford_dogs(args.data, args.crop_boxes, args.seed)
    data = classification.Data("Stanford Dogs", args.data, [readable_breed(f) for f in folders], train, val, test,
                               split, report, details={"crop_boxes": args.crop_boxes})

    # 2.-5. Model, training, evaluation and bundle: the single-label recipe.
    wnids = [f.split("-", 1)[0] for f in folders]
    return classification.train(TASK, data, CARD, args, options.command(__spec__.name, argv), dense_units=512,
                                label_ids=wnids, imagenet_rows=[IMAGENET_OUTPUT.get(wnid) for wnid in wnids],
                                detector=DOG)


def imagenet_bundle(args, command: str) -> dict:
    """The dog-breed bundle of ImageNet's own weights, no dataset: EfficientNet-Lite0 with ImageNet's
    rows for the 120 breeds, and the dog probability. Nothing is trained, so nothing is held out:
    its card says so, and retraining on Stanford Dogs (--data) starts from here."""
    from training.backbones import weights_provenance

    wnids = [folder.split("-", 1)[0] for folder in BREEDS]
    model, _ = classification.build_classifier(len(BREEDS), args.image_size, "efficientnet_lite0", "imagenet", TASK,
                                               imagenet_rows=[IMAGENET_OUTPUT[wnid] for wnid in wnids])
    network = classification.with_detector(model, "efficientnet_lite0", "imagenet", DOG)
    weights = weights_provenance("efficientnet_lite0", "imagenet")
    dataset = {"name": "ImageNet-1k (ILSVRC 2012): its 120 Stanford Dogs classes", "images": 0,
               "split": "none: ImageNet's weights as published, not retrained here", "sha256": weights["sha256"],
               "report": {}}
    metadata = publishing.base_metadata(TASK, [readable_breed(folder) for folder in BREEDS], args.image_size, {},
                                        dataset, command, backbone="efficientnet_lite0", label_ids=wnids,
                                        pretrained={**weights, "as_published": True})
    licence = publishing.Licence("apache-2.0", None, None,
                                 "The weights are EfficientNet-Lite0's ImageNet-1k weights from the "
                                 f"{weights['package']} package (Apache-2.0). ImageNet's images have terms of their "
                                 "own (non-commercial research and education): see https://image-net.org/download.php.")
    card = publishing.model_card(
        "Dog breed classifier (EfficientNet-Lite0, ImageNet weights)",
        "Names the most likely of the 120 Stanford Dogs breeds, and says how likely the picture is to show a dog at "
        "all. These are ImageNet's own weights for those classes (EfficientNet-Lite0, trained on ImageNet-1k), "
        "not retrained on Stanford Dogs: no held-out figures are measured here. Retrain with "
        "`python -m training.dog_breed --data DIR --backbone efficientnet_lite0`.",
        metadata, tags=CARD.tags + ["imagenet", "efficientnet-lite"], datasets=[], metric_rows=[],
        usage=publishing.usage_snippet("single-label", args.push_to_hub), licence=licence)
    path = publishing.write_bundle(args.out, {"classifier": network}, metadata, card.text,
                                   {**card.files, **(example_photos() if args.with_examples else {})})
    if args.push_to_hub:
        publishing.push_to_hub(path, args.push_to_hub, TASK, args.private)
    return {}


def example_photos() -> dict:
    """Real photos for the tab's examples, from packages that may be installed: Debian's darknet
    (a dog, among a bicycle and a truck) and scikit-image (a cat: "not a dog")."""
    import io

    from PIL import Image
    from skimage import data

    files = {}
    dog = Path("/usr/share/darknet/data/dog.jpg")
    if dog.is_file():
        files["examples/dog.jpg"] = dog.read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    files["examples/cat.jpg"] = buffer.getvalue()
    return files


def build_demo(out: Path, workdir: Path):
    """The tab's model until one is trained on Stanford Dogs: ImageNet's own weights for the breeds
    (EfficientNet-Lite0, from a package: no download, no dataset)."""
    main(["--out", str(out), "--backbone", "efficientnet_lite0", "--weights", "imagenet", "--epochs", "0",
          "--image-size", "224", "--with-examples"])


if __name__ == "__main__":
    main()
