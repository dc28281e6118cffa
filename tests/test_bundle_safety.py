"""A bundle cannot run code: networks load with Keras' safe_mode, which refuses a Lambda layer and
any object it does not know; the tab says so and the rest of the app serves."""

import json
import shutil

import keras
import pytest
from conftest import page_text, running_app
from gradio_client import Client, handle_file

from core.bundle import BundleError, load_bundle


@keras.saving.register_keras_serializable(package="not_in_the_app")
class Doubling(keras.layers.Layer):
    """A custom layer: known to this test process only, never to the app."""

    def call(self, x):
        return x * 2


def bundle_with(network, like, folder):
    """A copy of the bundle `like` whose classifier is `network`, saved as Keras saves a folder."""
    shutil.copytree(like, folder, ignore=shutil.ignore_patterns("config.json", "metadata.json",
                                                                       "model.weights.h5", "assets"))
    keras.saving.save_model(network, folder, zipped=False)
    metadata = json.loads((folder / "task.json").read_text())
    assert metadata["networks"] == {"classifier": "."}
    return folder


def classifier(like, middle):
    """A network of the bundle's input and labels with `middle` in it."""
    metadata = json.loads((like / "task.json").read_text())
    inputs = keras.Input((*metadata["input"]["size"], 3))
    x = keras.layers.GlobalAveragePooling2D()(middle(inputs))
    return keras.Model(inputs, keras.layers.Dense(len(metadata["labels"]), activation="softmax")(x))


def test_a_lambda_layer_is_refused_where_the_network_loads(dog_bundle, tmp_path):
    folder = bundle_with(classifier(dog_bundle, keras.layers.Lambda(lambda x: x * 2)), dog_bundle, tmp_path / "b")
    with pytest.raises(BundleError, match="could not be loaded.*(Lambda|unsafe|safe_mode)"):
        load_bundle(folder, "dog_breed")


def test_the_app_refuses_code_in_a_bundle_and_serves_the_other_tabs(dog_bundle, hashtag_bundle, genre_bundle,
                                                                   models_with, tmp_path):
    with_lambda = bundle_with(classifier(dog_bundle, keras.layers.Lambda(lambda x: x * 2)), dog_bundle,
                              tmp_path / "lambda")
    with_custom = bundle_with(classifier(hashtag_bundle, Doubling()), hashtag_bundle, tmp_path / "custom")
    root = models_with(dog_breed=with_lambda, hashtags=with_custom, movie_genres=genre_bundle)
    with running_app(root) as url:
        text = page_text(url)
        assert text.count("The local model is broken: the network 'classifier' (the bundle root) could not be loaded") == 2
        assert "deserialization of a `Lambda` layer" in text and "could not be deserialized" in text
        poster = next((genre_bundle / "examples").iterdir())
        labels, _ = Client(url, verbose=False).predict(handle_file(str(poster)), 0.5, api_name="/movie_genres")
        assert labels["confidences"]
