"""A seventh task, added without touching shared code: a task module and its recipe in a folder of
their own, named in APP_EXTRA_TASKS; the demo builder builds its model, the app serves its tab and
predict.py writes its CSV, each asking the task module what it needs (tasks/__init__.py)."""

import csv
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, page_text, running_app
from gradio_client import Client, handle_file
from PIL import Image

TASK = '''
"""Brightness: is a picture dark or light? A toy task: the mean of its pixels, as a network."""

from core import schema, scores

NAME = "brightness"
TITLE = "Dark or light"
API_NAME = "brightness"
DESCRIPTION = "Upload a picture: dark or light?"
TRAIN_COMMAND = "python -m brightness_recipe"
KIND = "classifier"
PREDICT_OPTIONS = ()
DEMO_RECIPE, DEMO_SECONDS = "brightness_recipe", 5
METADATA = schema.ClassifierMetadata
headline = scores.classifier_headline


def predict(bundle, image):
    return from_scores(bundle, bundle.scores(image))


def from_scores(bundle, probabilities):
    ranked = sorted(zip(bundle.labels, probabilities), key=lambda pair: -pair[1])
    return {label: float(p) for label, p in ranked}


def tab(bundle, ui, flagging=None):
    ui.label_tab(bundle, predict, API_NAME, "A picture", "Brightness", "Decide", 2, flagging)
'''

RECIPE = '''
"""The brightness task's "recipe": a network whose two scores are how dark and how light a picture is."""

import keras
import numpy as np

from core.bundle import save_bundle
from core.preprocess import PREPROCESSING


def build_demo(out, workdir):
    inputs = keras.Input((8, 8, 3))
    mean = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(2, activation="softmax", name="class")
    model = keras.Model(inputs, dense(mean))
    dense.set_weights([np.array([[-4.0, 4.0]] * 3, np.float32), np.array([6.0, -6.0], np.float32)])
    metadata = {"task": "brightness", "labels": ["dark", "light"], "input": {"size": [8, 8], "channels": 3},
                "preprocessing": PREPROCESSING, "metrics": {}, "provenance": {"command": "toy"}, "demo": True}
    save_bundle(out, {"classifier": model}, metadata, "# Brightness\\n")
'''


@pytest.mark.slow
def test_a_seventh_task_is_built_served_and_predicted_without_touching_shared_code(tmp_path):
    (tmp_path / "brightness.py").write_text(textwrap.dedent(TASK))
    (tmp_path / "brightness_recipe.py").write_text(textwrap.dedent(RECIPE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "APP_EXTRA_TASKS": "brightness"}
    models = tmp_path / "models"
    built = subprocess.run([sys.executable, "-m", "training.demo", "--only", "brightness", "--models-dir",
                            str(models)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert "Building the Dark or light model" in built.stdout and (models / "demo" / "brightness" / "task.json").is_file()

    dark, light = tmp_path / "dark.png", tmp_path / "light.png"
    Image.new("RGB", (40, 30), (20, 20, 30)).save(dark)
    Image.new("RGB", (40, 30), (240, 230, 235)).save(light)
    with running_app(models, env=env) as url:
        assert "Upload a picture: dark or light?" in page_text(url)
        client = Client(url, verbose=False)
        assert client.predict(handle_file(str(dark)), api_name="/brightness")["label"] == "dark"
        assert client.predict(handle_file(str(light)), api_name="/brightness")["label"] == "light"

    table = tmp_path / "brightness.csv"
    predicted = subprocess.run([sys.executable, "-m", "predict", "brightness", str(dark), str(light), "--out", str(table),
                                "--models-dir", str(models), "--quiet"], cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert [row["label"] for row in csv.DictReader(table.open())] == ["dark", "light"]
