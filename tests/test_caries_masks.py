"""Annotations to masks: the rasterisation convention against hand-computed masks, each
annotation format (VoTT, LabelMe with and without embedded image, COCO) on small hand-written files,
image paths confined to the input folders, COCO run-length masks against an independent encoder,
and the one mask resize against the image resized beside it."""

import base64
import io
import json
import os
import sys
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from core.images import MAX_PIXELS
from core.segmentation import PALETTE, blend, letterbox, letterbox_mask
from training import masks_from_annotations
from training.datasets.annotations import polygon_mask, rectangle_points
from training.datasets.coco_rle import compressed_counts, rle_mask
from training.datasets.segmentation_masks import Pair, load_pair

# --- rasterisation: pixel (r, c) is covered when its centre (c + .5, r + .5) is inside; edges
# through a centre count for the shape on their right/below (left and top edges in, right and bottom out).


def grid(text: str) -> np.ndarray:
    return np.array([[int(ch) for ch in line.split()[0]] for line in text.strip().splitlines()])


def test_polygon_edges_follow_the_top_left_rule():
    # Triangle with its hypotenuse x + y = 4 passing exactly through the centres with c + r = 3:
    # the hypotenuse is a right edge, so those centres are out; the left and top edges are in.
    mask = polygon_mask([(0, 0), (4, 0), (0, 4)], 5, 5)
    assert (mask.astype(int) == grid("""
        11100
        11000
        10000
        00000
        00000""")).all()
    # A diamond whose vertices sit on pixel centres: the top vertex's centre is on two edges that
    # meet there (an empty span), the left vertex's is on the upper-left edges (in), the right and
    # bottom ones are on lower-right edges (out). 8 pixels for an area of 8.
    diamond = polygon_mask([(2.5, 0.5), (4.5, 2.5), (2.5, 4.5), (0.5, 2.5)], 5, 5)
    assert (diamond.astype(int) == grid("""
        00000
        01100
        11110
        01100
        00000""")).all()


def test_a_rectangle_covers_its_near_edges_and_not_its_far_ones():
    mask = polygon_mask(rectangle_points(4, 3, 1, 1), 5, 6)  # corners in any order
    assert (mask.astype(int) == grid("""
        000000
        011100
        011100
        000000
        000000""")).all()
    assert mask.sum() == (4 - 1) * (3 - 1)
    # Fractional corners: columns whose centres lie in [1.2, 3.5) -> 1, 2; rows in [0.5, 2.6) -> 0, 1, 2.
    assert np.argwhere(polygon_mask(rectangle_points(1.2, 0.5, 3.5, 2.6), 4, 5)).tolist() == [
        [r, c] for r in (0, 1, 2) for c in (1, 2)]


def test_two_touching_polygons_of_different_classes_share_no_pixel_and_leave_no_gap(tmp_path):
    # A slanted shared edge from (3, 0) to (1, 5), and the union is one rectangle 5 x 5.
    left = [(0, 0), (3, 0), (1, 5), (0, 5)]
    right = [(3, 0), (5, 0), (5, 5), (1, 5)]
    a, b = polygon_mask(left, 5, 5), polygon_mask(right[::-1], 5, 5)  # orientation does not matter
    assert not (a & b).any() and (a | b).all()
    assert (a.astype(int) + 2 * b.astype(int) == grid("""
        11122
        11222
        11222
        11222
        12222""")).all()
    # Through the converter: two classes, no overlap reported, no one-hot file needed.
    Image.new("L", (5, 5), 90).save(tmp_path / "touch.png")
    (tmp_path / "touch.json").write_text(json.dumps({
        "imagePath": "touch.png", "imageData": None, "imageWidth": 5, "imageHeight": 5,
        "shapes": [{"label": "caries", "points": left, "shape_type": "polygon"},
                   {"label": "filling", "points": right, "shape_type": "polygon"}]}))
    result = masks_from_annotations.convert(tmp_path / "touch.json", tmp_path, tmp_path / "out", ["caries", "filling"])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "masks" / "touch.png")), a * 1 + b * 2)
    assert result["report"]["overlapping_classes_count"] == 0 and not (tmp_path / "out" / "masks" / "touch.npy").exists()


