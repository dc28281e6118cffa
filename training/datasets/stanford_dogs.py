"""Stanford Dogs as distributed: `Images/<wnid>-<Breed>/*.jpg`, `Annotation/<wnid>-<Breed>/<file>`
(Pascal VOC boxes) and, for the official split, `train_list.mat` / `test_list.mat` (beside
Images/ or in lists/). Without the lists (the Kaggle copy) the split is stratified 80/10/10."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import scipy.io

from training.datasets.splits import stratified_split
from training.inputs import Sample


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
        train_idx, val_idx, test_idx = stratified_split(labels, (0.8, 0.1, 0.1), seed)
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
    train_idx, val_idx = stratified_split([s.label for s in train_pool], (0.9, 0.1), seed)
    train = [train_pool[i] for i in train_idx]
    val = [train_pool[i] for i in val_idx]
    return folders, (train, val, test), split_name, report
