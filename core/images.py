"""Image decoding: the one place where files become RGB pixels.

Every tab and every training script reads images through `load_image`, so a
photo is decoded the same way when a model is trained and when it is used:
EXIF orientation applied, any colour mode turned into 8-bit RGB, decompression
bombs refused before decoding, and every failure reported as an `ImageError`
whose message names the problem.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from core import settings
from core.errors import InputError

# Refuse images above this many pixels before decoding them (a 20000 x 20000 PNG
# can be a few kilobytes on disk and 1.2 GB in memory). APP_MAX_IMAGE_PIXELS sets it.
MAX_PIXELS = settings.number("MAX_IMAGE_PIXELS", 50_000_000, minimum=1)
# Decode large allowed images down to at most this side early: no model here
# looks at more than a few hundred pixels.
WORKING_SIDE = 2048

# Pillow's own guard stays on, at our limit, for every decode in the process, Gradio's and other
# libraries' included: it refuses an image of over twice the limit when opening it, before any
# pixel is decoded (and warns above the limit, where our own check refuses it first).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(InputError):
    """An input that is not a usable image; the message says why, for people."""


UPRIGHT_SIZE = "upright_size"  # the key in a loaded picture's `info`


def load_image(source, max_pixels: int = MAX_PIXELS, max_side: int = WORKING_SIDE) -> Image.Image:
    """Decode a path, bytes or PIL image into an upright 8-bit RGB PIL image. Its `info` holds the
    upload's own size, upright, before any downscaling (`upright_size`)."""
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    image = open_image(source, max_pixels)
    stored = image.size
    if image.format == "JPEG":
        # JPEG can decode straight to a smaller scale, which is much cheaper.
        image.draft("RGB", (max_side, max_side))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise _decode_error(_source_name(source), error) from None
    # Orientations 5-8 turn the picture by a quarter: width and height swap.
    quarter_turn = image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
    image = _to_rgb(ImageOps.exif_transpose(image))
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    image.info[UPRIGHT_SIZE] = stored[::-1] if quarter_turn else stored
    return image


def open_image(source, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Open a path or bytes and check the image from its header alone, decoding nothing: an
    ImageError for an empty file, a non-image, or one over the pixel limit. Cheap enough to run
    over a whole dataset before training."""
    name = name or _source_name(source)
    stream = _open_stream(source, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our check below says it better
            image = Image.open(stream)
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name} has over {2 * max_pixels / 1e6:.0f} megapixels; the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels — downscale it first") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise _decode_error(name, error) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels — downscale it first"
        )
    return image


def _source_name(source) -> str:
    return "the upload" if isinstance(source, (bytes, bytearray)) else (Path(source).name or str(source))


def upright_size(source) -> tuple[int, int] | None:
    """An upload's (width, height) as `load_image` turns it upright (EXIF orientation), before any
    downscaling on decode: what load_image recorded, or read from the header (which for a PNG
    means decoding it: its EXIF may come after the pixels). None when the header cannot be read."""
    if isinstance(source, Image.Image) and UPRIGHT_SIZE in source.info:
        return tuple(source.info[UPRIGHT_SIZE])
    try:
        if isinstance(source, Image.Image):
            image = source
        else:
            image = Image.open(_open_stream(source, _source_name(source)))
        width, height = image.size
        # Orientations 5-8 turn the picture by a quarter: width and height swap.
        quarter_turn = image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
        return (height, width) if quarter_turn else (width, height)
    except Exception:  # load_image reports unreadable files; this only rescales coordinates
        return None


def _decode_error(name: str, error: Exception) -> ImageError:
    if "truncated" in str(error).lower():
        return ImageError(f"{name} is truncated: the file ends before the image does")
    return ImageError(f"{name} is damaged and could not be decoded: {error}")


def _open_stream(source, name: str):
    """A binary stream over the whole input, refusing missing and empty inputs clearly."""
    if source is None:
        raise ImageError("No image was given")
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("The upload is empty (0 bytes)" if name == "the upload" else f"{name} is empty (0 bytes)")
        return io.BytesIO(source)
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"{path.name or path} does not exist")
    if path.stat().st_size == 0:
        raise ImageError(f"{path.name} is empty (0 bytes)")
    return io.BytesIO(path.read_bytes())


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened onto white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit, 32-bit and float greyscale: stretch the actual range to 0..255
        # instead of clipping, which would turn most such images white.
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (np.nan_to_num(values, nan=low) - low) / max(high - low, 1e-12) * 255.0
        grey = Image.fromarray(np.clip(scaled, 0, 255).round().astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode == "P":
        image = image.convert("RGBA")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
