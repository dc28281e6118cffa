"""The Hub path for real over HTTP: a loopback Hub (tests/hub_server.py), HF_ENDPOINT pointing at it."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, free_port, page_text, running_app
from gradio_client import Client, handle_file
from support.hub_server import FakeHub, hub_env

from training.synthetic.dogs import make_stanford_dogs

REPO = "team/dog-breed"


def bundle_files(bundle):
    return {str(p.relative_to(bundle)): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_training_command_pushes_the_bundle_with_its_card(tmp_path):
    data = make_stanford_dogs(tmp_path / "dogs", breeds=3, per_breed=12, size=64)

    def train_and_push(*options):
        return subprocess.run(
            [sys.executable, "-m", "training.dog_breed", "--data", str(data), "--out", str(tmp_path / "bundle"),
             "--backbone", "small", "--weights", "none", "--image-size", "48", "--epochs", "2",
             "--fine-tune-epochs", "0", "--push-to-hub", REPO, *options],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, **hub_env(hub.url, tmp_path / "hf")},
        )

    with FakeHub() as hub:
        result = train_and_push("--private", "--with-examples")
        assert result.returncode == 0, result.stderr[-3000:]
        commit = hub.repos[REPO]["refs"]["main"]
        assert f"Pushed to {REPO} at commit {commit}" in result.stdout
        pushed = hub.repos[REPO]["commits"][commit]
        assert pushed == bundle_files(tmp_path / "bundle")
        assert {"task.json", "config.json", "metadata.json", "model.weights.h5", "README.md", "LICENSE.md",
                "confusion_matrix.png"} <= set(pushed)
        assert any(name.startswith("examples/") for name in pushed) and hub.repos[REPO]["private"]
        assert hub.validated_cards[-1]["library_name"] == "keras"
        front = yaml.safe_load(pushed["README.md"].decode().split("---")[1])
        assert "datasets" not in front  # Stanford Dogs is no Hub dataset: its name and page are in model-index
        # The data's terms decide the card's licence: ImageNet's images, research and education only.
        assert front["license"] == "other" and front["license_name"] == "imagenet-terms" and front["license_link"]
        result = front["model-index"][0]["results"][0]
        assert result["metrics"][0]["type"] == "accuracy" and result["dataset"]["name"] == "Stanford Dogs"
        assert result["source"]["url"].startswith("http://vision.stanford.edu/")
        assert hub.unknown == []

        # Pushed again without --with-examples: the dataset's images are gone from the repo too.
        result = train_and_push()
        assert result.returncode == 0, result.stderr[-3000:]
        second = hub.repos[REPO]["commits"][hub.repos[REPO]["refs"]["main"]]
        assert second == bundle_files(tmp_path / "bundle") and not any(name.startswith("examples/") for name in second)


@pytest.mark.slow
def test_a_pin_that_is_not_a_commit_is_refused_with_how_to_pin(tmp_path):
    config = tmp_path / "hub.json"
    config.write_text(json.dumps({"dog_breed": {"repo_id": REPO}, "hashtags": {"repo_id": REPO, "revision": "main"}}))
    empty = tmp_path / "models"
    empty.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"  # never asked: a moving pin is refused before any download
    with running_app(empty, config, env=hub_env(dead, tmp_path / "hf")) as url:
        text = page_text(url)
        assert f"models/hub.json names {REPO} for 'dog_breed' without a revision" in text
        assert f"names {REPO} for 'hashtags' at 'main', which is not a commit" in text
        assert '"revision": "<commit>"' in text and "Could not download" not in text


@pytest.fixture
def hub_with_two_commits(dog_bundle):
    """A Hub repo whose first commit is our bundle and whose newer commit changes its metrics."""
    with FakeHub() as hub:
        first = hub.commit(REPO, bundle_files(dog_bundle))
        metadata = json.loads((dog_bundle / "task.json").read_text())
        metadata["metrics"]["top1_accuracy"] = 0.0123
        hub.commit(REPO, {"task.json": json.dumps(metadata).encode()})
        yield hub, first


def pin(tmp_path, revision):
    config = tmp_path / "hub.json"
    config.write_text(json.dumps({"dog_breed": {"repo_id": REPO, "revision": revision}}))
    return config


@pytest.mark.slow
def test_app_downloads_the_pinned_commit_then_reuses_the_cache(hub_with_two_commits, tmp_path, dogs_data):
    hub, first = hub_with_two_commits
    hf_home = tmp_path / "hf"
    empty = tmp_path / "models"
    empty.mkdir()
    photo = sorted((dogs_data / "Images" / "n02085620-Chihuahua").glob("*.jpg"))[1]

    with running_app(empty, pin(tmp_path, first), env=hub_env(hub.url, hf_home)) as url:
        text = page_text(url)
        assert f"Model: `{REPO}@{first}`" in text and "0.012" not in text  # the pinned commit, not main
        assert Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/dog_breed")["label"]
    snapshots = hf_home / "hub" / "models--team--dog-breed" / "snapshots"
    assert [p.name for p in snapshots.iterdir()] == [first]
    downloads = len(hub.downloads())
    assert downloads >= 3

    # Second start: served from the cache, nothing downloaded again.
    with running_app(empty, pin(tmp_path, first), env=hub_env(hub.url, hf_home)) as url:
        assert f"Model: `{REPO}@{first}`" in page_text(url)
    assert len(hub.downloads()) == downloads

    # The Hub gone, with HF_HUB_OFFLINE=1 or without it: still served from the cache, and at once
    # (without the flag, huggingface_hub alone would retry the refused connection for 23 s first).
    dead = f"http://127.0.0.1:{free_port()}"
    with running_app(empty, pin(tmp_path, first), env=hub_env(dead, hf_home, HF_HUB_OFFLINE="1")) as url:
        text = page_text(url)
        assert f"Model: `{REPO}@{first}`" in text and "Could not download" not in text
    with running_app(empty, pin(tmp_path, first), env=hub_env(dead, hf_home)) as url:
        text = page_text(url)
        assert f"Model: `{REPO}@{first}`" in text and "Could not download" not in text


@pytest.mark.slow
def test_unreachable_hub_leaves_the_app_up_with_a_notice(dog_bundle, models_with, tmp_path, dogs_data):
    root = models_with(demo__dog_breed=dog_bundle)  # only a demo model locally
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with running_app(root, pin(tmp_path, "0" * 40), env=hub_env(dead, tmp_path / "hf")) as url:
        text = page_text(url)
        assert f"Could not download {REPO}@{'0' * 40} from the Hub" in text
        # Said from one refused connection (core.source.hub_unreachable), not after huggingface_hub's retries.
        assert "cannot connect to 127.0.0.1" in text, text
        assert "Model: demo bundle `models/demo/dog_breed`" in text
        photo = sorted((dogs_data / "Images").rglob("*.jpg"))[0]
        assert Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/dog_breed")["label"]


# --- what a Hub user pastes -----------------------------------------------------------------------

# The Hub's metric ids our cards use (huggingface.co/metrics), and the licences it knows by id.
HUB_METRIC_IDS = {"accuracy", "f1", "precision", "recall", "mean_iou", "mae", "mse"}
HUB_LICENCES = {"apache-2.0", "mit", "cc0-1.0", "cc-by-4.0", "cc-by-2.0", "other"}
SNIPPET_END = "--- the snippet ends here ---"  # printed between the snippet's output and the probe's


def real_photo(name: str, folder) -> str:
    """A real photo that ships with scikit-image, saved under the name a card's snippet opens:
    a cat for the classifiers, the cameraman (greyscale, as radiographs are) for the segmenter,
    the astronaut's face, eyes level, for age & gender."""
    from PIL import Image
    from skimage import data

    picture = {"photo.jpg": lambda: Image.fromarray(data.chelsea()),
               "radiograph.png": lambda: Image.fromarray(data.camera()).convert("RGB"),
               "face.jpg": lambda: Image.fromarray(data.astronaut()).crop((150, 40, 300, 190))}[name]()
    picture.save(folder / name)
    return name


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["dog_bundle", "hashtag_bundle", "caries_bundle", "age_gender_trained"])
def test_the_cards_snippet_runs_verbatim_where_only_keras_and_the_hub_are(fixture, request, tmp_path):
    """Every kind of bundle, published: the model page's own snippet (its card's "How to use") and
    Keras' hf:// loader, in a Python that cannot import this project (-I, run from elsewhere)."""
    from huggingface_hub import ModelCard

    from training import publishing

    bundle = request.getfixturevalue(fixture)
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    task = json.loads((bundle / "task.json").read_text())
    repo = f"team/{task['task'].replace('_', '-')}"
    with FakeHub() as hub:
        env = {**os.environ, **hub_env(hub.url, tmp_path / "hf")}
        pushing = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from training import "
                                  "publishing; publishing.push_to_hub(Path(sys.argv[1]), sys.argv[2], sys.argv[3])",
                                  str(bundle), repo, task["task"]], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=300)
        assert pushing.returncode == 0, pushing.stderr[-3000:]
        commit = hub.repos[repo]["refs"]["main"]
        card_text = hub.repos[repo]["commits"][commit]["README.md"].decode()
        snippet = card_text.split("```python\n", 1)[1].split("```", 1)[0]
        assert f'keras.saving.load_model("hf://{repo}")' in snippet and publishing.PLACEHOLDER_REPO not in snippet
        (tmp_path / "snippet.py").write_text(snippet)
        photo = next(name for name in publishing.EXAMPLE_PHOTO.values() if f'"{name}"' in snippet)
        real_photo(photo, tmp_path)
        # Keras' own hf:// loader after it, in the same Python (TensorFlow starts once, not twice): one output
        # per label (per class, or per class and pixel).
        probe = (f"import keras, numpy as np, json\n"
                 f"model = keras.saving.load_model('hf://{repo}')\n"
                 f"h, w = {task['input']['size']}\n"
                 f"out = model.predict(np.zeros((1, h, w, 3), 'float32'), verbose=0)\n"
                 f"out = out if isinstance(out, dict) else {{'output': out}}\n"
                 f"print(json.dumps({{k: list(v.shape) for k, v in out.items()}}))\n")
        (tmp_path / "probe.py").write_text(probe)
        run = subprocess.run([sys.executable, "-I", "-c", "import runpy; runpy.run_path('snippet.py', run_name='__main__');"
                              f"print({SNIPPET_END!r}, flush=True); runpy.run_path('probe.py', run_name='__main__')"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        printed, loaded = run.stdout.split(SNIPPET_END + "\n")
        assert printed.strip(), "the snippet printed nothing"
        shapes = json.loads(loaded.strip().splitlines()[-1])
        labels = len(task["labels"])
        if task["task"] == "age_gender":
            assert shapes == {"gender": [1, labels], "age": [1, 1]}, shapes
        elif task["task"] == "caries":
            channels = labels + (task["activation"] == "softmax")
            assert shapes == {"output": [1, *task["input"]["size"], channels]}, shapes
        else:
            assert shapes == {"output": [1, labels]}, shapes
        assert hub.unknown == []

    # The card works on the Hub as it is: a usable licence, the Hub's metric ids.
    front = ModelCard(card_text).data.to_dict()
    assert front["library_name"] == "keras" and front["license"] in HUB_LICENCES
    if front["license"] == "other":
        assert front["license_name"] and front["license_link"]
    metrics = [m for result in front["model-index"][0]["results"] for m in result["metrics"]]
    assert metrics and {m["type"] for m in metrics} <= HUB_METRIC_IDS, metrics
