"""training.open_images reads only what it should from its CSVs: a row whose ImageID is no
ImageID (../../../x, an absolute path), a class whose name is no folder name (..), an
OriginalURL that is not http(s) (file://, or a redirect to one) is refused, listed in
manifest.json and counted; nothing is written outside --out; the honest rows still build."""

import json

from support.open_images_server import FakeFlickr, box_row, image_id, image_row, jpeg, readable, write_meta

from training import open_images

HAMBURGER, DOTS, SLASHED = "/m/0cdn1", "/m/0dots", "/m/0slash"
CLASSES = {HAMBURGER: "Hamburger", DOTS: "..", SLASHED: "Back\\slash/Name"}
PHOTO = jpeg(rects=[((8, 8, 32, 32), (230, 20, 20))])
BOX = (8, 8, 32, 32)
QUICK = ["--source", "flickr", "--workers", "2", "--rate", "1000", "--backoff", "0.01", "--quiet"]


def files_outside(root, out) -> dict:
    """Every file and folder under root but outside out, with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if p != out and out not in p.parents}


def test_rows_naming_paths_a_dot_dot_class_and_file_urls_are_refused_and_listed_and_the_rest_builds(tmp_path):
    root = tmp_path / "a" / "b"  # so that ../../../x from <out>/images still lands inside tmp_path, where it is seen
    out, secret = root / "out", tmp_path / "secret.jpg"
    secret.write_bytes(jpeg(rects=[(BOX, (20, 20, 230))]))  # a local file a file:// URL would read into the dataset
    absolute = str(tmp_path / "abs" / "x")
    with FakeFlickr() as flickr:
        honest = {name: flickr.serve(f"/{name}.jpg", PHOTO) for name in ("honest", "slashed", "dotted")}
        boxes = [box_row(image_id("honest"), HAMBURGER, BOX),
                 box_row("../../../x", HAMBURGER, BOX),  # line 3
                 box_row(absolute, HAMBURGER, BOX),  # line 4
                 box_row(image_id("slashed"), SLASHED, BOX),
                 box_row(image_id("dotted"), DOTS, BOX),  # its class is refused: the image is never needed
                 box_row(image_id("fileurl"), HAMBURGER, BOX),
                 box_row(image_id("redirect"), HAMBURGER, BOX)]
        images = [image_row(image_id(name), url) for name, url in honest.items()]
        images += [image_row("../../../x", honest["honest"]), image_row(absolute, honest["honest"]),
                   image_row(image_id("fileurl"), f"file://{secret}"),
                   image_row(image_id("redirect"), flickr.serve("/redirect.jpg", ("redirect", f"file://{secret}")))]
        meta = write_meta(root / "meta", CLASSES, {"train-annotations-bbox.csv": boxes}, {"train-images-boxable-with-rotation.csv": images})
        before = files_outside(tmp_path, out)

        summary = open_images.main(["--classes", "Hamburger", DOTS, SLASHED, "--meta", str(meta), "--out", str(out), *QUICK])

        assert files_outside(tmp_path, out) == before, "the build wrote outside --out"
        beside = sorted(p.name for p in out.iterdir())
        assert beside == ["download_failures.json", "images", "images_cropped", "manifest.json"], f"files beside the dataset: {beside}"
        assert readable(sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))) == [
            "images/honest.jpg", "images/slashed.jpg", "images_cropped/back_slash_name/slashed_0.jpg",
            "images_cropped/hamburger/honest_0.jpg"]
        assert summary["counts"] == {"back_slash_name": 1, "hamburger": 1} and summary["refused"] == 5
        assert "/dotted.jpg" not in flickr.requests and flickr.requests["/redirect.jpg"] == 1

    manifest = readable(json.loads((out / "manifest.json").read_text()))
    assert manifest["refused"] == {"ImageID not 16 hex digits": 2, "URL not http(s)": 2, "class name gives no folder name": 1}
    assert manifest["skipped_classes"] == [{"name": "..", "label": DOTS, "reason": "class name gives no folder name"}]
    assert [c["folder"] for c in manifest["classes"]] == ["back_slash_name", "hamburger"]
    assert manifest["skipped_boxes"] == [
        {"file": "train-annotations-bbox.csv", "line": 3, "reason": "ImageID not 16 hex digits: '../../../x'"},
        {"file": "train-annotations-bbox.csv", "line": 4, "reason": f"ImageID not 16 hex digits: {absolute!r}"}]
    assert manifest["skipped_images"] == [{"image": "fileurl", "reason": "URL not http(s): file"},
                                          {"image": "redirect", "reason": "URL not http(s): redirected to one"}]
