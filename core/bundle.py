"""The model bundle: one folder per task, also the layout of its Hub repo.

    <bundle>/
      config.json        the main network, as Keras saves a model to a folder
      metadata.json      (keras.saving.save_model(model, folder, zipped=False)): the folder loads
      model.weights.h5   with keras.saving.load_model(folder), or "hf://owner/repo" from the Hub
      <network>/         any other network of the task, in the same format (age & gender: rotation/)
      task.json          our metadata (Keras owns config.json, so ours has its own name)
      README.md          the model card, with Hub front matter
      ...                anything else the card shows (confusion matrix, examples/, logs/)

`task.json` holds everything needed to use and to rebuild the model: the task name, format
version, where each network is, labels in output order, input size, the preprocessing contract,
decision thresholds, held-out metrics, and provenance (dataset name and content hash, code
revision, package versions, the training command). Its schema is core/schema.py.

Networks are saved plain: float32, uncompiled, no optimizer state, nothing custom, so that a
Keras install alone loads them (training keeps its resumable checkpoints elsewhere). They load
with safe_mode=True. Format 1 (each network a `<name>.keras` archive) is still read.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from core import schema
from core.batching import CompiledNetwork

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
METADATA_FILE = "task.json"
CARD_FILE = "README.md"
ROOT_NETWORK = "."  # task.json's name for the network saved at the bundle's root
KERAS_CONFIG = "config.json"


class BundleError(RuntimeError):
    """A bundle folder that is missing, incomplete, unreadable or not to be trusted; the message
    says which, naming files relative to the bundle (never a path on the server)."""


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

    @property
    def kind(self) -> str:
        """"demo" (trained on synthetic pictures: its answers mean nothing), "pretrained" (published
        weights as they are, not trained here) or "trained" (by a recipe, on its dataset)."""
        if self.is_demo:
            return "demo"
        return "pretrained" if self.metadata.get("pretrained", {}).get("as_published") else "trained"

    def network(self, name: str) -> CompiledNetwork:
        return self.networks[name]

    def scores(self, image, network: str = "classifier"):
        """Decode and resize one image as in training, run a network: its output for that image
        (one score per label; a dict of such arrays for a network with several outputs)."""
        from core.preprocess import model_input

        return first(self.network(network)(model_input(image, self.input_size)[None]))


def first(outputs, index: int = 0):
    """One image's part of a network's batched output, whatever its structure (array or dict)."""
    if isinstance(outputs, dict):
        return {name: value[index] for name, value in outputs.items()}
    return outputs[index]


def save_bundle(out_dir, networks: dict, metadata: dict, card: str, extra_files: dict | None = None) -> Path:
    """Write networks, metadata and card into `out_dir`, replacing an older bundle there. The first
    network goes at the root (the one `keras.saving.load_model(folder)` and the Hub's snippet
    load); each other in a folder of its name.

    Everything is written into a sibling temporary folder first and moved into place at the end,
    so an interrupted save never leaves a half bundle behind."""
    import keras

    out_dir = Path(out_dir)
    places = {name: ROOT_NETWORK if i == 0 else name for i, name in enumerate(networks)}
    metadata = {**metadata, "format_version": FORMAT_VERSION, "networks": places}
    schema.validate(metadata)  # what the app would refuse is never written
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, model in networks.items():
        folder = staging / places[name]
        folder.mkdir(exist_ok=True)
        keras.saving.save_model(plain(model), folder, zipped=False)
        if (folder / "assets").is_dir() and not any((folder / "assets").iterdir()):
            (folder / "assets").rmdir()  # Keras makes it for layers with assets; ours have none
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


def plain(model):
    """The network as a bundle holds it: the same layers and weights, rebuilt from its config in
    float32 and uncompiled, so neither an optimizer's state, nor our losses and metrics, nor the
    mixed_float16 policy of a GPU run go with it (float16 is slow on the CPUs that serve it)."""

    def float32(value):
        if isinstance(value, dict):
            if value.get("class_name") == "DTypePolicy" and value.get("config", {}).get("name") == "mixed_float16":
                return {**value, "config": {**value["config"], "name": "float32"}}
            return {key: float32(item) for key, item in value.items()}
        if isinstance(value, list):
            return [float32(item) for item in value]
        return value

    copy = model.__class__.from_config(float32(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def read_metadata(path, metadata_schema: type[schema.TaskMetadata] = schema.TaskMetadata) -> dict:
    """The bundle's task.json, checked against `metadata_schema` (the task's); BundleError otherwise."""
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        raise BundleError(f"there is no {METADATA_FILE}: this folder is not a model bundle")
    try:
        metadata = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BundleError(f"{METADATA_FILE} is not valid JSON ({type(error).__name__})") from None
    version = metadata.get("format_version") if isinstance(metadata, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(f"{METADATA_FILE} has format version {version}; this app reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}: update the app")
    try:
        schema.validate(metadata, metadata_schema)
    except schema.BundleSchemaError as error:
        raise BundleError(f"{METADATA_FILE} is not valid: {error}") from None
    return metadata


def network_location(bundle: Path, name: str, place: str) -> Path:
    """Where task.json's `place` for network `name` is, refused unless it lies inside the bundle
    (a link pointing out of it counts as outside)."""
    root = bundle.resolve()
    location = (bundle / place).resolve()
    if location != root and root not in location.parents:
        raise BundleError(f"{METADATA_FILE} places the network '{name}' outside the bundle")
    return location


def load_network(bundle: Path, name: str, place: str):
    """One network of a bundle, loaded with safe_mode=True: a folder in Keras' format (format 2),
    or a `.keras` archive (format 1)."""
    import keras

    location = network_location(bundle, name, place)
    shown = "the bundle root" if place == ROOT_NETWORK else place
    if place.endswith(".keras"):
        if not location.is_file():
            raise BundleError(f"{place}, listed in {METADATA_FILE}, is missing")
    elif not (location / KERAS_CONFIG).is_file():
        raise BundleError(f"the network '{name}' is missing: {shown} has no {KERAS_CONFIG}")
    try:
        return keras.saving.load_model(location, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged file, or an unsafe one
        text = str(error).replace(str(location), shown).replace(str(bundle), "the bundle").splitlines()
        raise BundleError(f"the network '{name}' ({shown}) could not be loaded: {type(error).__name__}: "
                          f"{(text or [''])[0][:300]}") from None


def load_bundle(path, expected_task: str | None = None,
                metadata_schema: type[schema.TaskMetadata] = schema.TaskMetadata) -> Bundle:
    """Read task.json, check it against the task's schema (what its tab reads), load every network
    with safe_mode=True, check each takes the declared input size, and warm it."""
    path = Path(path)
    metadata = read_metadata(path, metadata_schema)
    if expected_task and metadata["task"] != expected_task:
        raise BundleError(f"it holds a model for '{metadata['task']}', not '{expected_task}'")
    networks = {}
    for name, place in metadata["networks"].items():
        model = load_network(path, name, place)
        declared = tuple(metadata["input"]["size"])
        shape = tuple(model.inputs[0].shape[1:3]) if model.inputs and len(model.inputs[0].shape) == 4 else ()
        if len(shape) == 2 and None not in shape and shape != declared:
            raise BundleError(f"{METADATA_FILE} gives an input size of {declared[0]} x {declared[1]}, but the network "
                              f"'{name}' takes {shape[0]} x {shape[1]}")
        networks[name] = CompiledNetwork(model)
    return Bundle(path=path, metadata=metadata, networks=networks)