def test_a_shape_partly_outside_the_image_is_clipped():
    mask = polygon_mask([(-2, -2), (3, -2), (3, 3), (-2, 3)], 4, 4)
    assert (mask.astype(int) == grid("""
        1110
        1110
        1110
        0000""")).all()
    # ...exactly as the same shape on a larger canvas, cut to the image.
    big = polygon_mask([(p[0] + 4, p[1] + 4) for p in [(-2, -2), (3, -2), (3, 3), (-2, 3)]], 12, 12)
    assert np.array_equal(mask, big[4:8, 4:8])
    assert not polygon_mask([(10, 10), (12, 10), (12, 12)], 4, 4).any()


# --- the three formats ------------------------------------------------------------------

def png_bytes(width, height, value=120, mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), value).save(buffer, format="PNG")
    return buffer.getvalue()


def read_mask(out, stem):
    return np.asarray(Image.open(out / "masks" / f"{stem}.png"))


def expected(height, width, *fills):
    mask = np.zeros((height, width), np.uint8)
    for value, rows, cols in fills:
        mask[rows, cols] = value
    return mask


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(8, 6))
    (folder / "b.jpg").write_bytes(png_bytes(6, 4))  # a PNG named .jpg: decoded by content
    (folder / "never_annotated.png").write_bytes(png_bytes(4, 4))
    return folder


def test_vott_export(tmp_path, images):
    export = {
        "name": "caries", "tags": [{"name": "caries", "color": "#f00"}, {"name": "filling", "color": "#0f0"}],
        "assets": {
            "id-a": {"asset": {"name": "a.png", "path": "file:C:/x/a.png", "size": {"width": 8, "height": 6}},
                     "regions": [
                         {"id": "r1", "type": "RECTANGLE", "tags": ["caries"],
                          "boundingBox": {"left": 1, "top": 1, "width": 3, "height": 2},
                          "points": [{"x": 1, "y": 1}, {"x": 4, "y": 1}, {"x": 4, "y": 3}, {"x": 1, "y": 3}]},
                         {"id": "r2", "type": "POLYGON", "tags": ["filling"],
                          "points": [{"x": 5, "y": 2}, {"x": 8, "y": 2}, {"x": 8, "y": 9}, {"x": 5, "y": 9}]},
                         {"id": "r3", "type": "POLYGON", "tags": ["tartar"],
                          "points": [{"x": 0, "y": 0}, {"x": 2, "y": 0}, {"x": 2, "y": 2}]},
                         {"id": "r4", "type": "POLYGON", "tags": ["caries"],
                          "points": [{"x": 0, "y": 5}, {"x": 3, "y": 5}, {"x": 6, "y": 5}]},
                         {"id": "r5", "type": "POINT", "tags": ["caries"], "points": [{"x": 1, "y": 1}]}]},
            "id-b": {"asset": {"name": "b.jpg", "path": "file:C:/x/b.jpg", "size": {"width": 6, "height": 4}},
                     "regions": []},
        },
    }
    (tmp_path / "export.json").write_text(json.dumps(export))
    out = tmp_path / "out"
    result = masks_from_annotations.main(["--annotations", str(tmp_path / "export.json"), "--images", str(images), "--out", str(out)])
    assert json.loads((out / "classes.json").read_text()) == {"classes": ["background", "caries", "filling"]}
    # Rectangle: columns 1..3, rows 1..2 -> caries; polygon leaving the image at the bottom and
    # right edge: columns 5..7, rows 2..5 -> filling, clipped.
    assert np.array_equal(read_mask(out, "a"), expected(6, 8, (1, slice(1, 3), slice(1, 4)), (2, slice(2, 6), slice(5, 8))))
    assert np.array_equal(read_mask(out, "b"), np.zeros((4, 6), np.uint8))  # annotated, no shape: all background
    assert (out / "images" / "b.jpg").read_bytes() == (images / "b.jpg").read_bytes()  # copied as is
    report = result["report"]
    assert any("r2" in line and "clipped" in line for line in report["clipped_shapes"])
    assert any("r3" in line and "tartar" in line for line in report["unknown_tags"])
    assert any("r4" in line and "zero area" in line for line in report["degenerate_shapes"])
    assert any("r5" in line and "POINT" in line for line in report["unsupported_shapes"])
    assert any("b.jpg" in line for line in report["images_without_annotations"])
    assert report["images_not_annotated"] == ["never_annotated.png: in --images but in no annotation file; not written"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["images_written"] == 2 and saved["formats"] == ["VoTT"]


def labelme(image_path, width, height, shapes, data=None):
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": data,
            "imageHeight": height, "imageWidth": width}


