"""Streaming input: records in, batches out, decoded in parallel while the network trains.

Readers (training/datasets/) produce records: a path and its labels, a box, a mask. No recipe
decodes its dataset up front; a pipeline here is tf.data:

    record indices -> shuffled (training) -> decoded in tf.data's parallel map -> example -> batches -> prefetch

`decode(record)` is plain Python around core.images.load_image and the preprocessing the app
uses as well (core/preprocess.py, core/faces.py, core/segmentation.py), so training and the app
share one code path. It runs on tf.data's threads: Pillow releases the GIL while it decodes,
resizes and rotates, so the threads do run in parallel. We chose tf.data over
keras.utils.PyDataset with worker processes because tf.distribute distributes and shards a
tf.data pipeline across devices and machines natively, and prefetching overlaps the input with
the step; the measured throughput is in docs/training_at_scale.md (bench/train.py).

`example(index, decoded, rng)` turns a decoded record into what the network sees, after the
cache: a fresh random turn of a face every epoch, a mirror image. `rng` is a numpy Generator
seeded per example from tf.data's own random stream, new every epoch for training and the same
every time for evaluation.

`--cache DIR` keeps each decoded record as one .npz file, keyed by the file's path, size and
modification time and by what the decoder does, so later epochs and later runs read pixels
instead of decoding. A file is written whole or not at all (written aside, then renamed), so an
interrupted run leaves a usable cache.

A file that fails to decode while streaming is left out of its batch and recorded in the
source's `problems`; the run goes on and the data report lists it. `scan` finds most such files
before training starts, in the same pass that computes the dataset's content hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.atomic import write_atomic
from core.images import ImageError, open_image
from core.preprocess import model_input


@dataclass(frozen=True)
class Sample:
    """An image file, its label, and optionally the box (in the frame it was annotated in) to crop."""

    path: Path
    label: int | tuple = 0
    box: tuple | None = None  # (left, top, right, bottom) in the frame below
    frame: tuple | None = None  # (width, height) the box was annotated in


# --- before training: one pass over the files -------------------------------------------------

@dataclass
class Scan:
    sha256: str  # over the sorted relative paths and the bytes of every file
    unreadable: dict  # path -> reason, for files that are not usable images
    digests: dict = dataclasses.field(default_factory=dict)  # path -> SHA-256 of its bytes, to find copies


def scan(files, root: Path, images=None, workers: int = 8, extra_root: Path | None = None) -> Scan:
    """Read every file once: the dataset's content hash, and a header check of the image files
    among them (`images`, default: all) that finds non-images, empty files and decompression bombs
    before the first step rather than at hour three. Files under `extra_root` (a recipe's
    --flags, which need not be under the dataset's `root`) are hashed as `extra-data/<path>`."""
    files = sorted({Path(f) for f in files})
    images = set(files if images is None else map(Path, images))

    def read(file: Path):
        data = file.read_bytes()
        reason = None
        if file in images:
            try:
                open_image(data, name=file.name)
            except ImageError as error:
                reason = str(error)
        return hashlib.sha256(data).digest(), reason

    def name(file: Path) -> str:
        if extra_root is not None and file.is_relative_to(extra_root) and not file.is_relative_to(root):
            return f"extra-data/{file.relative_to(extra_root)}"
        return str(file.relative_to(root))

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(read, files))
    digest = hashlib.sha256()
    for file, (file_digest, _) in zip(files, results):
        digest.update(name(file).encode() + b"\0" + file_digest)
    unreadable = {str(file): reason for file, (_, reason) in zip(files, results) if reason}
    return Scan(digest.hexdigest(), unreadable, {str(file): file_digest for file, (file_digest, _) in zip(files, results)})


def fingerprint(files, root: Path) -> str:
    """The content hash that `scan` computes, alone."""
    return scan(files, root, images=()).sha256


# --- decoding, with an optional on-disk cache --------------------------------------------------

