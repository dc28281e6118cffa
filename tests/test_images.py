import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.images import ImageError, load_image

RED = (220, 30, 30)


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_common_formats_decode_to_rgb(fmt):
    image = load_image(encoded(Image.new("RGB", (40, 30), RED), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    assert np.abs(np.asarray(image)[15, 20].astype(int) - RED).max() < 40


def test_gif_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in (RED, (0, 0, 255))]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(load_image(data.getvalue()))[10, 10, 0] > 150  # red, not blue


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), RED)  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    assert load_image(encoded(image, "JPEG", exif=exif)).size == (20, 60)


def test_transparency_is_flattened_on_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert tuple(np.asarray(load_image(encoded(rgba, "PNG")))[5, 5]) == (255, 255, 255)
    la = Image.new("LA", (10, 10), (0, 255))
    assert tuple(np.asarray(load_image(encoded(la, "PNG")))[5, 5]) == (0, 0, 0)


def test_palette_cmyk_and_grey_modes():
    palette = Image.new("RGB", (10, 10), RED).convert("P")
    assert np.asarray(load_image(encoded(palette, "PNG")))[5, 5, 0] > 150
    cmyk = Image.new("CMYK", (10, 10), (0, 255, 255, 0))  # pure red in CMYK
    assert tuple(np.asarray(load_image(encoded(cmyk, "JPEG")))[5, 5] > 128) == (True, False, False)
    assert load_image(encoded(Image.new("L", (10, 10), 90), "PNG")).mode == "RGB"


def test_16_bit_and_float_images_keep_their_contrast():
    ramp = np.linspace(0, 65535, 100, dtype=np.uint16).reshape(10, 10)
    sixteen = load_image(encoded(Image.fromarray(ramp), "PNG"))
    values = np.asarray(sixteen)[..., 0]
    assert values.min() == 0 and values.max() == 255  # not all white, not clipped
    floats = Image.fromarray(np.linspace(-1.0, 1.0, 100, dtype=np.float32).reshape(10, 10), mode="F")
    values = np.asarray(load_image(encoded(floats, "TIFF")))[..., 0]
    assert values.min() == 0 and values.max() == 255


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge size, with almost no data: decoding would explode."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="megapixels"):
        load_image(bomb_png(60000, 60000))


def test_large_allowed_image_is_downscaled_early():
    image = load_image(encoded(Image.new("RGB", (5000, 2500), RED), "JPEG"))
    assert max(image.size) <= 2048 and abs(image.size[0] / image.size[1] - 2) < 0.05


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"%PDF-1.4 not a picture", "not an image"),
    (encoded(Image.new("RGB", (200, 200), RED), "JPEG")[:300], "truncated"),
])
def test_bad_inputs_name_the_problem(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_files_by_path(tmp_path):
    # Like one Stanford Dogs file: a PNG with alpha named .jpg.
    path = tmp_path / "dog.jpg"
    Image.new("RGBA", (8, 8), (10, 20, 30, 255)).save(path, format="PNG")
    assert tuple(np.asarray(load_image(path))[0, 0]) == (10, 20, 30)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")