def test_labelme_with_and_without_embedded_image_data(tmp_path, images):
    folder = tmp_path / "labelme"
    folder.mkdir()
    # Without imageData: the image is found in --images. A rectangle given by two corners (any order).
    (folder / "a.json").write_text(json.dumps(labelme("..\\images\\a.png", 8, 6, [
        {"label": "caries", "points": [[6, 4], [2, 1]], "shape_type": "rectangle", "group_id": None, "flags": {}},
        {"label": "caries", "points": [[0, 0], [1, 1]], "shape_type": "line"},
    ])))
    # With imageData only (no such file anywhere): the embedded image is written out.
    embedded = base64.b64encode(png_bytes(5, 5, 200)).decode()
    (folder / "scan7.json").write_text(json.dumps(labelme("scan7.png", 5, 5, [
        {"label": "caries", "points": [[0, 0], [4, 0], [0, 4]], "shape_type": "polygon"},
    ], data=embedded)))
    # Annotated on a half-size copy: coordinates are rescaled to the real image, and that is reported.
    (folder / "b.json").write_text(json.dumps(labelme("b.jpg", 3, 2, [
        {"label": "caries", "points": [[0, 0], [1, 1]], "shape_type": "rectangle"}])))
    out = tmp_path / "out"
    result = masks_from_annotations.main(["--annotations", str(folder), "--images", str(images), "--out", str(out)])
    assert np.array_equal(read_mask(out, "a"), expected(6, 8, (1, slice(1, 4), slice(2, 6))))
    assert np.array_equal(read_mask(out, "scan7"), (polygon_mask([(0, 0), (4, 0), (0, 4)], 5, 5)).astype(np.uint8))
    assert (out / "images" / "scan7.png").read_bytes() == base64.b64decode(embedded)
    assert np.array_equal(read_mask(out, "b"), expected(4, 6, (1, slice(0, 2), slice(0, 2))))
    report = result["report"]
    assert any("b.json" in line and "rescaled" in line for line in report["size_mismatches"])
    assert any("a.json: shape 1" in line and "line" in line for line in report["unsupported_shapes"])


def test_coco_file(tmp_path, images):
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6},
                   {"id": 2, "file_name": "missing.png", "width": 4, "height": 4}],
        "categories": [{"id": 7, "name": "caries"}, {"id": 9, "name": "filling"}],
        "annotations": [
            # Two polygons of one object, then a filling given only by its bbox [x, y, w, h].
            {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2], [6, 4, 8, 4, 8, 6]],
             "bbox": [0, 0, 8, 6], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "segmentation": [], "bbox": [3, 1, 2, 3], "iscrowd": 0},
            # Overlaps the filling: the PNG keeps the last shape, the one-hot .npy keeps both.
            {"id": 3, "image_id": 1, "category_id": 7, "segmentation": [[4, 3, 6, 3, 6, 5, 4, 5]], "iscrowd": 0},
            {"id": 4, "image_id": 1, "category_id": 3, "segmentation": [[0, 4, 1, 4, 1, 5]], "iscrowd": 0},
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    result = masks_from_annotations.main(["--annotations", str(tmp_path / "instances.json"), "--images", str(images), "--out", str(out)])
    assert json.loads((out / "classes.json").read_text())["classes"] == ["background", "caries", "filling"]
    # Triangle (6,4)-(8,4)-(8,6): its hypotenuse through centre (6.5, 4.5)... is a left edge: covered.
    triangle = polygon_mask([(6, 4), (8, 4), (8, 6)], 6, 8)
    assert triangle.sum() == 3
    want = expected(6, 8, (1, slice(0, 2), slice(0, 2)), (2, slice(1, 4), slice(3, 5)), (1, slice(3, 5), slice(4, 6)))
    want[triangle] = 1
    assert np.array_equal(read_mask(out, "a"), want)
    onehot = np.load(out / "masks" / "a.npy")
    assert onehot.shape == (6, 8, 3) and onehot[3, 4].tolist() == [0, 1, 1]  # caries and filling both kept
    assert (onehot[..., 0] == (onehot[..., 1:].sum(-1) == 0)).all()
    report = result["report"]
    assert any("a.png: 1 pixels in several classes" in line for line in report["overlapping_classes"])
    assert any("missing.png" in line for line in report["missing_images"])
    assert any("annotation 4" in line and "category 3" in line for line in report["unknown_tags"])


