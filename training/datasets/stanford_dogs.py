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

# The dataset's 120 breeds as its Images/ folders name them: ImageNet synsets, in the dataset's order.
BREEDS = (
    "n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog", "n02086079-Pekinese",
    "n02086240-Shih-Tzu", "n02086646-Blenheim_spaniel", "n02086910-papillon", "n02087046-toy_terrier",
    "n02087394-Rhodesian_ridgeback", "n02088094-Afghan_hound", "n02088238-basset", "n02088364-beagle",
    "n02088466-bloodhound", "n02088632-bluetick", "n02089078-black-and-tan_coonhound",
    "n02089867-Walker_hound", "n02089973-English_foxhound", "n02090379-redbone", "n02090622-borzoi",
    "n02090721-Irish_wolfhound", "n02091032-Italian_greyhound", "n02091134-whippet", "n02091244-Ibizan_hound",
    "n02091467-Norwegian_elkhound", "n02091635-otterhound", "n02091831-Saluki", "n02092002-Scottish_deerhound",
    "n02092339-Weimaraner", "n02093256-Staffordshire_bullterrier", "n02093428-American_Staffordshire_terrier",
    "n02093647-Bedlington_terrier", "n02093754-Border_terrier", "n02093859-Kerry_blue_terrier",
    "n02093991-Irish_terrier", "n02094114-Norfolk_terrier", "n02094258-Norwich_terrier",
    "n02094433-Yorkshire_terrier", "n02095314-wire-haired_fox_terrier", "n02095570-Lakeland_terrier",
    "n02095889-Sealyham_terrier", "n02096051-Airedale", "n02096177-cairn", "n02096294-Australian_terrier",
    "n02096437-Dandie_Dinmont", "n02096585-Boston_bull", "n02097047-miniature_schnauzer",
    "n02097130-giant_schnauzer", "n02097209-standard_schnauzer", "n02097298-Scotch_terrier",
    "n02097474-Tibetan_terrier", "n02097658-silky_terrier", "n02098105-soft-coated_wheaten_terrier",
    "n02098286-West_Highland_white_terrier", "n02098413-Lhasa", "n02099267-flat-coated_retriever",
    "n02099429-curly-coated_retriever", "n02099601-golden_retriever", "n02099712-Labrador_retriever",
    "n02099849-Chesapeake_Bay_retriever", "n02100236-German_short-haired_pointer", "n02100583-vizsla",
    "n02100735-English_setter", "n02100877-Irish_setter", "n02101006-Gordon_setter",
    "n02101388-Brittany_spaniel", "n02101556-clumber", "n02102040-English_springer",
    "n02102177-Welsh_springer_spaniel", "n02102318-cocker_spaniel", "n02102480-Sussex_spaniel",
    "n02102973-Irish_water_spaniel", "n02104029-kuvasz", "n02104365-schipperke", "n02105056-groenendael",
    "n02105162-malinois", "n02105251-briard", "n02105412-kelpie", "n02105505-komondor",
    "n02105641-Old_English_sheepdog", "n02105855-Shetland_sheepdog", "n02106030-collie",
    "n02106166-Border_collie", "n02106382-Bouvier_des_Flandres", "n02106550-Rottweiler",
    "n02106662-German_shepherd", "n02107142-Doberman", "n02107312-miniature_pinscher",
    "n02107574-Greater_Swiss_Mountain_dog", "n02107683-Bernese_mountain_dog", "n02107908-Appenzeller",
    "n02108000-EntleBucher", "n02108089-boxer", "n02108422-bull_mastiff", "n02108551-Tibetan_mastiff",
    "n02108915-French_bulldog", "n02109047-Great_Dane", "n02109525-Saint_Bernard", "n02109961-Eskimo_dog",
    "n02110063-malamute", "n02110185-Siberian_husky", "n02110627-affenpinscher", "n02110806-basenji",
    "n02110958-pug", "n02111129-Leonberg", "n02111277-Newfoundland", "n02111500-Great_Pyrenees",
    "n02111889-Samoyed", "n02112018-Pomeranian", "n02112137-chow", "n02112350-keeshond",
    "n02112706-Brabancon_griffon", "n02113023-Pembroke", "n02113186-Cardigan", "n02113624-toy_poodle",
    "n02113712-miniature_poodle", "n02113799-standard_poodle", "n02113978-Mexican_hairless", "n02115641-dingo",
    "n02115913-dhole", "n02116738-African_hunting_dog",
)
# ImageNet-1k's 1000 outputs are its synsets in sorted order. Its dogs form one block: the domestic
# breeds at outputs 151 (Chihuahua) to 268 (Mexican hairless), then the wild dogs to 275 (African
# hunting dog). Stanford Dogs takes all of them but the dalmatian and the wolves and coyote: these.
IMAGENET_FIRST_DOG = 151
NOT_IN_STANFORD_DOGS = {"n02110341": "dalmatian", "n02114367": "timber wolf", "n02114548": "white wolf",
                        "n02114712": "red wolf", "n02114855": "coyote"}
_DOG_BLOCK = sorted([folder.split("-", 1)[0] for folder in BREEDS] + list(NOT_IN_STANFORD_DOGS))
IMAGENET_OUTPUT = {wnid: IMAGENET_FIRST_DOG + i for i, wnid in enumerate(_DOG_BLOCK)}
# "Is it a dog?": ImageNet's dogs, domestic and wild, less the wolves and the coyote.
DOG_OUTPUTS = sorted(IMAGENET_OUTPUT[wnid] for wnid in IMAGENET_OUTPUT
                     if NOT_IN_STANFORD_DOGS.get(wnid, "dalmatian") == "dalmatian")


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
