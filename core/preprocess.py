"""Preprocessing shared by training and inference.

Outside the model we only resize: an RGB image becomes a float32 array of
shape (height, width, 3) with values in 0..255. Everything else a backbone
needs (rescaling, ImageNet normalisation) is a layer inside the saved model,
so the app can never feed a network differently from how it was trained.
The bundle's metadata records this contract under "preprocessing".
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.images import load_image

PREPROCESSING = {
    "decode": "core.images.load_image: EXIF orientation applied, converted to 8-bit RGB",
    "crop": "none (training may crop to annotated boxes)",
    "resize": "bilinear with antialiasing to the input size, aspect ratio not kept",
    "pixels": "float32 RGB in 0..255; normalisation happens inside the model",
}


def resize_for_model(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """RGB PIL image -> float32 array (height, width, 3) in 0..255."""
    height, width = size
    resized = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(resized, dtype=np.float32)


def model_input(source, size: tuple[int, int], box=None, box_frame=None) -> np.ndarray:
    """Decode any image source, optionally crop to a box, and resize.

    `box` is (left, top, right, bottom) in the pixel frame `box_frame` = (width, height)
    it was annotated in; the loader may have downscaled the image since.
    """
    image = load_image(source)
    if box is not None:
        image = crop_box(image, box, box_frame)
    return resize_for_model(image, size)


def crop_box(image: Image.Image, box, box_frame=None) -> Image.Image:
    """Crop to a box, rescaled from the frame it was annotated in and clipped to the image."""
    scale_x = image.width / box_frame[0] if box_frame and box_frame[0] else 1.0
    scale_y = image.height / box_frame[1] if box_frame and box_frame[1] else 1.0
    left, top, right, bottom = (box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y)
    left, top = max(0, int(left)), max(0, int(top))
    right, bottom = min(image.width, int(right)), min(image.height, int(bottom))
    if right - left < 2 or bottom - top < 2:
        return image
    return image.crop((left, top, right, bottom))