def test_bad_annotation_files_are_reported_not_fatal(tmp_path, images):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json")
    (folder / "other.json").write_text(json.dumps({"hello": "world"}))
    (folder / "a.json").write_text(json.dumps(labelme("a.png", 8, 6, [
        {"label": "caries", "points": [[0, 0], ["x", 1], [2, 2]], "shape_type": "polygon"},
        {"label": "caries", "points": [[0, 0], [3, 0], [0, 3]], "shape_type": "polygon"}])))
    out = tmp_path / "out"
    result = masks_from_annotations.main(["--annotations", str(folder), "--images", str(images), "--out", str(out)])
    report = result["report"]
    assert any("broken.json is not readable JSON" in line for line in report["unreadable_annotation_files"])
    assert any("other.json is not a VoTT export" in line for line in report["unreadable_annotation_files"])
    assert any("a.json: shape 0" in line for line in report["malformed_shapes"])
    assert read_mask(out, "a").sum() == 3
    with pytest.raises(SystemExit, match="No readable annotation file"):
        masks_from_annotations.main(["--annotations", str(folder / "broken.json"), "--out", str(tmp_path / "none")])


# --- only --images and the annotation file's folder are read --------------------------

_opened: list[list[str]] = []  # one list per `files_opened` block in progress


def _record_open(event, args):
    if event == "open" and _opened and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened[-1].append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_record_open)  # Python's own record of every file opened: proof that one was not


@contextmanager
def files_opened():
    """Every file Python opens inside the block (its real path)."""
    _opened.append([])
    try:
        yield _opened[-1]
    finally:
        _opened.pop()


def test_image_paths_outside_the_folders_are_missing_and_never_read(tmp_path, images):
    secret = tmp_path / "elsewhere" / "secret.png"  # a real, readable image nobody named as input
    secret.parent.mkdir()
    secret.write_bytes(png_bytes(8, 6, 77))
    (images / "link.png").symlink_to(secret)  # a link inside --images that leads out of it
    (images / "sub").mkdir()
    (images / "sub" / "c.png").write_bytes(png_bytes(3, 2))  # a path inside --images: read
    folder = tmp_path / "annotations"
    folder.mkdir()
    shape = [{"label": "caries", "points": [[0, 0], [2, 0], [0, 2]], "shape_type": "polygon"}]
    (folder / "up.json").write_text(json.dumps(labelme("../elsewhere/secret.png", 8, 6, shape)))
    depth = len(folder.parts) - 1  # enough ../ to reach / from the annotation folder
    (folder / "far.json").write_text(json.dumps(labelme("../" * depth + str(secret).lstrip("/"), 8, 6, shape)))
    (folder / "absolute.json").write_text(json.dumps(labelme(str(secret), 8, 6, shape)))
    (folder / "vott.json").write_text(json.dumps({"tags": [{"name": "caries"}], "assets": {"x": {
        "asset": {"name": "../elsewhere/secret.png", "size": {"width": 8, "height": 6}}, "regions": []}}}))
    (folder / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": str(secret), "width": 8, "height": 6},
                   {"id": 2, "file_name": "link.png", "width": 8, "height": 6},
                   {"id": 3, "file_name": "sub/c.png", "width": 3, "height": 2}],
        "categories": [{"id": 1, "name": "caries"}], "annotations": []}))
    out = tmp_path / "out"
    with files_opened() as opened:
        result = masks_from_annotations.main(["--annotations", str(folder), "--images", str(images), "--out", str(out)])
    assert str(secret) not in opened, "an image outside --images and the annotation folder was read"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["c.png"]
    missing = result["report"]["missing_images"]
    for source in ("up.json", "far.json", "absolute.json", "vott.json", f"coco.json: {secret}", "coco.json: link.png"):
        assert any(line.startswith(f"{source}") and "leads outside --images and the annotation file's folder" in line
                   and "not read" in line for line in missing), (source, missing)
    assert result["report"]["missing_images_count"] == 6


# --- COCO run-length masks ---------------------------------------------------------------