class DecodedRecords:
    """Records and how to decode one. `spec` names what `decode` does (sizes, crops): it is part of
    the cache key, so changing the decoding never reads a stale cache. `identity(record)` is what
    the decoded arrays depend on (default: the record itself, a dataclass naming its files): two
    records with the same identity share one cache entry."""

    def __init__(self, records: list, decode: Callable, spec: str, cache: Path | None = None,
                 identity: Callable | None = None):
        self.records, self.decode, self.spec = records, decode, spec
        self.identity = identity or (lambda record: record)
        self.cache = Path(cache) / hashlib.sha1(spec.encode()).hexdigest()[:12] if cache else None
        self.problems: dict[str, str] = {}  # file -> why it could not be decoded while streaming
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.records)

    def decoded(self, index: int):
        """The record's arrays (a tuple), from the cache or decoded now; None if it cannot be decoded."""
        record = self.records[index]
        file = self._cache_file(record)
        if file is not None and file.is_file():
            try:
                with np.load(file, allow_pickle=False) as stored:
                    return tuple(stored[f"arr_{k}"] for k in range(len(stored.files)))
            except (OSError, ValueError, zipfile.BadZipFile):
                pass  # damaged (e.g. a full disk): decode again and rewrite it
        try:
            arrays = self.decode(record)
        except (ImageError, OSError, ValueError) as error:
            files = _files(self.identity(record))
            with self._lock:
                self.problems.setdefault(str(files[0]) if files else repr(record), str(error))
            return None
        arrays = arrays if isinstance(arrays, tuple) else (arrays,)
        if file is not None:
            _write_atomic(file, arrays)
        return arrays

    def _cache_file(self, record) -> Path | None:
        if self.cache is None:
            return None
        identity = self.identity(record)
        try:
            stamps = [f"{f.resolve()}|{f.stat().st_size}|{f.stat().st_mtime_ns}" for f in _files(identity)]
        except OSError:
            return None
        key = hashlib.sha1("|".join([*stamps, repr(identity)]).encode()).hexdigest()
        return self.cache / key[:2] / f"{key}.npz"


def _files(identity) -> list[Path]:
    """The files a record names (its Path fields), whose size and time stamp the cache entry."""
    if dataclasses.is_dataclass(identity):
        return [value for value in (getattr(identity, f.name) for f in dataclasses.fields(identity))
                if isinstance(value, Path)]
    return [identity] if isinstance(identity, Path) else []


def _write_atomic(file: Path, arrays: tuple) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    # A part file of each thread's own: tf.data's threads and a cluster's workers may decode one record at once.
    try:
        write_atomic(file, buffer.getvalue(), file.with_name(f"{file.name}.{os.getpid()}.{threading.get_ident()}.part"))
    except OSError:
        pass  # a cache that cannot be written is only slower


def resized_images(size: int, cache: Path | None = None) -> Callable[[list], DecodedRecords]:
    """Decoding for classifiers: the sample's image (cropped to its box, if any), resized to
    size x size as core.preprocess does for the app, kept as uint8."""

    def decode(sample: Sample):
        return model_input(sample.path, (size, size), sample.box, sample.frame).astype(np.uint8)

    return lambda samples: DecodedRecords(samples, decode, f"resize {size}x{size} (core.preprocess.model_input)", cache)


# --- tf.data pipelines ---------------------------------------------------------------------------

