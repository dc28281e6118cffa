"""Annotations to masks: the rasterisation convention against hand-computed masks, each
annotation format (VoTT, LabelMe with and without embedded image, COCO) on small hand-written files,
and the one mask resize against the image resized beside it."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from core.segmentation import PALETTE, blend, letterbox, letterbox_mask
from training import masks_from_annotations
from training.datasets.annotations import polygon_mask, rectangle_points
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
        assert painted[0, k].tolist() == np.round((100 + np.array(rgb)) / 2).tolist()  # halves to even
    assert (painted[1] == 100).all()
