"""Hamburger or sandwich: the classifier on Open Images crops, and its live endpoint."""

import io
import json
import shutil

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from conftest import running_app
from open_images_server import FakeFlickr, box_row, image_row, md5_base64, write_meta
from training import open_images, sandwich
from training.datasets import image_folders
from training.synthetic.food import draw_food


def food_photo(kind, rng, size=(160, 120)):
    """A photo with one hamburger or sandwich somewhere in it; returns (JPEG bytes, box in pixels)."""
    photo = Image.fromarray(rng.integers(60, 200, size=(size[1], size[0], 3), dtype=np.uint8))
    x, y = int(rng.integers(0, size[0] - 64)), int(rng.integers(0, size[1] - 64))
    photo.paste(draw_food(kind, rng, 64), (x, y))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), (x, y, x + 64, y + 64)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """From the raw layout: Open Images metadata CSVs, photos served on loopback,
    training.open_images building images_cropped/ — and one crop corrupted afterwards."""
    root = tmp_path_factory.mktemp("open_images")
    rng = np.random.default_rng(0)
    labels = {"hamburger": "/m/0cdn1", "sandwich": "/m/0l515"}
    with FakeFlickr() as flickr:
        boxes, images = [], []
        for n in range(140):
            kind = ("hamburger", "sandwich")[n % 2]
            data, box = food_photo(kind, rng)
            image_id = f"{n:016x}"
            url = flickr.serve(f"/photos/{image_id}.jpg", data)
            boxes.append(box_row(image_id, labels[kind], box, size=(160, 120)))
            images.append(image_row(image_id, url, md5=md5_base64(data)))
        meta = write_meta(root / "meta", {"/m/0cdn1": "Hamburger", "/m/0l515": "Sandwich", "/m/09728": "Bread"},
                          {"train-annotations-bbox.csv": boxes}, {"train-images-boxable-with-rotation.csv": images})
        summary = open_images.main(["--classes", "hamburger", "SANDWICH", "--meta", str(meta), "--out", str(root / "build"),
                                    "--quiet", "--rate", "0", "--workers", "4"])
    assert summary["counts"] == {"hamburger": 70, "sandwich": 70}
    crops = root / "build" / "images_cropped"
    (crops / "sandwich" / "broken.jpg").write_bytes(b"\x89PNG truncated")
    return crops


@pytest.fixture(scope="module")
def sandwich_bundle(crops, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "sandwich"
    sandwich.main(["--data", str(crops), "--out", str(out), "--image-size", "64", "--epochs", "30", "--patience", "6"])
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


def test_unusable_data_folder_says_what_is_expected(tmp_path):
    (tmp_path / "hamburger").mkdir()
    with pytest.raises(SystemExit, match="at least two are needed"):
        image_folders.read_crops(tmp_path)


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
