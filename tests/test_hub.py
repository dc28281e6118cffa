"""The Hub path for real over HTTP: a loopback Hub (tests/hub_server.py), HF_ENDPOINT pointing at it."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from gradio_client import Client, handle_file

from conftest import ROOT, free_port, page_text, running_app
from hub_server import FakeHub, hub_env
from training.synthetic.dogs import make_stanford_dogs

REPO = "team/dog-breed"


def bundle_files(bundle):
    return {str(p.relative_to(bundle)): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}


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
        assert {"task.json", "classifier.keras", "README.md", "confusion_matrix.png"} <= set(pushed)
        assert any(name.startswith("examples/") for name in pushed) and hub.repos[REPO]["private"]
        assert hub.validated_cards[-1]["library_name"] == "keras"
        front = yaml.safe_load(pushed["README.md"].decode().split("---")[1])
        assert front["datasets"] == ["stanford-dogs"]
        # The data's terms decide the card's licence: ImageNet's images, research and education only.
        assert front["license"] == "other" and front["license_name"] == "imagenet-terms"
        assert front["model-index"][0]["results"][0]["metrics"][0]["type"] == "top_1_accuracy"
        assert hub.unknown == []

        # Pushed again without --with-examples: the dataset's images are gone from the repo too.
        result = train_and_push()
        assert result.returncode == 0, result.stderr[-3000:]
        second = hub.repos[REPO]["commits"][hub.repos[REPO]["refs"]["main"]]
        assert second == bundle_files(tmp_path / "bundle") and not any(name.startswith("examples/") for name in second)


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

    # HF_HUB_OFFLINE=1 with the Hub gone: still served from the cache.
    dead = f"http://127.0.0.1:{free_port()}"
    with running_app(empty, pin(tmp_path, first), env=hub_env(dead, hf_home, HF_HUB_OFFLINE="1")) as url:
        text = page_text(url)
        assert f"Model: `{REPO}@{first}`" in text and "Could not download" not in text


def test_unreachable_hub_leaves_the_app_up_with_a_notice(dog_bundle, models_with, tmp_path, dogs_data):
    root = models_with(demo__dog_breed=dog_bundle)  # only a demo model locally
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with running_app(root, pin(tmp_path, "0" * 40), env=hub_env(dead, tmp_path / "hf")) as url:
        text = page_text(url)
        assert f"Could not download {REPO}@{'0' * 40} from the Hub" in text
        assert "Model: demo bundle `models/demo/dog_breed`" in text
        photo = sorted((dogs_data / "Images").rglob("*.jpg"))[0]
        assert Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/dog_breed")["label"]
