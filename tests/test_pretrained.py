"""The pretrained path every real run takes, proven offline.

ImageNet weights cannot be downloaded here, so a MobileNetV2 is pretrained on a large synthetic
set (task A: six dog breeds, as ImageNet holds dog breeds), saved as a weights file, and the
dog-breed recipe is run on a small new sample (task B) with `--weights PATH`, exactly as a user
passes a downloaded no-top .h5."""

import csv
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT

from core.preprocess import model_input
from training import backbones, caries, dog_breed, fitting
from training.datasets import stanford_dogs
from training.synthetic.dogs import make_stanford_dogs

SIZE = 32
RUN = ["--backbone", "mobilenetv2", "--image-size", str(SIZE), "--batch-size", "16", "--patience", "50",
       "--learning-rate", "0.001"]


def conv_input(model, images, application_name):
    """What the first convolution of the keras.applications network inside `model` receives, for
    `images` in 0..255 given to `model`; and the same for the network's own `preprocess_input`."""
    application = next((layer for layer in model.layers if getattr(layer, "layers", None)
                        and any(isinstance(sub, keras.layers.Conv2D) for sub in layer.layers)), model)
    scaled = images
    if application is not model:
        for layer in model.layers[1:model.layers.index(application)]:
            if isinstance(layer, keras.layers.Rescaling):
                scaled = layer(scaled)
    first_conv = next(layer for layer in application.layers if isinstance(layer, keras.layers.Conv2D))
    to_conv = keras.Model(application.input, first_conv.input)
    module = {"efficientnetb0": "efficientnet", "efficientnetb3": "efficientnet", "mobilenetv2": "mobilenet_v2",
              "xception": "xception"}[application_name]
    reference = getattr(keras.applications, module).preprocess_input(np.array(images))
    return np.asarray(to_conv(scaled)), np.asarray(to_conv(reference))


@pytest.mark.parametrize("name", sorted(backbones.APPLICATIONS))
def test_each_imagenet_backbone_preprocesses_pixels_exactly_once(name):
    """0..255 pixels reach the network's first convolution exactly as its ImageNet weights expect
    them (its own preprocess_input), not left raw nor rescaled twice."""
    side = 71 if name == "xception" else 32
    images = np.random.default_rng(0).uniform(0, 255, (2, side, side, 3)).astype("float32")
    ours, expected = conv_input(backbones.build_backbone(name, "none", (side, side, 3)), images, name)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert np.abs(ours).max() < 10  # normalised: raw pixels would reach 255


@pytest.mark.parametrize("name", sorted(backbones.ENCODER_FEATURES))
def test_each_unet_encoder_preprocesses_pixels_exactly_once(name):
    model, encoder = caries.build_unet(64, 1, "sigmoid", depth=4, width=8, backbone=name, weights="none")
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    scaled = images
    if "to_unit_range" in [layer.name for layer in model.layers]:
        scaled = model.get_layer("to_unit_range")(images)
    first_conv = next(layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D))
    to_conv = keras.Model(encoder.input, first_conv.input)
    module = {"efficientnetb0": "efficientnet", "mobilenetv2": "mobilenet_v2"}[name]
    expected = to_conv(getattr(keras.applications, module).preprocess_input(images.copy()))
    np.testing.assert_allclose(np.asarray(to_conv(scaled)), np.asarray(expected), atol=1e-4)


def test_fine_tuning_unfreezes_the_top_fraction_counted_inside_nested_networks():
    base = backbones.build_backbone("mobilenetv2", "none", (SIZE, SIZE, 3))
    leaves = backbones.leaf_layers(base)
    trainable = fitting.unfreeze_top(base, 0.3)
    cut = int(len(leaves) * 0.7)
    assert len(leaves) > 100  # the application's own layers, not the wrapper's three
    assert not any(layer.trainable for layer in leaves[:cut])
    top = [layer for layer in leaves[cut:] if not isinstance(layer, keras.layers.BatchNormalization)]
    assert trainable == len(top) > 0 and all(layer.trainable for layer in top)
    assert not any(layer.trainable for layer in leaves if isinstance(layer, keras.layers.BatchNormalization))


# --- a recipe on pretrained weights ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tasks_a_and_b(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    task_a = make_stanford_dogs(root / "a", breeds=6, per_breed=120, size=64, lists=None, seed=5)
    # Ten pictures a breed: few enough that a network learnt from scratch stays near chance.
    task_b = make_stanford_dogs(root / "b", breeds=6, per_breed=10, size=64, lists=None, seed=6)
    return root, task_a, task_b


