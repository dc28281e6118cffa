"""Training as a person runs it on a rented GPU: interrupted and resumed, on several devices, in
mixed precision, from a cache, and the command its bundle records."""

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import QUICK_TRAINING, ROOT

from core.bundle import load_bundle
from training import inputs
from training.synthetic.dogs import make_stanford_dogs

# Ten epochs at 48 pixels, no fine-tuning: enough to learn six synthetic breeds well above chance.
SHORT_RUN = ["--backbone", "small", "--weights", "none", "--image-size", "48", "--epochs", "10", "--patience", "50",
             "--fine-tune-epochs", "0", "--batch-size", "16"]


def recipe(*argv):
    return [sys.executable, "-m", "training.dog_breed", *map(str, argv)]


def epochs_logged(bundle, stage="classifier-1"):
    with open(bundle / "logs" / f"{stage}.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_finishes_it(dogs_data, tmp_path):
    out = tmp_path / "dog_breed"
    # Run from a folder holding the data and the bundle, as a user runs it from their project: the
    # bundle then records the paths relative to it (never the trainer's absolute folders).
    here = Path(os.path.commonpath([dogs_data, tmp_path]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = recipe("--data", dogs_data, "--out", out, "--backbone", "small", "--weights", "none",
                     "--image-size", "48", "--epochs", "10", "--patience", "50", "--fine-tune-epochs", "2",
                     "--batch-size", "16")
    progress = out.with_name("dog_breed.work") / "classifier-1" / "backup" / "training_metadata.json"
    first = subprocess.Popen(command, cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        if progress.is_file() and json.loads(progress.read_text() or "{}").get("epoch", 0) >= 3:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the run ended before it could be interrupted"
    first.send_signal(signal.SIGKILL)  # as a preempted machine: no cleanup, no warning
    first.wait()
    done_before = json.loads(progress.read_text())["epoch"]
    assert not out.exists() and 3 <= done_before < 10

    second = subprocess.run(command, cwd=here, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming after epoch {done_before} of 10" in second.stdout
    # One complete history: every epoch once, none lost and none run twice.
    assert epochs_logged(out) == list(range(10)) and epochs_logged(out, "classifier-2") == [0, 1]
    assert any(path.name.startswith("events.out.tfevents") for path in (out / "logs").rglob("*"))
    assert not out.with_name("dog_breed.work").exists()
    metadata = json.loads((out / "task.json").read_text())
    assert metadata["metrics"]["top1_accuracy"] > 0.5  # six breeds: chance 1/6

    # The command the bundle records is the one that ran, its paths relative to the folder it ran
    # from: run there as written, it is the command above (a recipe re-run over its finished bundle:
    # test_hub.py's second push).
    recorded = metadata["provenance"]["command"]
    relative = [Path(a).relative_to(here).as_posix() if Path(a).is_absolute() else a for a in command[3:]]
    assert recorded == shlex.join(["python", "-m", "training.dog_breed", *relative])
    assert str(here) not in json.dumps(metadata) and str(here) not in (out / "README.md").read_text()
    assert load_bundle(out, "dog_breed").labels == metadata["labels"]


@pytest.mark.slow
def test_a_work_folder_of_other_settings_is_not_resumed(dogs_data, tmp_path):
    out = tmp_path / "bundle"
    work = out.with_name("bundle.work")
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"epochs": 99}))
    result = subprocess.run(recipe("--data", dogs_data, "--out", out, *QUICK_TRAINING), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "interrupted run with other settings" in result.stderr and "--restart" in result.stderr


MIRRORED = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from training import dog_breed
    dog_breed.main(sys.argv[1:])
""")


@pytest.mark.slow
def test_mirrored_over_two_devices_learns(dogs_data, tmp_path):
    """The CPU split into two logical devices stands in for two GPUs: MirroredStrategy takes both,
    each step sees twice the per-device batch (half the steps of one device), and the model learns.
    The run reads its images through --cache, which it fills: every image of every split, once."""
    out, cache = tmp_path / "mirrored", tmp_path / "cache"
    result = subprocess.run([sys.executable, "-c", MIRRORED, "--data", str(dogs_data), "--out", str(out),
                             *SHORT_RUN, "--cache", str(cache)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training on 2 replicas (MirroredStrategy)" in result.stdout
    with open(out / "logs" / "classifier-1.csv", newline="") as handle:
        validation = [float(row["val_accuracy"]) for row in csv.DictReader(handle)]
    assert max(validation) > validation[0] + 0.2, validation  # it moves
    # Six breeds, 54 test images: chance 1/6. Not compared with the one-device fixture: on 12
    # validation images, runs of this size end anywhere from 0.55 to 0.95 (measured).
    assert json.loads((out / "task.json").read_text())["metrics"]["top1_accuracy"] > 0.4
    assert len(list(cache.rglob("*.npz"))) == 6 * 30


@pytest.mark.slow
def test_mixed_precision_trains_and_the_bundle_is_float32(dogs_data, tmp_path):
    from training import dog_breed

    out = tmp_path / "mixed"
    metrics = dog_breed.main(["--data", str(dogs_data), "--out", str(out), "--backbone", "small", "--weights", "none",
                              "--image-size", "48", "--epochs", "8", "--fine-tune-epochs", "0", "--batch-size", "16",
                              "--mixed-precision"])
    keras.mixed_precision.set_global_policy("float32")
    assert metrics["top1_accuracy"] > 0.4  # six breeds: chance 1/6; float16 on a CPU, a short run
    model = keras.saving.load_model(out, safe_mode=True, compile=False)
    policies = {layer.dtype_policy.name for layer in _leaves(model)}
    assert policies == {"float32"}, policies
    assert model(np.zeros((1, 48, 48, 3), np.float32)).dtype == "float32"


def _leaves(model):
    for layer in model.layers:
        yield layer
        if getattr(layer, "layers", None):
            yield from _leaves(layer)


def test_the_cache_is_read_instead_of_decoding_and_follows_the_files(tmp_path):
    data = make_stanford_dogs(tmp_path / "dogs", breeds=2, per_breed=3, size=64, lists=None)
    samples = [inputs.Sample(path, 0) for path in sorted((data / "Images").rglob("*.jpg"))]
    decoded = []

    def decode(sample):
        decoded.append(sample.path)
        return np.full((4, 4, 3), len(decoded), np.uint8)

    cache = tmp_path / "cache"
    first = inputs.DecodedRecords(samples, decode, "test decoding", cache)
    values, entries = [], []  # each sample's decoded pixels and its cache entry
    for i in range(len(samples)):
        before = set(cache.rglob("*.npz"))
        values.append(first.decoded(i)[0])
        entries += list(set(cache.rglob("*.npz")) - before)
    assert len(decoded) == 6 and len(set(entries)) == 6
    again = inputs.DecodedRecords(samples, decode, "test decoding", cache)  # a later run
    assert all(np.array_equal(again.decoded(i)[0], values[i]) for i in range(6)) and len(decoded) == 6
    os.utime(samples[0].path, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file changed
    entries[1].write_bytes(b"damaged")  # another file's entry
    for i in range(6):
        again.decoded(i)
    assert len(decoded) == 8  # the changed file and the damaged entry, decoded again
    other = inputs.DecodedRecords(samples, decode, "another decoding", cache)
    other.decoded(0)
    assert len(decoded) == 9  # another decoding never reads this one's cache


@pytest.mark.parametrize("broken", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_unreadable_files_are_found_before_training(tmp_path, broken):
    good = make_stanford_dogs(tmp_path / "dogs", breeds=1, per_breed=2, size=32, lists=None)
    bad = good / "Images" / "n02085620-Chihuahua" / "broken.jpg"
    bad.write_bytes(broken)
    scan = inputs.scan(list((good / "Images").rglob("*.jpg")), good)
    assert list(scan.unreadable) == [str(bad)] and "broken.jpg" in scan.unreadable[str(bad)]


@pytest.mark.parametrize("second_phase", ["diverges", "improves"])
def test_the_network_leaves_with_the_better_phase(tmp_path, second_phase):
    """Each phase ends on its own best epoch; when fine-tuning never gets back to where the head
    alone was, the network ends with phase 1's weights, and otherwise with phase 2's."""
    import tensorflow as tf

    from training import fitting

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("float32")[:, None]
    train = tf.data.Dataset.from_tensor_slices((x[:300], y[:300])).batch(32)
    val = tf.data.Dataset.from_tensor_slices((x[300:], y[300:])).batch(100)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])

    def compile_model(network, rate):
        # Phase 2 is given a tenth of the rate; "diverges" turns that into a rate no network survives.
        if second_phase == "diverges" and rate < 0.01:
            rate = 1e4
        network.compile(keras.optimizers.SGD(rate), "binary_crossentropy")

    run = fitting.Run(tmp_path / "bundle", {}, resumable=False)
    schedule = fitting.Schedule(epochs=6, fine_tune_epochs=3, learning_rate=0.05, patience=10)
    fitting.fit_two_phases(run, "net", model, model, train, val, compile_model, schedule, pretrained=False,
                           steps_per_epoch=10)
    first, second = run.best("net-1"), run.best("net-2")
    ending = model.evaluate(val, verbose=0)
    if second_phase == "diverges":
        assert second > 2 * first, (first, second)
        assert ending == pytest.approx(first, rel=1e-4)
    else:
        assert second < first < 0.69, (first, second)  # 0.69: ln 2, a coin's loss
        assert ending == pytest.approx(second, rel=1e-4)


def test_each_phase_traces_its_training_step_once(tmp_path):
    """Keras 3 makes the optimizer's variables and the compiled metrics' state inside the first trace
    of the training step when no tf.distribute strategy is set, and TensorFlow then traces the step
    again: a MobileNetV2 phase's first epoch takes 18.5 s on a CPU core, 9.5 s traced once. Run.fit
    makes them first, so each phase's `fit` traces it once."""
    import tensorflow as tf

    from training import fitting

    data = tf.data.Dataset.from_tensor_slices((np.zeros((16, 4), "float32"), np.zeros((16, 1), "float32"))).batch(8)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    traces = []
    step = model.train_step
    model.train_step = lambda batch: (traces.append(batch), step(batch))[1]  # Python runs it only when tracing
    run = fitting.Run(tmp_path / "bundle", {}, resumable=False)
    for phase in (1, 2):
        # Each phase compiles afresh, as fit_two_phases does; the recipes' networks all have metrics.
        model.compile(keras.optimizers.Adam(1e-3), "mse", metrics=["mae"])
        run.fit(model, data, data, f"net-{phase}", epochs=2, patience=5)
    assert len(traces) == 2, f"{len(traces)} traces of the training step for 2 phases"
