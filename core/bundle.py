"""The model bundle: one folder per task, also the layout of its Hub repo.

    <bundle>/
      task.json          our metadata (Keras owns config.json, so ours has its own name)
      <network>.keras    each network, loadable with keras.saving.load_model(safe_mode=True)
      README.md          the model card, with Hub front matter
      ...                anything else the card shows (confusion matrix, examples/)

`task.json` holds everything needed to use and to rebuild the model: the task
name, format version, labels in output order, input size, the preprocessing
contract, decision thresholds, held-out metrics, and provenance (dataset name
and content hash, code revision, package versions, the training command).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
METADATA_FILE = "task.json"
CARD_FILE = "README.md"
REQUIRED_KEYS = ("task", "format_version", "networks", "labels", "input", "preprocessing", "metrics", "provenance")


class BundleError(RuntimeError):
    """A bundle folder that is missing, incomplete or unreadable; the message says which."""


class CompiledNetwork:
    """A Keras model behind one traced tf.function, warmed once, whose concurrent calls run
    side by side up to a number of passes, and beyond that share forward passes.

    `model.predict` rebuilds its data pipeline on every call, which costs more than
    the forward pass of a small network on a CPU; a traced call with a fixed input
    signature costs only the forward pass. The batch dimension stays free, so a
    batch of any size reuses the same graph.

    Requests arrive one picture at a time. Up to `passes` forward passes run at once; a call
    that finds all of them busy waits, and the next pass to start takes every waiting call as
    one batch (up to `max_batch` pictures). A lone request never waits for company (no timer,
    unlike Gradio's `batch=True`), and each request keeps its own handler and its own error.
    Which pays depends on the device: on a CPU a batch of 8 costs 8 passes of one, but two or
    four passes at once keep the cores busier than one (a single pass leaves them idle between
    ops); on a GPU one batched pass is what fills the device. Measured in the README's "Serving
    under load".
    """

    def __init__(self, model, max_batch: int | None = None, passes: int | None = None):
        import tensorflow as tf

        self.model = model
        # MAX_BATCH=1 turns the sharing off, PASSES=1 the side-by-side passes (to compare; see
        # bench/serve.py --clients).
        self.max_batch = max_batch or int(os.environ.get("MAX_BATCH", 16))
        self.passes = passes or int(os.environ.get("PASSES", 0)) or default_passes()
        self.input_shape = tuple(model.inputs[0].shape[1:])
        spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
        # A partial, not a lambda: TensorFlow counts traces per code object, and one lambda's code
        # shared by every network made their one trace each look like "excessive retracing".
        self._call = tf.function(functools.partial(model, training=False), input_signature=[spec])
        self._waiting: list[_Call] = []
        self._running = 0
        self._turn = threading.Condition()
        self(np.zeros((1, *self.input_shape), np.float32))  # trace and warm now, not on the first request

    def __call__(self, batch: np.ndarray):
        call = _Call(np.asarray(batch, np.float32))
        with self._turn:
            self._waiting.append(call)
            while True:
                # Wait while another thread's pass holds this call, or every pass is taken.
                while not call.done and (call.taken or self._running >= self.passes):
                    self._turn.wait()
                if call.done:
                    return call.result()
                # This thread runs the next pass, for the oldest waiting calls (maybe not its own,
                # when more than max_batch pictures wait: then it goes round again).
                self._running += 1
                taken = self._take()
                self._turn.release()
                try:
                    self._forward(taken)
                finally:
                    self._turn.acquire()
                    self._running -= 1
                    self._turn.notify_all()

    def _take(self) -> list[_Call]:
        """The waiting calls, oldest first, up to max_batch pictures (at least one call)."""
        taken, pictures = [], 0
        while self._waiting and (not taken or pictures + len(self._waiting[0].inputs) <= self.max_batch):
            call = self._waiting.pop(0)
            call.taken = True
            taken.append(call)
            pictures += len(call.inputs)
        return taken

    def _forward(self, calls: list[_Call]) -> None:
        import tensorflow as tf

        try:
            inputs = calls[0].inputs if len(calls) == 1 else np.concatenate([c.inputs for c in calls])
            outputs = tf.nest.map_structure(lambda t: t.numpy(), self._call(inputs))
        except Exception as error:
            if len(calls) > 1:  # one caller's bad input must not fail the others: each alone
                for call in calls:
                    self._forward([call])
                return
            calls[0].error, calls[0].done = error, True
            return
        start = 0
        for call in calls:
            end = start + len(call.inputs)
            call.output = tf.nest.map_structure(lambda a, s=start, e=end: a[s:e], outputs)
            call.done = True
            start = end


def default_passes() -> int:
    """Forward passes at once when PASSES is not set: one on a GPU (a batched pass fills it), two
    on a CPU (bench/serve.py --clients; the README's "Serving under load")."""
    import tensorflow as tf

    return 1 if tf.config.list_physical_devices("GPU") else 2


class _Call:
    """One caller's inputs, and what its forward pass gave."""

    def __init__(self, inputs: np.ndarray):
        self.inputs, self.output, self.error = inputs, None, None
        self.taken = self.done = False  # in a pass; that pass has finished

    def result(self):
        if self.error is not None:
            raise self.error
        return self.output


@dataclass
class Bundle:
    path: Path
    metadata: dict
    networks: dict[str, CompiledNetwork] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return self.metadata["labels"]

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.metadata["input"]["size"])

    @property
    def is_demo(self) -> bool:
        return bool(self.metadata.get("demo"))

    def network(self, name: str) -> CompiledNetwork:
        return self.networks[name]

    def scores(self, image, network: str = "classifier") -> np.ndarray:
        """Decode and resize one image as in training, run a network: one score per output."""
        from core.preprocess import model_input

        return self.network(network)(model_input(image, self.input_size)[None])[0]


def save_bundle(out_dir, networks: dict, metadata: dict, card: str, extra_files: dict | None = None) -> Path:
    """Write networks, metadata and card into `out_dir`, replacing an older bundle there.

    Everything is written into a sibling temporary folder first and moved into
    place at the end, so an interrupted save never leaves a half bundle behind.
    """
    out_dir = Path(out_dir)
    metadata = {"format_version": FORMAT_VERSION, **metadata}
    metadata["networks"] = {name: f"{name}.keras" for name in networks}
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise BundleError(f"metadata lacks {', '.join(missing)}")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, model in networks.items():
        model.save(staging / f"{name}.keras")
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    (staging / CARD_FILE).write_text(card)
    for relative, content in (extra_files or {}).items():
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def read_metadata(path) -> dict:
    path = Path(path)
    file = path / METADATA_FILE
    if not file.is_file():
        raise BundleError(f"{path} has no {METADATA_FILE}: it is not a model bundle")
    try:
        metadata = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise BundleError(f"{file} is not valid JSON: {error}") from None
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise BundleError(f"{file} lacks {', '.join(missing)}")
    if metadata["format_version"] > FORMAT_VERSION:
        raise BundleError(
            f"{file} has format version {metadata['format_version']}; this code reads up to {FORMAT_VERSION}: update the app"
        )
    return metadata


def missing_keys(metadata: dict, required) -> list[str]:
    """The dotted keys ("thresholds.per_label", "networks.classifier") absent from `metadata`."""
    missing = []
    for key in required:
        value = metadata
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                missing.append(key)
                break
            value = value[part]
    return missing


def load_bundle(path, expected_task: str | None = None, required=()) -> Bundle:
    """Read metadata, check it holds the `required` keys (a task's schema: what its tab reads),
    load every network with safe_mode=True, and warm it."""
    import keras

    path = Path(path)
    metadata = read_metadata(path)
    if expected_task and metadata["task"] != expected_task:
        raise BundleError(f"{path} holds a model for '{metadata['task']}', not '{expected_task}'")
    missing = missing_keys(metadata, required)
    if missing:
        raise BundleError(f"{path / METADATA_FILE} lacks {', '.join(missing)}, which this tab needs; "
                          f"it was made by an older or a different recipe")
    networks = {}
    for name, filename in metadata["networks"].items():
        file = path / filename
        if not file.is_file():
            raise BundleError(f"{path} lacks {filename}, listed in {METADATA_FILE}")
        try:
            model = keras.saving.load_model(file, compile=False, safe_mode=True)
        except Exception as error:  # Keras raises many types for a damaged file
            raise BundleError(f"{file} could not be loaded: {type(error).__name__}: {error}") from None
        networks[name] = CompiledNetwork(model)
    return Bundle(path=path, metadata=metadata, networks=networks)