@pytest.fixture(scope="module")
def task_b_held_out(tasks_a_and_b):
    """180 more pictures of task B's breeds, which neither run sees: the recipe's own test split
    holds 12, too few to compare two runs (one picture is 8 points)."""
    root, _, _ = tasks_a_and_b
    data = make_stanford_dogs(root / "b_held_out", breeds=6, per_breed=30, size=64, lists=None, seed=7)
    _, splits, _, _ = stanford_dogs.read_stanford_dogs(data, crop_boxes=False, seed=0)
    samples = [sample for split in splits for sample in split]
    return np.stack([model_input(s.path, (SIZE, SIZE)) for s in samples]), np.array([s.label for s in samples])


@pytest.fixture(scope="module")
def pretrained_file(tasks_a_and_b):
    """MobileNetV2 trained on task A (three breeds), its no-top weights saved as a file."""
    root, task_a, _ = tasks_a_and_b
    keras.utils.set_random_seed(0)
    folders, (train, val, test), _, _ = stanford_dogs.read_stanford_dogs(task_a, crop_boxes=False, seed=0)
    samples = train + val + test
    x = np.stack([model_input(s.path, (SIZE, SIZE)) for s in samples])
    y = np.array([s.label for s in samples])
    application = backbones.application("mobilenetv2", "none", (SIZE, SIZE, 3), pooling="avg")
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(len(folders), activation="softmax")(application(backbones.to_input_range("mobilenetv2")(inputs)))
    model = keras.Model(inputs, outputs)
    fitting.match_batchnorm(model, steps_per_epoch=len(x) // 16)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    fitting.build_before_fit(model, (x, y))
    model.fit(x, y, batch_size=16, epochs=8, verbose=0)  # traced once
    assert np.mean(model.predict(x, verbose=0).argmax(axis=1) == y) > 0.7  # it did learn task A
    path = root / "mobilenetv2_task_a_no_top.weights.h5"
    application.save_weights(path)
    return path


def application_in(model):
    """The keras.applications network nested in a model (the one holding the first convolution)."""
    for layer in model.layers:
        if getattr(layer, "layers", None):
            if any(isinstance(sub, keras.layers.Conv2D) for sub in layer.layers):
                return layer
            inner = application_in(layer)
            if inner is not None:
                return inner
    return None


def layer_weights(application) -> dict:
    """{layer name: (is BatchNorm, [arrays])} for the layers of a network that have weights."""
    return {layer.name: (isinstance(layer, keras.layers.BatchNormalization), [w.numpy() for w in layer.weights])
            for layer in application.layers if layer.weights}


def classifier(bundle):
    return keras.saving.load_model(bundle, safe_mode=True, compile=False)


def held_out_accuracy(bundle, held_out) -> float:
    """Top-1 of the bundle's network over pictures read as the app reads them."""
    pictures, labels = held_out
    return float(np.mean(classifier(bundle).predict(pictures, verbose=0).argmax(axis=1) == labels))


def bundle_backbone(bundle):
    return layer_weights(application_in(classifier(bundle)))


def changed_layers(found, expected) -> list[str]:
    """Names of the layers whose weights differ between two `layer_weights` readings."""
    return [name for name, (_, weights) in found.items()
            if not all(np.array_equal(g, w) for g, w in zip(weights, expected[name][1]))]


def pretrained_backbone(path):
    application = backbones.application("mobilenetv2", str(path), (SIZE, SIZE, 3), pooling="avg")
    return layer_weights(application), [layer.name for layer in application.layers]


def test_frozen_phase_keeps_the_pretrained_weights_bit_for_bit(pretrained_file, tasks_a_and_b, tmp_path):
    _, _, task_b = tasks_a_and_b
    out = tmp_path / "frozen"
    dog_breed.main(["--data", str(task_b), "--out", str(out), "--weights", str(pretrained_file), *RUN,
                    "--epochs", "1", "--fine-tune-epochs", "0"])
    expected, _ = pretrained_backbone(pretrained_file)
    found = bundle_backbone(out)
    assert len(found) > 50 and set(found) == set(expected)
    for name, (_, weights) in found.items():
        for got, want in zip(weights, expected[name][1]):
            assert np.array_equal(got, want), name  # kernels and BatchNorm statistics alike


def test_unfreezing_the_top_trains_only_the_top(pretrained_file):
    """Phase 2's unfreezing on the recipe's pretrained backbone: an epoch changes layers in the top
    30 % only, BatchNorm statistics excepted, whichever phase the recipe then keeps (next test)."""
    keras.utils.set_random_seed(0)
    base = backbones.build_backbone("mobilenetv2", str(pretrained_file), (SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(6, activation="softmax")(base(inputs)))
    fitting.unfreeze_top(base, 0.3)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 255, (32, SIZE, SIZE, 3)).astype("float32"), rng.integers(0, 6, 32),
              batch_size=16, epochs=1, verbose=0)
    expected, order = pretrained_backbone(pretrained_file)
    found = layer_weights(application_in(model))
    changed = changed_layers(found, expected)
    assert changed and not [name for name in changed if found[name][0]]  # BatchNorm stays frozen, statistics too
    # Only layers in the top 30 % changed (counted over the wrapper's input and rescaling, then these).
    cut = int(0.7 * (len(order) + 2)) - 2
    assert min(order.index(name) for name in changed) >= cut, (cut, changed[:5])


