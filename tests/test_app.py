"""The live app: a real server process, talked to through gradio_client."""

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ROOT, page_text, running_app
from gradio_client import Client, handle_file
from PIL import Image
from test_images import bomb_png


@pytest.fixture(scope="module")
def app_root(dog_bundle, tmp_path_factory):
    """A models/ folder holding the trained bundle as the local dog-breed model."""
    import shutil

    root = tmp_path_factory.mktemp("app") / "models"
    shutil.copytree(dog_bundle, root / "dog_breed")
    return root


@pytest.fixture(scope="module")
def app(app_root):
    with running_app(app_root) as url:
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
    assert "Model: local bundle `models/dog_breed`" in text and "Demo model" not in text
    assert "| accuracy | " in text and "(most frequent class) |" in text and str(ROOT) not in text


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


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(app, app_root, bad_files, dogs_data):
    _, client = app
    for path, message in bad_files.items():
        with pytest.raises(Exception) as error:
            client.predict(handle_file(str(path)), api_name="/dog_breed")
        assert message in str(error.value), (path.name, str(error.value))
        assert "Traceback" not in str(error.value)
        # ...and a good request right after still succeeds.
        assert client.predict(handle_file(str(dog_photo(dogs_data))), api_name="/dog_breed")["label"]
    # The server's log says it in one line each: no traceback for a user's bad file.
    log = next(app_root.parent.glob("app-*.log")).read_text()
    assert log.count("rejected upload:") == len(bad_files) and "Traceback" not in log, log[-3000:]


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
    (broken / "model.weights.h5").write_bytes(b"not a weights file")
    root = models_with(dog_breed=broken, demo__dog_breed=dog_bundle)
    with running_app(root) as url:
        text = page_text(url)
        assert "The local model is broken" in text and "the network 'classifier' (the bundle root) could not be loaded" in text
        assert "python -m training.dog_breed" in text
        assert "Model: demo bundle `models/demo/dog_breed`" in text


def test_the_api_names_its_inputs(app):
    """The "Use via API" page and gradio_client's keywords: the handler's own names, not param_1."""
    _, client = app
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in api["/dog_breed"]["parameters"]] == ["image"]


def test_only_the_files_the_page_shows_can_be_fetched(app, app_root):
    url, _ = app
    root = app_root / "dog_breed"
    config = json.load(urllib.request.urlopen(url + "config", timeout=10))
    shown = [value["path"] for component in config["components"] if component.get("type") == "dataset"
             for sample in component["props"]["samples"] for value in sample if isinstance(value, dict)]
    assert shown and urllib.request.urlopen(f"{url}gradio_api/file={shown[0]}", timeout=10).status == 200
    # The bundle's own files, its examples too: the page shows copies the app wrote itself.
    for hidden in (root / "task.json", root / "model.weights.h5", root / "config.json", *(root / "examples").iterdir()):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={hidden}", timeout=10)
        assert refused.value.code in (403, 404)


@pytest.mark.slow
def test_a_taken_port_moves_the_app_to_the_next_free_one_unless_one_was_asked(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port)}
        searching = subprocess.Popen([sys.executable, "app.py", "--models-dir", str(empty)], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline, output = time.monotonic() + 120, ""
            while "Running on local URL" not in output and time.monotonic() < deadline:
                output += searching.stdout.readline()
            assert f"http://127.0.0.1:{port}" not in output and "Running on local URL:  http://127.0.0.1:" in output
        finally:
            searching.terminate()
            searching.wait(20)
        explicit = subprocess.run([sys.executable, "app.py", "--models-dir", str(empty), "--port", str(port)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert explicit.returncode != 0 and str(port) in explicit.stdout + explicit.stderr


@pytest.mark.slow
def test_a_bundle_in_the_first_format_is_still_served(models_with, dogs_data):
    """A bundle as the app's first format wrote it (each network a `.keras` archive, compiled with
    its optimizer state): made by this project at commit a62f15c, kept in tests/fixtures."""
    fixture = ROOT / "tests" / "fixtures" / "dog_breed_format_1"
    assert json.loads((fixture / "task.json").read_text())["networks"] == {"classifier": "classifier.keras"}
    with running_app(models_with(dog_breed=fixture)) as url:
        assert "Model: local bundle `models/dog_breed`" in page_text(url)
        photo = sorted((dogs_data / "Images" / "n02110185-Siberian_husky").glob("*.jpg"))[0]
        answer = Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/dog_breed")
        assert answer["label"] in json.loads((fixture / "task.json").read_text())["labels"]
