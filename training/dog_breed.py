"""Dog breed identification on Stanford Dogs, by transfer learning.

    python -m training.dog_breed --data DIR --out models/dog_breed

DIR is the dataset as distributed: `Images/<wnid>-<Breed>/*.jpg`,
`Annotation/<wnid>-<Breed>/<file>` (Pascal VOC boxes) and, for the official
split, `train_list.mat` / `test_list.mat` (beside Images/ or in lists/). Without
the lists (the Kaggle copy) the split is stratified 80/10/10.

The recipe follows the course: EfficientNetB3 base, global pooling, a dense
layer, dropout, softmax over the breeds; augmentation layers; first the base
frozen, then the top of the base fine-tuned at a tenth of the learning rate;
EarlyStopping restores the best weights in both phases.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import scipy.io

from training import common
from training.common import Sample

TASK = "dog_breed"


# --- data ------------------------------------------------------------------------------

def readable_breed(folder: str) -> str:
    """'n02111500-Great_Pyrenees' -> 'Great Pyrenees'; 'n02088364-beagle' -> 'Beagle'."""
    name = folder.split("-", 1)[1] if "-" in folder and folder.startswith("n") else folder
    name = name.replace("_", " ").strip()
    return name[:1].upper() + name[1:]


def read_boxes(file: Path):
    """The dog boxes of one VOC annotation file and the (width, height) they refer to."""
    root = ET.parse(file).getroot()
    frame = (int(root.findtext("size/width", "0")), int(root.findtext("size/height", "0")))
    boxes = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        boxes.append(tuple(int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")))
    if not boxes:
        raise ValueError("no <object> box")
    return boxes, frame


def find_lists(data: Path):
    for folder in (data, data / "lists"):
        if (folder / "train_list.mat").is_file() and (folder / "test_list.mat").is_file():
            return folder
    return None


def read_list(mat_file: Path) -> list[str]:
    """Relative image paths ('n02085620-Chihuahua/n02085620_5927.jpg') from a Stanford Dogs .mat list."""
    return [str(entry[0][0]) for entry in scipy.io.loadmat(mat_file)["file_list"]]


def read_stanford_dogs(data: Path, crop_boxes: bool, seed: int):
    """Breed folders, (train, val, test) sample lists, and a report of what was skipped."""
    images = data / "Images"
    if not images.is_dir():
        raise SystemExit(f"{data} has no Images/ folder: expected Stanford Dogs as distributed (Images/<wnid>-<Breed>/...)")
    folders = sorted(p.name for p in images.iterdir() if p.is_dir())
    if len(folders) < 2:
        raise SystemExit(f"{images} holds {len(folders)} breed folder(s); at least two are needed")
    label_of = {folder: i for i, folder in enumerate(folders)}
    report = {"missing_images": [], "bad_annotations": []}

    lists = find_lists(data)
    if lists:
        official = {name: read_list(lists / f"{name}_list.mat") for name in ("train", "test")}
        split_name = f"official train/test lists ({lists.relative_to(data) if lists != data else '.'}), validation 10% of train"
    else:
        everything = sorted(str(p.relative_to(images)) for f in folders for p in (images / f).iterdir() if p.is_file())
        labels = [label_of[p.split("/", 1)[0]] for p in everything]
        train_idx, val_idx, test_idx = common.stratified_split(labels, (0.8, 0.1, 0.1), seed)
        official = {"train": [everything[i] for i in np.concatenate([train_idx, val_idx])],
                    "test": [everything[i] for i in test_idx]}
        split_name = "no lists found: stratified 80/10/10"

    def samples_for(relative_paths):
        samples = []
        for relative in relative_paths:
            folder = relative.split("/", 1)[0]
            path = images / relative
            if folder not in label_of or not path.is_file():
                report["missing_images"].append(relative)
                continue
            boxes, frame = [None], None
            if crop_boxes:
                annotation = data / "Annotation" / folder / Path(relative).stem
                try:
                    boxes, frame = read_boxes(annotation)
                except (OSError, ET.ParseError, ValueError, TypeError, AttributeError) as error:
                    report["bad_annotations"].append(f"{annotation.relative_to(data)}: {error}")
                    boxes = [None]  # use the whole image
            samples.extend(Sample(path, label_of[folder], box, frame) for box in boxes)
        return samples

    train_pool = samples_for(official["train"])
    test = samples_for(official["test"])
    train_idx, val_idx = common.stratified_split([s.label for s in train_pool], (0.9, 0.1), seed)
    train = [train_pool[i] for i in train_idx]
    val = [train_pool[i] for i in val_idx]
    return folders, (train, val, test), split_name, report


# --- recipe ----------------------------------------------------------------------------

def main(argv=None):
    parser = common.common_parser(__doc__.split("\n\n")[0], default_size=300, default_backbone="efficientnetb3")
    parser.add_argument("--crop-boxes", action="store_true", help="train and test on the annotated dog boxes")
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    # 1. Data: the dataset as distributed, decoded once; unreadable files are reported and left out.
    folders, (train, val, test), split_name, report = read_stanford_dogs(args.data, args.crop_boxes, args.seed)
    breeds = [readable_breed(f) for f in folders]
    print(f"{len(breeds)} breeds; {len(train)} train, {len(val)} validation, {len(test)} test samples ({split_name})")
    x_train, y_train, skipped_train = common.load_images(train, size)
    x_val, y_val, skipped_val = common.load_images(val, size)
    x_test, y_test, skipped_test = common.load_images(test, size)
    report["unreadable_images"] = [f"{path}: {reason}" for path, reason in skipped_train + skipped_val + skipped_test]
    for kind, entries in report.items():
        if entries:
            print(f"skipped {len(entries)} ({kind.replace('_', ' ')}), e.g. {entries[0]}")
    if min(len(x_train), len(x_val), len(x_test)) == 0:
        raise SystemExit(f"Not enough readable images: {len(x_train)} train, {len(x_val)} validation, "
                         f"{len(x_test)} test; each split needs at least one (see the messages above)")

    # 2. Model.
    model, base = common.build_classifier(len(breeds), args.image_size, args.backbone, args.weights,
                                          name="dog_breed", dense_units=512)

    # 3. Train: the new head on the frozen base, then the top of the base at a lower rate.
    common.fit_two_phases(model, base, args, (x_train, y_train), (x_val, y_val), common.compile_classifier)

    # 4. Evaluate on the held-out test split.
    probabilities = model.predict(x_test, batch_size=args.batch_size, verbose=0)
    metrics = common.classification_metrics(y_test, probabilities, breeds, k=5)
    print(f"test top-1 {metrics['top1_accuracy']:.3f}, top-5 {metrics['top5_accuracy']:.3f}, "
          f"macro precision {metrics['precision_macro']:.3f}, macro recall {metrics['recall_macro']:.3f}")

    # 5. The bundle: network, metadata, card, confusion matrix, a few held-out examples.
    used = [s.path for s in train + val + test]
    dataset = {"name": "Stanford Dogs", "images": len(set(used)), "split": split_name,
               "sha256": common.fingerprint(set(used), args.data), "crop_boxes": args.crop_boxes,
               "report": report}
    metadata = common.base_metadata(TASK, breeds, args.image_size, metrics, dataset, demo=args.demo,
                                    label_ids=[f.split("-", 1)[0] for f in folders], backbone=args.backbone)
    save(args.out, model, metadata, test)
    if args.push_to_hub:
        common.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def save(out: Path, model, metadata: dict, test: list[Sample]) -> Path:
    rows, body, extra = common.classification_report_parts(metadata["metrics"], metadata["labels"], "breed")
    card = common.model_card(
        "Dog breed classifier (Stanford Dogs)",
        f"Predicts one of {len(metadata['labels'])} dog breeds from a photo. Backbone: {metadata['backbone']}.",
        metadata, tags=["stanford-dogs", "dog-breed"], datasets=["stanford-dogs"], metric_rows=rows, body=body,
    )
    extra.update(common.examples_per_class(test))
    return common.write_bundle(out, {"classifier": model}, metadata, card, extra)


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic dogs (one coat pattern per breed)."""
    from training.synthetic import make_stanford_dogs

    data = make_stanford_dogs(workdir / "stanford_dogs", breeds=6, per_breed=40, size=160)
    main(["--data", str(data), "--out", str(out), "--backbone", "small", "--weights", "none", "--image-size", "96",
          "--epochs", "20", "--patience", "8", "--fine-tune-epochs", "2", "--batch-size", "16", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
