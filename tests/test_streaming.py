"""The training input pipeline streams: images are decoded as batches are needed, not up front."""

import threading

import numpy as np
from PIL import Image

from training import inputs
from training.inputs import Sample


def test_the_first_batch_decodes_a_batch_and_the_prefetch_window_not_the_dataset(tmp_path):
    """The pipeline exactly as the recipes build it (training/classification.py: resized_images, then
    batches with a seed), over 400 files: decodes are counted as they happen."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(400):
        path = tmp_path / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(path, i % 4))
    source = inputs.resized_images(16)(samples)
    decoded, lock = [], threading.Lock()
    decode = source.decode

    def counted(record):
        with lock:
            decoded.append(record.path.name)
        return decode(record)

    source.decode = counted
    signature = (inputs.image_signature(16), __import__("tensorflow").TensorSpec((), "int64"))
    batches = inputs.batches(source, lambda index, arrays, rng: (arrays[0], source.records[index].label), signature,
                             batch_size=8, seed=1)
    first = next(iter(batches))
    assert first[0].shape == (8, 16, 16, 3)
    # A batch of 8, and what the parallel map and the prefetch run ahead (15 here, 2 cores): a few
    # batches, never the set.
    assert 8 <= len(decoded) <= 80, len(decoded)
    every = sum(1 for _ in batches)  # a whole epoch decodes each file once (no cache here)
    assert every == 50 and len(decoded) >= 400
