"""The path a Space owner takes: `python app.py` builds what is missing when asked, speaks to the
owner when a tab has no model, and `python space.py` writes the Space's configuration from the pins."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, page_text, running_app
from gradio_client import Client, handle_file
from support.hub_server import FakeHub, hub_env


def test_a_space_start_builds_the_missing_demo_model_and_serves_it(dog_bundle, hashtag_bundle, genre_bundle,
                                                                   age_gender_trained, caries_bundle, models_with):
    root = models_with(dog_breed=dog_bundle, hashtags=hashtag_bundle, movie_genres=genre_bundle,
                       age_gender=age_gender_trained[0], caries=caries_bundle)
    env = {"BUILD_DEMOS": "1", "SPACE_ID": "team/vision-demos"}
    with running_app(root, env=env) as url:
        log = next(root.parent.glob("app-*.log")).read_text()
        assert "1 tab(s) have no model" in log and "Building the Hamburger or sandwich model" in log
        assert "Epoch 1/" not in log  # Keras' epoch lines go to the build's own log
        assert "Epoch 1/" in (root / "demo" / "sandwich.log").read_text()
        assert "Model: demo bundle `models/demo/sandwich`" in page_text(url)
        example = sorted((root / "demo" / "sandwich" / "examples").iterdir())[0]
        verdict = Client(url, verbose=False).predict(handle_file(str(example)), api_name="/sandwich")
        assert verdict["label"] in ("Hamburger", "Sandwich")


@pytest.mark.slow
def test_on_a_space_a_tab_without_a_model_speaks_to_the_owner(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    with running_app(empty, env={"SPACE_ID": "team/vision-demos"}) as url:
        text = page_text(url)
        assert "To the owner of this Space" in text and "BUILD_DEMOS=1" in text
        assert "python -m training.dog_breed" not in text  # a visitor cannot run commands


@pytest.mark.slow
def test_space_config_is_written_from_the_pins(dog_bundle, tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    with FakeHub() as hub:
        files = {str(p.relative_to(dog_bundle)): p.read_bytes() for p in dog_bundle.rglob("*") if p.is_file()}
        assert any(name.startswith("logs/") for name in files)
        commit = hub.commit("team/dog-breed", files)
        private = hub.commit("team/private-genres", files)
        hub.repos["team/private-genres"]["private"] = True
        pins = tmp_path / "hub.json"
        pins.write_text(json.dumps({"dog_breed": {"repo_id": "team/dog-breed", "revision": commit},
                                    "movie_genres": {"repo_id": "team/private-genres", "revision": private}}))
        result = subprocess.run([sys.executable, "space.py", "--hub-config", str(pins), "--readme", str(readme)],
                                cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**__import__("os").environ, **hub_env(hub.url, tmp_path / "hf")})
    assert result.returncode == 0, result.stderr[-2000:]
    front = yaml.safe_load(readme.read_text().split("---")[1])
    assert front["models"] == ["team/dog-breed", "team/private-genres"] and front["sdk"] == "gradio"
    assert front["app_file"] == "app.py" and 0 < len(front["short_description"]) <= 60
    # The public repo is preloaded without its training logs; the private one cannot be (no token at build).
    assert len(front["preload_from_hub"]) == 1 and "team/private-genres is private: not preloaded" in result.stdout
    repo, listed, revision = front["preload_from_hub"][0].split(" ")
    assert repo == "team/dog-breed" and revision == commit
    assert set(listed.split(",")) == {name for name in files if not name.startswith("logs/")}
    assert front["sdk_version"] and str(front["python_version"]).startswith("3.")
    assert readme.read_text().split("---", 2)[2] == (ROOT / "README.md").read_text().split("---", 2)[2]