def batches(source: DecodedRecords, example: Callable, signature, batch_size: int, seed: int | None = None,
            with_index: bool = False, shard: tuple[int, int] | None = None, replicas: int = 1):
    """A tf.data.Dataset of batches of `example(index, decoded, rng)` = (inputs, targets), whose
    structure and per-example shapes and dtypes are `signature` (tf.TensorSpec's), with a sample
    weight of 1 (0 for a record that could not be decoded). An example may give its own weights
    as a third item, e.g. one per output (inputs, targets, weights): those are kept, and zeroed for
    a record that could not be decoded.

    With a `seed`, the order is reshuffled and every example gets fresh random numbers each epoch
    (training); without, the order and the random numbers are the same every time (evaluation).
    `with_index` gives (example, record index) instead, without the records that could not be
    decoded, to line predictions up with records. With several `replicas` (devices), every batch is whole and splits
    evenly between them (a device left with an empty part of a last, short batch fails the step):
    the batch shrinks to fit a small set, and the last short batch is left out; training sets are
    reshuffled every epoch, so every record still takes its turn.

    `shard` = (workers, rank), for one machine of several (training/cluster.py): the records are
    shuffled alike on every machine (the same seed) and each machine keeps every workers-th one of
    that order, so the machines read disjoint shares that cover the set, a new share each epoch.
    Each share has len // workers records, so that every machine takes the same number of steps
    (one with a step more would wait for the others' forever); the batch is the global one, which
    tf.distribute splits between the machines' replicas."""
    import tensorflow as tf

    workers, rank = shard or (1, 0)
    share = len(source) // workers
    if replicas > 1:
        batch_size = max(replicas, min(batch_size, share // replicas * replicas))

    flat = tf.nest.flatten(signature)
    indices = tf.data.Dataset.range(len(source))
    if seed is not None:
        indices = indices.shuffle(len(source), seed=seed, reshuffle_each_iteration=True)
    if shard is not None:
        indices = indices.shard(workers, rank).take(share)
    # Each machine's own random numbers (turns, crops): the same stream on two would turn their
    # k-th faces alike.
    randoms = tf.data.Dataset.random(seed=(0 if seed is None else seed) + rank,
                                     rerandomize_each_iteration=seed is not None)

    def load(index, random):
        index = int(index)
        decoded = source.decoded(index)
        if decoded is None:
            return [np.zeros(s.shape, s.dtype.as_numpy_dtype) for s in flat] + [np.int64(index), False]
        values = tf.nest.flatten(example(index, decoded, np.random.default_rng(int(random) & 0x7FFFFFFFFFFFFFFF)))
        return [np.asarray(v, s.dtype.as_numpy_dtype) for v, s in zip(values, flat)] + [np.int64(index), True]

    def tf_load(index, random):
        values = tf.numpy_function(load, [index, random], [s.dtype for s in flat] + [tf.int64, tf.bool],
                                   stateful=False)
        for value, spec in zip(values, flat):
            value.set_shape(spec.shape)
        values[-2].set_shape(())
        values[-1].set_shape(())
        return tf.nest.pack_sequence_as(signature, values[:-2]), values[-2], values[-1]

    dataset = tf.data.Dataset.zip(indices, randoms)
    dataset = dataset.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is None)
    if with_index:
        dataset = dataset.filter(_decoded).map(_with_index)
    else:
        # (inputs, targets, sample weight): a record that fails to decode stays in its batch, blank and
        # weighing nothing, rather than being filtered out, so that Keras knows the number of steps.
        dataset = dataset.map(_weighted)
    options = tf.data.Options()
    # Records are sharded above (or not at all); tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.batch(batch_size, drop_remainder=replicas > 1).prefetch(tf.data.AUTOTUNE).with_options(options)


# Named functions rather than lambdas: AutoGraph cannot read two lambdas written on one line.
def _decoded(element, index, ok):
    return ok


def _with_index(element, index, ok):
    return element, index


def _weighted(element, index, ok):
    import tensorflow as tf

    ok = tf.cast(ok, tf.float32)
    if len(element) == 3:  # the example gave weights of its own (e.g. one per output): a blank one's are 0
        return (*element[:2], tf.nest.map_structure(lambda weight: weight * ok, element[2]))
    return (*element, ok)


def image_signature(size: int, channels: int = 3):
    import tensorflow as tf

    return tf.TensorSpec((size, size, channels), tf.uint8)


def predict_batches(model, dataset):
    """(record indices, outputs) per batch of a model over a `batches(..., with_index=True)` dataset
    whose elements are (inputs, index) or ((inputs, targets), index). One traced forward pass, as
    the app runs it; outputs keep the model's structure (an array, or a dict of arrays)."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    for element, index in dataset:
        x = element[0] if isinstance(element, tuple) else element
        yield index.numpy(), tf.nest.map_structure(lambda t: t.numpy(), forward(tf.cast(x, tf.float32)))


def predict(model, dataset) -> tuple[np.ndarray, object]:
    """`predict_batches` joined: (every record index, every output)."""
    import tensorflow as tf

    indices, outputs = [], []
    for index, output in predict_batches(model, dataset):
        indices.append(index)
        outputs.append(output)
    if not outputs:
        return np.zeros(0, np.int64), None
    return np.concatenate(indices), tf.nest.map_structure(lambda *parts: np.concatenate(parts), *outputs)
