"""Hamburger or sandwich: the classifier on Open Images crops, and its live endpoint.

End to end on loopback servers: Open Images' CSVs and class hierarchy -> training.open_images
(images from a stand-in for the CVDF mirror, Submarine sandwich folded into sandwich) -> a dataset
repo on a loopback Hub -> training.sandwich on hf://datasets/REPO@COMMIT -> a bundle whose
task.json names that repo and commit.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import ROOT, running_app
from gradio_client import Client, handle_file
from PIL import Image
from support.hub_server import FakeHub, hub_env
from support.open_images_server import FakeFlickr, box_row, image_row, md5_base64, write_hierarchy, write_meta

from training import sandwich
from training.datasets import image_folders
from training.synthetic.food import draw_food

DATASET = "team/hamburger-or-sandwich"
HAMBURGER, SANDWICH, SUBMARINE, FOOD = "/m/0cdn1", "/m/0l515", "/m/06pcq", "/m/02wbm"


def food_photo(kind, rng, size=(160, 120)):
    """A photo with one hamburger or sandwich somewhere in it; returns (JPEG bytes, box in pixels)."""
    photo = Image.fromarray(rng.integers(60, 200, size=(size[1], size[0], 3), dtype=np.uint8))
    x, y = int(rng.integers(0, size[0] - 64)), int(rng.integers(0, size[1] - 64))
    photo.paste(draw_food(kind, rng, 64), (x, y))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), (x, y, x + 64, y + 64)


def run(module, *args, env):
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        yield hub


@pytest.fixture(scope="module")
def published(tmp_path_factory, hub):
    """From the raw layout: Open Images metadata CSVs and bbox_labels_600_hierarchy.json, photos
    on a loopback mirror, training.open_images building images_cropped/ and pushing it to the Hub
    — where a later commit adds a corrupt file. Half the sandwiches are annotated as Submarine
    sandwich, which --include-subclasses folds into sandwich."""
    root = tmp_path_factory.mktemp("open_images")
    rng = np.random.default_rng(0)
    with FakeFlickr() as flickr, FakeFlickr() as mirror:
        boxes, images = [], []
        for n in range(140):
            kind = ("hamburger", "sandwich")[n % 2]
            label = {0: HAMBURGER, 1: SANDWICH, 2: HAMBURGER, 3: SUBMARINE}[n % 4]
            data, box = food_photo(kind, rng)
            image_id = f"{n:016x}"
            mirror.serve(f"/train/{image_id}.jpg", data)
            boxes.append(box_row(image_id, label, box, size=(160, 120)))
            images.append(image_row(image_id, f"{flickr.url}/photos/{image_id}.jpg", md5=md5_base64(data)))
        meta = write_meta(root / "meta", {HAMBURGER: "Hamburger", SANDWICH: "Sandwich", SUBMARINE: "Submarine sandwich",
                                          FOOD: "Food", "/m/09728": "Bread"},
                          {"train-annotations-bbox.csv": boxes}, {"train-images-boxable-with-rotation.csv": images})
        write_hierarchy(meta, {"LabelName": "/m/0bl9f", "Subcategory": [{"LabelName": FOOD, "Subcategory": [
            {"LabelName": "/m/09728"},
            {"LabelName": SANDWICH, "Subcategory": [{"LabelName": HAMBURGER}, {"LabelName": SUBMARINE}]}]}]})
        out = run("training.open_images", "--classes", "hamburger", "SANDWICH", "--include-subclasses", "--meta", str(meta),
                  "--out", str(root / "build"), "--mirror-url", mirror.url, "--quiet", "--rate", "0", "--workers", "4",
                  "--push-to-hub", DATASET, env=hub_env(hub.url, root / "hf"))
        assert not flickr.requests  # the mirror served every image
    commit = re.search(r"at commit ([0-9a-f]{40})", out).group(1)
    manifest = json.loads((root / "build" / "manifest.json").read_text())
    assert manifest["counts"] == {"hamburger": 70, "sandwich": 70}
    broken = hub.commit(DATASET, {"sandwich/broken.jpg": b"\x89PNG truncated"}, repo_type="dataset")
    return SimpleNamespace(crops=root / "build" / "images_cropped", pushed=commit, commit=broken)


@pytest.fixture(scope="module")
def crops(published):
    return published.crops


@pytest.fixture(scope="module")
def sandwich_bundle(published, hub, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "sandwich"
    run("training.sandwich", "--data", f"hf://datasets/{DATASET}@{published.commit}", "--out", str(out),
        "--image-size", "64", "--epochs", "30", "--patience", "6", "--with-examples", env=hub_env(hub.url, tmp_path_factory.mktemp("hf")))
    return out


def test_learns_the_two_classes_far_above_chance(sandwich_bundle):
    metadata = json.loads((sandwich_bundle / "task.json").read_text())
    assert metadata["labels"] == ["Hamburger", "Sandwich"]
    metrics = metadata["metrics"]
    assert metrics["top1_accuracy"] > 0.85  # chance: 0.5
    assert all(m["precision"] > 0.7 and m["recall"] > 0.7 for m in metrics["per_class"].values())
    dataset = metadata["dataset"]
    assert dataset["report"]["unreadable_images_count"] == 1 and "broken.jpg" in dataset["report"]["unreadable_images"][0]
    assert len(dataset["manifest_sha256"]) == 64  # the builder's manifest travels with the model
    assert {c["name"] for c in dataset["classes"]} == {"Hamburger", "Sandwich"}
    card = (sandwich_bundle / "README.md").read_text()
    assert "| Hamburger |" in card and "| Sandwich |" in card and "top-5" not in card


def test_the_model_names_its_dataset_by_hub_repo_and_commit(sandwich_bundle, published, hub):
    metadata = json.loads((sandwich_bundle / "task.json").read_text())
    dataset = metadata["dataset"]
    assert dataset["repo"] == DATASET and dataset["commit"] == published.commit
    assert f"--data hf://datasets/{DATASET}@{published.commit}" in metadata["provenance"]["command"]
    # The builder's manifest came with the data: it says what was folded into sandwich.
    assert dataset["classes"][1]["subclasses"] == [{"name": "Submarine sandwich", "label": SUBMARINE}]
    card = (sandwich_bundle / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["datasets"] == [DATASET]  # Hub ids only: the dataset it came from
    assert f"at commit `{published.commit}`" in card
    downloaded = {path.split(f"/resolve/{published.commit}/")[1] for path in hub.downloads() if path.startswith(f"/datasets/{DATASET}/")}
    assert "sandwich/broken.jpg" in downloaded and "hamburger/0000000000000000_0.jpg" in downloaded
    assert hub.unknown == []


def test_a_hub_dataset_must_be_pinned_by_commit(tmp_path, published, hub):
    for data, message in ((f"hf://datasets/{DATASET}", r"names no commit: .* Pin it: hf://datasets/OWNER/NAME@COMMIT"),
                          (f"hf://datasets/{DATASET}@main", r"'main' is not a commit id \(a branch or tag moves\)"),
                          (f"hf://{DATASET}@{published.commit}", r"is not a Hub dataset reference")):
        with pytest.raises(SystemExit, match=message):
            sandwich.main(["--data", data, "--out", str(tmp_path / "never")])
    # A commit the repo does not have, asked of the loopback Hub by a child process (HF_ENDPOINT is read at import).
    done = subprocess.run([sys.executable, "-c", "import sys; from training.datasets.hub import resolve_data; resolve_data(sys.argv[1])",
                           f"hf://datasets/{DATASET}@{'0' * 40}"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **hub_env(hub.url, tmp_path / "hf")})
    assert done.returncode == 1 and f"The dataset repo {DATASET} has no commit {'0' * 40}" in done.stderr


def test_unusable_data_folder_says_what_is_expected(tmp_path):
    (tmp_path / "hamburger").mkdir()
    with pytest.raises(SystemExit, match="at least two are needed"):
        image_folders.read_crops(tmp_path)


@pytest.mark.slow
def test_live_endpoint(sandwich_bundle, crops, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(sandwich_bundle, root / "sandwich")
    with running_app(root) as url:
        client = Client(url, verbose=False)
        burger = sorted((crops / "hamburger").glob("*.jpg"))[0]
        result = client.predict(handle_file(str(burger)), api_name="/sandwich")
        assert result["label"] == "Hamburger" and len(result["confidences"]) == 2
        bad = tmp_path / "menu.pdf"
        bad.write_bytes(b"%PDF-1.7")
        with pytest.raises(Exception, match="not an image"):
            client.predict(handle_file(str(bad)), api_name="/sandwich")