def runs_of(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed counts, the plainest way: walk the pixels column by column, count
    each run, background first (so a mask starting with a lesion pixel starts with a 0 run)."""
    height, width = mask.shape
    counts, current, length = [], False, 0
    for column in range(width):
        for row in range(height):
            if bool(mask[row, column]) == current:
                length += 1
            else:
                counts.append(length)
                current, length = not current, 1
    counts.append(length)
    return counts


def coco_string(counts: list[int]) -> str:
    """The compressed counts string, transliterated from pycocotools' maskApi.c rleToString:
    from the fourth run on, store the difference to the run two before; write each value in
    5-bit groups, low first, +48, with 0x20 on every group but the last and the sign in 0x10."""
    text = ""
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as on C's long
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            text += chr(c + 48)
    return text


def test_uncompressed_run_lengths_round_trip_random_masks():
    rng = np.random.default_rng(7)
    for height, width, density in [(1, 1, 0.5), (5, 3, 0.0), (4, 6, 1.0), (13, 7, 0.3), (32, 45, 0.05), (9, 40, 0.9)]:
        for _ in range(5):
            mask = rng.random((height, width)) < density
            assert np.array_equal(rle_mask(runs_of(mask), height, width), mask), (height, width, density)
    # Runs may stop short (the rest is background) but never run past the last pixel.
    assert np.array_equal(rle_mask([2, 1], 2, 3), np.array([[0, 1, 0], [0, 0, 0]], bool))
    with pytest.raises(ValueError, match="cover 7 pixels; a 3 x 2 mask has 6"):
        rle_mask([3, 4], 2, 3)
    with pytest.raises(ValueError, match="not a whole number"):
        rle_mask([3, -1], 2, 3)


def test_compressed_counts_decode_pixel_for_pixel():
    # The test's encoder against a value worked by hand: runs 1, 1, 1, 20 -> '1', '1', '1', then
    # 20 - 1 = 19 = 0b10011: low group 19 has 0x10 set so another group must follow (19 | 0x20 = 51,
    # 'c'), then 0 ('0').
    assert coco_string([1, 1, 1, 20]) == "111c0"
    # A known mask: a ring in a 23 x 31 image, long runs (several 5-bit groups) and runs shorter
    # than the one two before (negative differences).
    rows, cols = np.mgrid[:23, :31]
    distance = np.hypot(rows - 11.2, cols - 14.7)
    ring = (distance < 9.5) & (distance > 4)
    counts = runs_of(ring)
    assert max(counts) >= 32 and any(counts[i] < counts[i - 2] for i in range(3, len(counts)))
    assert compressed_counts(coco_string(counts)) == counts
    assert np.array_equal(rle_mask(coco_string(counts), 23, 31), ring), "the compressed ring decodes to other pixels"
    # '@' is 16: a last group with the sign bit, -16, so the fourth run would be 1 - 16.
    for text, problem in [("11 1", "character ' '"), ("111c", "truncated"), ("511@", "negative")]:
        with pytest.raises(ValueError, match=problem):
            rle_mask(text, 23, 31)


def test_compressed_and_uncompressed_masks_convert(tmp_path, images):
    rows, cols = np.mgrid[:6, :8]
    lesion = (rows - 2.5) ** 2 + (cols - 3.0) ** 2 < 5  # drawn here, not by the converter
    rows, cols = np.mgrid[:4, :6]
    filling = (cols >= rows + 2) | (rows == 3)
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6},
                       {"id": 2, "file_name": "b.jpg", "width": 6, "height": 4}],
            "categories": [{"id": 1, "name": "caries"}, {"id": 2, "name": "filling"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                 "segmentation": {"size": [6, 8], "counts": runs_of(lesion)}},
                {"id": 2, "image_id": 2, "category_id": 2, "iscrowd": 1,
                 "segmentation": {"size": [4, 6], "counts": coco_string(runs_of(filling))}}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    masks_from_annotations.main(["--annotations", str(tmp_path / "coco.json"), "--images", str(images), "--out", str(out)])
    assert np.array_equal(read_mask(out, "a"), lesion.astype(np.uint8)), "the uncompressed mask is not the one drawn"
    assert np.array_equal(read_mask(out, "b"), filling.astype(np.uint8) * 2), "the compressed mask is not the one drawn"


def test_a_mask_declaring_a_huge_size_is_malformed_without_allocating_it(tmp_path, images):
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6},
                       {"id": 2, "file_name": "b.jpg", "width": 100000, "height": 100000}],
            "categories": [{"id": 1, "name": "caries"}],
            "annotations": [  # 200 bytes each that would be 9.3 GiB of pixels
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [100000, 100000], "counts": [0, 1]}},
                {"id": 2, "image_id": 2, "category_id": 1, "segmentation": {"size": [100000, 100000], "counts": "01"}}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    tracemalloc.start()
    try:
        result = masks_from_annotations.convert(tmp_path / "coco.json", images, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, f"converting two tiny annotations peaked at {peak / 1e6:.0f} MB"
    malformed = result["report"]["malformed_shapes"]
    assert any("annotation 1" in line and "mask size 100000 x 100000 is not its image's 8 x 6" in line
               for line in malformed), f"a mask larger than its image is not reported as malformed: {malformed}"
    assert any("annotation 2" in line and f"over the {MAX_PIXELS / 1e6:.0f}-megapixel limit" in line
               for line in malformed), f"a mask over the image pixel limit is not reported as malformed: {malformed}"
    assert not read_mask(tmp_path / "out", "a").any()


# --- one mask resize: a mask stays on the pixels of the image it was drawn on ----------

def line_image(width, height, axis, at):
    """An 8-bit image with one full-length 1-px line (axis 1: a column, axis 0: a row) and its mask."""
    mask = np.zeros((height, width), np.uint8)
    if axis == 1:
        mask[:, at] = 1
    else:
        mask[at, :] = 1
    return Image.fromarray(mask * 255, "L"), mask


def assert_on_the_line(mask: np.ndarray, line: np.ndarray):
    off = np.argwhere(mask & ~line)[:3].tolist()
    missed = np.argwhere(line & ~mask)[:3].tolist()
    assert mask.any() and not off and not missed, (
        f"the resized mask left the image's line: mask pixels off it {off}, line pixels without mask {missed}")


@pytest.mark.parametrize("axis, at", [(1, 3), (1, 6), (0, 2), (0, 0)])
def test_a_one_pixel_lesion_stays_on_its_image_line_when_letterboxed(axis, at):
    # 7 x 5 into a 17-px letterbox: 17 x 12, an awkward 17/7 and 12/5. Upscaled bilinearly, the
    # line's pixels are those brighter than half; nearest neighbour must pick the same ones.
    image, mask = line_image(7, 5, axis, at)
    pixels, _ = letterbox(image.convert("RGB"), 17)
    assert_on_the_line(letterbox_mask(mask, 17) == 1, pixels[..., 0] > 127.5)


@pytest.mark.parametrize("axis, at", [(1, 3), (0, 2)])
def test_a_one_pixel_lesion_stays_on_its_image_line_when_drawn_on_a_smaller_copy(tmp_path, axis, at):
    # A COCO mask drawn on a 7 x 5 copy of a radiograph whose file is 17 x 12 (the copy upscaled).
    image, mask = line_image(7, 5, axis, at)
    big = image.resize((17, 12), Image.Resampling.BILINEAR)
    big.save(tmp_path / "scan.png")
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "scan.png", "width": 7, "height": 5}],
        "categories": [{"id": 1, "name": "caries"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [5, 7], "counts": runs_of(mask)}}]}))
    masks_from_annotations.convert(tmp_path / "coco.json", tmp_path, tmp_path / "out")
    assert_on_the_line(read_mask(tmp_path / "out", "scan") == 1, np.asarray(big) > 127)


def test_a_one_pixel_lesion_stays_on_its_image_line_when_a_large_pair_is_decoded_smaller(tmp_path):
    # Over 2048 px, core.images decodes the image smaller (Lanczos) and load_pair brings the mask
    # along: the mask must be on each row's brightest pixel. (Column 701: sampling the output
    # pixels' top-left corners instead of their centres would put the mask one column right.)
    image, mask = line_image(2050, 2050, 1, 701)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image.save(tmp_path / "images" / "x.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "x.png")
    picture, resized = load_pair(Pair(tmp_path / "images" / "x.png", tmp_path / "masks" / "x.png"), 1)
    assert picture.size == (2048, 2048) and resized.shape == (2048, 2048, 1)
    pixels = np.asarray(picture)[..., 0]
    assert_on_the_line(resized[..., 0], pixels == pixels.max(axis=1, keepdims=True))


def test_blend_paints_each_class_in_its_palette_colour():
    masks = np.zeros((2, 3, 3), bool)
    for k in range(3):
        masks[0, k, k] = True
    painted = np.asarray(blend(Image.new("RGB", (3, 2), (100, 100, 100)), masks, ["a", "b", "c"], opacity=0.5))
    for k in range(3):
        hex_colour = PALETTE[k]
        rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
        # Half of each (opacity 0.5 is 128/255 in 8 bits: within one level of the exact half).
        assert np.abs(painted[0, k] - (100 + np.array(rgb)) / 2).max() <= 1
    assert (painted[1] == 100).all()
