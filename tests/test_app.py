"""The live app: a real server process, talked to through gradio_client."""

import io
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from conftest import page_text, running_app
from test_images import bomb_png


@pytest.fixture(scope="module")
def app(dog_bundle, tmp_path_factory):
    """The app serving the trained bundle as the local dog-breed model."""
    import shutil

    root = tmp_path_factory.mktemp("app") / "models"
    shutil.copytree(dog_bundle, root / "dog_breed")
    with running_app(root) as url:
        yield url, Client(url, verbose=False)


def dog_photo(dogs_data, breed="n02110185-Siberian_husky"):
    return sorted((dogs_data / "Images" / breed).glob("*.jpg"))[0]


def test_top5_breeds_with_readable_names(app, dogs_data):
    url, client = app
    result = client.predict(handle_file(str(dog_photo(dogs_data))), api_name="/dog_breed")
    confidences = result["confidences"]
    assert len(confidences) == 5
    assert result["label"] == "Siberian husky"
    assert all(" " in c["label"] or c["label"].isalpha() for c in confidences)  # no wnids, no underscores
    assert sum(c["confidence"] for c in confidences) <= 1.0 + 1e-6
    text = page_text(url)
    assert "Model: `" in text and "top1 accuracy" in text and "Demo model" not in text


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    jpeg = io.BytesIO()
    Image.new("RGB", (300, 300), (200, 30, 30)).save(jpeg, format="JPEG")
    files = {
        "not_an_image.jpg": (b"<html>this is a web page</html>", "not an image"),
        "truncated.jpg": (jpeg.getvalue()[:400], "truncated"),
        "empty.png": (b"", "empty"),
        "bomb.png": (bomb_png(60000, 60000), "megapixels"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {folder / name: message for name, (_, message) in files.items()}


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(app, bad_files, dogs_data):
    _, client = app
    for path, message in bad_files.items():
        with pytest.raises(Exception) as error:
            client.predict(handle_file(str(path)), api_name="/dog_breed")
        assert message in str(error.value), (path.name, str(error.value))
        assert "Traceback" not in str(error.value)
        # ...and a good request right after still succeeds.
        assert client.predict(handle_file(str(dog_photo(dogs_data))), api_name="/dog_breed")["label"]


def test_uploads_over_the_size_cap_are_refused(app, tmp_path, dogs_data):
    _, client = app
    big = tmp_path / "huge.png"
    big.write_bytes(os.urandom(26 * 1024 * 1024))
    with pytest.raises(Exception) as error:
        client.predict(handle_file(str(big)), api_name="/dog_breed")
    assert "size" in str(error.value).lower() or "413" in str(error.value)
    assert client.predict(handle_file(str(dog_photo(dogs_data))), api_name="/dog_breed")["label"]


def test_concurrent_requests_all_answer(app, dogs_data):
    url, _ = app
    photos = sorted((dogs_data / "Images").rglob("*.jpg"))[:8]

    def ask(photo):
        return Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/dog_breed")["label"]

    with ThreadPoolExecutor(4) as pool:
        labels = list(pool.map(ask, photos))
    assert len(labels) == 8 and all(labels)


def test_demo_bundle_is_used_with_a_banner_and_no_model_gives_the_fix(demo_bundle, models_with, tmp_path):
    # The demo place only: the tab works and carries the banner.
    demo = demo_bundle
    root = models_with(demo__dog_breed=demo)
    with running_app(root) as url:
        assert "demo model trained on synthetic data — its predictions mean nothing" in page_text(url).lower()
        assert Client(url, verbose=False).predict(handle_file(str(next((demo / "examples").iterdir()))),
                                                  api_name="/dog_breed")["label"]
    # Nothing at all: the app still starts and the tab says how to get a model.
    empty = tmp_path / "empty_models"
    empty.mkdir()
    with running_app(empty) as url:
        text = page_text(url)
        assert "python -m training.dog_breed --data DIR --out models/dog_breed" in text
        assert "python -m training.demo" in text and "models/hub.json" in text


def test_a_broken_local_bundle_falls_back_and_says_so(dog_bundle, models_with, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dog_bundle, broken)
    (broken / "classifier.keras").write_bytes(b"not a keras file")
    root = models_with(dog_breed=broken, demo__dog_breed=dog_bundle)
    with running_app(root) as url:
        text = page_text(url)
        assert "The local model is broken" in text and "classifier.keras could not be loaded" in text
        assert "python -m training.dog_breed" in text
        assert f"Model: `{root / 'demo' / 'dog_breed'}`" in text