def deterministic_runs(*commands):
    """The dog-breed recipe as a user runs it, with --deterministic (the same command gives the same
    network on the same machine), each command in a process of its own: op determinism holds for a
    whole process, and the other tests of this worker must not inherit it. The runs are independent,
    so they run side by side."""
    runs = [subprocess.Popen([sys.executable, "-m", "training.dog_breed", *options, "--deterministic"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for options in commands]
    for run in runs:
        _, errors = run.communicate(timeout=900)
        assert run.returncode == 0, errors[-3000:]


def test_the_pretrained_run_beats_from_scratch_and_leaves_with_its_better_phase(pretrained_file, tasks_a_and_b,
                                                                                  task_b_held_out, tmp_path):
    _, _, task_b = tasks_a_and_b
    schedule = ["--epochs", "10", "--fine-tune-epochs", "2", "--fine-tune-fraction", "0.3"]
    # From scratch, the same number of epochs (one phase: there is nothing pretrained to fine-tune).
    deterministic_runs(["--data", str(task_b), "--out", str(tmp_path / "pretrained"), "--weights", str(pretrained_file),
                        *RUN, *schedule],
                       ["--data", str(task_b), "--out", str(tmp_path / "scratch"), "--weights", "none",
                        *RUN, "--epochs", "12", "--fine-tune-epochs", "0"])
    expected, order = pretrained_backbone(pretrained_file)
    found = bundle_backbone(tmp_path / "pretrained")
    changed = changed_layers(found, expected)
    # The network leaves with the phase whose best validation loss was lower (the bundle's logs
    # hold both): phase 1 trained the head alone, so its backbone is the pretrained one exactly.
    first, second = (min(float(row["val_loss"]) for row in csv.DictReader(log.read_text().splitlines()))
                     for log in (tmp_path / "pretrained" / "logs" / f"classifier-{phase}.csv" for phase in (1, 2)))
    if second >= first:
        assert changed == [], (first, second, changed[:5])
    else:  # which layers: the test above
        assert changed and not [name for name in changed if found[name][0]]
        assert min(order.index(name) for name in changed) >= int(0.7 * (len(order) + 2)) - 2, changed[:5]

    # Both runs are deterministic, so a checkout gives the same two figures every time: here (2 cores,
    # 2026-12-07) pretrained 0.661 and from scratch 0.283 (six breeds: chance 1/6). The margin comes
    # from the spread over the recipe's seed, which stands in for another machine's kernels: seeds
    # 1337 (the default), 1, 2 and 3 gave gaps of 0.32-0.44 (pretrained 0.62-0.66, scratch
    # 0.19-0.31); before each phase traced its step once (training/fitting.py), seeds 1337 and 1-4
    # gave 0.32-0.42. Run as before (twenty pictures a breed, without --deterministic) the gap spread
    # over 0.10-0.28 and this test failed two runs in three.
    pretrained_accuracy = held_out_accuracy(tmp_path / "pretrained", task_b_held_out)
    scratch_accuracy = held_out_accuracy(tmp_path / "scratch", task_b_held_out)
    print(f"held-out accuracy on task B: pretrained {pretrained_accuracy:.3f}, from scratch {scratch_accuracy:.3f}")
    assert pretrained_accuracy > scratch_accuracy + 0.2, (pretrained_accuracy, scratch_accuracy)
    assert pretrained_accuracy >= 0.45
    card = json.loads((tmp_path / "pretrained" / "task.json").read_text())
    assert f"--weights {pretrained_file.name}" in card["provenance"]["command"]  # not the trainer's folders
    assert str(pretrained_file.parent) not in json.dumps(card)
