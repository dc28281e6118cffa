"""training.open_images against a loopback Flickr (tests/open_images_server.py) and
metadata CSVs in the real Open Images layouts."""

import csv
import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from support.hub_server import FakeHub, hub_env
from support.open_images_server import (
    FakeFlickr,
    box_row,
    image_id,
    image_row,
    jpeg,
    md5_base64,
    png,
    readable,
    write_meta,
)

from training import open_images
from training.open_images import downloading

HAMBURGER, SANDWICH, PIZZA = "/m/0cdn1", "/m/0l515", "/m/0663v"
CLASSES = {HAMBURGER: "Hamburger", SANDWICH: "Sandwich", PIZZA: "Pizza", "/m/01b9xk": "Hot dog", "/m/06pcq": "Submarine sandwich"}
RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 20), (20, 20, 230), (240, 230, 20)
QUICK = ["--workers", "4", "--rate", "1000", "--backoff", "0.01", "--quiet"]
# The images come from Flickr's OriginalURL, as World serves them: the mirror has its own tests.
FAST = ["--source", "flickr", *QUICK]
ROTATED_BOX = (8, 8, 40, 24)  # 32 x 16 px, four differently coloured quarters
TRAIN_BOXES = "train-annotations-bbox.csv"


class World:
    """One test's metadata folder and loopback Flickr. Images, by sorted ImageID (their names
    made ImageIDs by image_id; crops(), manifest() and image() speak in names):

    10normal    a Hamburger box (red) and a Sandwich box (blue)
    20notfound  404
    30flaky     500, then the image
    40gone      redirects to /photo_unavailable.png
    50badmd5    OriginalMD5 of other bytes
    60goodmd5   right OriginalMD5
    70rotated   Rotation 90 (and an EXIF orientation, which must be ignored)
    80flags     a group-of Hamburger, a depiction Sandwich, a 1-px-wide Hamburger, a small Sandwich
    90broken    not an image
    95unlisted  has a box but is missing from the image list
    99pizza     only a Pizza box: never to be downloaded
    v1valid     a Sandwich in the validation files (Subset validation)
    """

    def __init__(self, root, flickr):
        self.root, self.flickr = root, flickr
        self.served = {
            "10normal": jpeg(rects=[((8, 8, 32, 32), RED), ((40, 16, 56, 40), BLUE)]),
            "30flaky": jpeg(rects=[((0, 0, 32, 24), RED)]),
            "50badmd5": jpeg(rects=[((0, 0, 32, 24), RED)], background=(90, 90, 90)),
            "60goodmd5": jpeg(rects=[((16, 8, 48, 40), BLUE)]),
            "70rotated": jpeg(rects=[((8, 8, 24, 16), RED), ((24, 8, 40, 16), GREEN), ((8, 16, 24, 24), BLUE),
                                     ((24, 16, 40, 24), YELLOW)], exif_orientation=6),
            "80flags": jpeg(rects=[((8, 8, 32, 32), RED), ((40, 8, 56, 40), BLUE)]),
            "99pizza": jpeg(),
            "v1valid": jpeg(rects=[((16, 8, 48, 40), BLUE)]),
        }
        url = {image: flickr.serve(f"/{image}.jpg", data) for image, data in self.served.items()}
        url["20notfound"] = flickr.serve("/20notfound.jpg", 404)
        url["30flaky"] = flickr.serve("/30flaky.jpg", 500, self.served["30flaky"])
        url["40gone"] = flickr.serve("/40gone.jpg", ("redirect", "/photo_unavailable.png"))
        flickr.serve("/photo_unavailable.png", png())
        url["90broken"] = flickr.serve("/90broken.jpg", b"this is not a jpeg")
        self.boxes = [  # not in ImageID order: the builder sorts
            box_row("30flaky", HAMBURGER, (0, 0, 32, 24)),
            box_row("90broken", HAMBURGER, (8, 8, 32, 32)),
            box_row("10normal", HAMBURGER, (8, 8, 32, 32)),
            box_row("60goodmd5", SANDWICH, (16, 8, 48, 40)),
            box_row("10normal", SANDWICH, (40, 16, 56, 40)),
            box_row("20notfound", HAMBURGER, (8, 8, 32, 32)),
            box_row("80flags", HAMBURGER, (8, 8, 32, 32), group_of=1),
            box_row("80flags", SANDWICH, (40, 8, 56, 40), depiction=1),
            box_row("80flags", HAMBURGER, (10, 10, 11, 20)),  # 1 px wide
            box_row("80flags", SANDWICH, (0, 0, 8, 8)),  # 1/8 of the width
            box_row("40gone", SANDWICH, (8, 8, 32, 32)),
            box_row("50badmd5", HAMBURGER, (0, 0, 32, 24)),
            box_row("70rotated", HAMBURGER, ROTATED_BOX),
            box_row("95unlisted", HAMBURGER, (8, 8, 32, 32)),
            box_row("99pizza", PIZZA, (8, 8, 32, 32)),
            box_row("30flaky", HAMBURGER, (8, 8, 32, 32))[:-1],  # line 17: 12 fields
            ["30flaky", "xclick", SANDWICH, "1", "abc", "0.5", "0.1", "0.5", "0", "0", "0", "0", "0"],  # line 18
            ["30flaky", "xclick", SANDWICH, "1", "0.5", "0.4", "0.1", "0.5", "0", "0", "0", "0", "0"],  # line 19
            ["99pizza", "xclick", PIZZA, "1", "abc", "0.5", "0.1", "0.5", "0", "0", "0", "0", "0"],  # not wanted: not parsed
        ]
        self.boxes = [[image_id(row[0]), *row[1:]] for row in self.boxes]
        md5 = {"50badmd5": md5_base64(b"other bytes"), "60goodmd5": md5_base64(self.served["60goodmd5"])}
        images = [image_row(image_id(image), url[image], md5=md5.get(image, ""), rotation="90" if image == "70rotated" else "0.0")
                  for image in sorted(set(url) - {"v1valid"}, reverse=True)]
        images[0][-1] = ""  # unknown rotation (99pizza): read as 0
        self.meta = write_meta(root / "meta", CLASSES,
                               {TRAIN_BOXES: self.boxes,
                                "validation-annotations-bbox.csv": [box_row(image_id("v1valid"), SANDWICH, (16, 8, 48, 40))]},
                               {"train-images-boxable-with-rotation.csv": images,
                                "validation-images-with-rotation.csv": [image_row(image_id("v1valid"), url["v1valid"], subset="validation")]})

    def build(self, out, *options, classes=("Hamburger", "Sandwich")):
        return open_images.main(["--classes", *classes, "--meta", str(self.meta), "--out", str(self.root / out), *FAST, *options])

    def manifest(self, out):
        return readable(json.loads((self.root / out / "manifest.json").read_text()))

    def crops(self, out):
        folder = self.root / out / "images_cropped"
        return {readable(str(p.relative_to(folder))): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    def image(self, out, name, suffix=".jpg"):
        return self.root / out / "images" / f"{image_id(name)}{suffix}"


@pytest.fixture
def world(tmp_path):
    with FakeFlickr() as flickr:
        yield World(tmp_path, flickr)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float)


CROPS_WITH_FLAGS = {"hamburger/10normal_0.jpg", "hamburger/30flaky_0.jpg", "hamburger/70rotated_0.jpg",
                    "sandwich/10normal_1.jpg", "sandwich/60goodmd5_0.jpg", "sandwich/80flags_3.jpg", "sandwich/v1valid_0.jpg"}


def test_boxes_become_crops_of_their_pixels_in_their_class_folders(world):
    summary = world.build("out", "--drop-group-of", "--drop-depiction")
    crops = world.crops("out")
    assert set(crops) == CROPS_WITH_FLAGS
    assert summary["counts"] == {"hamburger": 3, "sandwich": 4} and summary["crops"] == 7
    red, blue = pixels(crops["hamburger/10normal_0.jpg"]), pixels(crops["sandwich/10normal_1.jpg"])
    assert red.shape == (24, 24, 3) and np.abs(red.mean(axis=(0, 1)) - RED).max() < 12
    assert blue.shape == (24, 16, 3) and np.abs(blue.mean(axis=(0, 1)) - BLUE).max() < 12
    assert world.flickr.requests["/99pizza.jpg"] == 0  # only images of the wanted classes are fetched


def test_http_failures_404_not_retried_500_retried_placeholder_skipped(world):
    world.build("out")
    requests, skipped = world.flickr.requests, {s["image"]: s["reason"] for s in world.manifest("out")["skipped_images"]}
    assert requests["/20notfound.jpg"] == 1 and skipped["20notfound"] == "not found (HTTP 404)"
    assert requests["/30flaky.jpg"] == 2 and "30flaky" not in skipped
    assert world.image("out", "30flaky").read_bytes() == world.served["30flaky"]
    assert requests["/40gone.jpg"] == 1 and skipped["40gone"] == "placeholder: photo no longer available"
    assert skipped["90broken"] == "undecodable image (UnidentifiedImageError)"
    kept = {readable(p.name) for p in (world.root / "out/images").iterdir()}
    assert kept == {"10normal.jpg", "30flaky.jpg", "60goodmd5.jpg", "70rotated.jpg", "80flags.jpg", "v1valid.jpg"}


def test_connection_drops_429_and_lasting_5xx_are_retried_with_a_limit(tmp_path):
    with FakeFlickr() as flickr:
        image = jpeg(rects=[((8, 8, 32, 32), RED)])
        urls = {"a_drop": flickr.serve("/a_drop.jpg", "drop", image), "b_busy": flickr.serve("/b_busy.jpg", 429, 429, image),
                "c_down": flickr.serve("/c_down.jpg", 503)}
        meta = write_meta(tmp_path / "meta", CLASSES, {TRAIN_BOXES: [box_row(image_id(i), HAMBURGER, (8, 8, 32, 32)) for i in urls]},
                          {"train-images-boxable-with-rotation.csv": [image_row(image_id(i), u) for i, u in urls.items()]})
        command = ["--classes", "hamburger", "--meta", str(meta), "--out", str(tmp_path / "out"), *FAST, "--retries", "2"]
        summary = open_images.main(command)
        assert dict(flickr.requests) == {"/a_drop.jpg": 2, "/b_busy.jpg": 3, "/c_down.jpg": 3}
        assert summary["counts"] == {"hamburger": 2}
        manifest = readable(json.loads((tmp_path / "out/manifest.json").read_text()))
        assert manifest["skipped_images"] == [{"image": "c_down", "reason": "download failed after 3 attempts: HTTP 503"}]
        flickr.reset_counts()
        open_images.main(command)  # a passing failure is tried again next run; a for-good one would not be
        assert dict(flickr.requests) == {"/c_down.jpg": 3}


def test_placeholder_known_by_its_hash(world, monkeypatch):
    monkeypatch.setattr(downloading, "PLACEHOLDER_SHA256", frozenset({hashlib.sha256(world.served["60goodmd5"]).hexdigest()}))
    world.build("out")
    assert {"image": "60goodmd5", "reason": "placeholder: photo no longer available"} in world.manifest("out")["skipped_images"]
    assert not world.image("out", "60goodmd5").exists()


def test_md5_mismatch_is_skipped_and_a_right_md5_kept(world):
    world.build("out")
    assert {"image": "50badmd5", "reason": "MD5 mismatch"} in world.manifest("out")["skipped_images"]
    assert not world.image("out", "50badmd5").exists() and not world.image("out", "50badmd5", ".jpg.part").exists()
    assert world.image("out", "60goodmd5").read_bytes() == world.served["60goodmd5"]
    assert "sandwich/60goodmd5_0.jpg" in world.crops("out")


def test_rotation_turns_the_crop_of_the_stored_pixels_counterclockwise(world):
    world.build("out")
    crop = pixels(world.crops("out")["hamburger/70rotated_0.jpg"])
    stored = Image.open(io.BytesIO(world.served["70rotated"])).convert("RGB").crop(ROTATED_BOX)  # EXIF orientation ignored
    expected = np.asarray(stored.rotate(90, expand=True), dtype=float)
    assert crop.shape == (32, 16, 3)  # 32 x 16 box, turned: 16 wide, 32 high
    assert np.abs(crop - expected).mean() < 12  # JPEG twice over sharp colour edges
    assert np.abs(crop - np.asarray(stored.rotate(-90, expand=True), dtype=float)).mean() > 60  # not clockwise
    assert np.abs(crop[:8, :8].mean(axis=(0, 1)) - GREEN).max() < 30  # the top-right quarter went to the top left


def test_option_filters_group_of_depiction_tiny(world):
    world.build("plain")
    plain = world.crops("plain")
    assert {"hamburger/80flags_0.jpg", "sandwich/80flags_1.jpg"} <= set(plain)
    world.build("strict", "--drop-group-of", "--drop-depiction")
    strict = world.crops("strict")
    assert set(plain) - set(strict) == {"hamburger/80flags_0.jpg", "sandwich/80flags_1.jpg"}
    boxes = [b for b in world.manifest("strict")["skipped_boxes"] if b.get("image") == "80flags"]
    assert boxes == [{"image": "80flags", "box": 0, "class": "hamburger", "reason": "group-of"},
                     {"image": "80flags", "box": 1, "class": "sandwich", "reason": "depiction"},
                     {"image": "80flags", "box": 2, "class": "hamburger", "reason": "tiny box"}]


def test_min_box_size_subset_and_per_class_cap(world):
    world.build("big", "--min-box-size", "0.2")
    assert "sandwich/80flags_3.jpg" not in world.crops("big")
    assert {"image": "80flags", "box": 3, "class": "sandwich", "reason": "smaller than --min-box-size 0.2"} in world.manifest("big")["skipped_boxes"]

    world.build("validation", "--subset", "validation")
    assert set(world.crops("validation")) == {"sandwich/v1valid_0.jpg"}
    assert world.manifest("validation")["dropped"]["not in --subset"] == {"hamburger": 8, "sandwich": 5}

    world.flickr.reset_counts()
    world.build("capped", "--max-per-class", "2")
    # The first two boxes per class by (ImageID, k) among images that download: 20notfound and
    # 40gone fail, so 30flaky and 60goodmd5 are fetched in their place and each class has two.
    assert set(world.crops("capped")) == {"hamburger/10normal_0.jpg", "hamburger/30flaky_0.jpg",
                                          "sandwich/10normal_1.jpg", "sandwich/60goodmd5_0.jpg"}
    assert set(world.flickr.requests) == {"/10normal.jpg", "/20notfound.jpg", "/40gone.jpg", "/photo_unavailable.png",
                                          "/30flaky.jpg", "/60goodmd5.jpg"}
    assert world.manifest("capped")["dropped"]["over --max-per-class"] == {"hamburger": 5, "sandwich": 3}
    world.build("capped_again", "--max-per-class", "2")
    assert world.crops("capped_again") == world.crops("capped")


def test_malformed_rows_are_reported_by_file_and_line(world):
    summary = world.build("out")
    rows = [b for b in world.manifest("out")["skipped_boxes"] if "file" in b]
    assert rows == [{"file": TRAIN_BOXES, "line": 17, "reason": "malformed row: 12 fields, the header has 13"},
                    {"file": TRAIN_BOXES, "line": 18, "reason": "malformed row: non-numeric coordinates"},
                    {"file": TRAIN_BOXES, "line": 19, "reason": "malformed row: XMin 0.5 XMax 0.4 YMin 0.1 YMax 0.5 (need 0 <= min < max <= 1)"}]
    assert summary["crops"] > 0


def test_manifest_records_sources_classes_counts_skips_and_crops(world):
    world.build("out", "--drop-group-of", "--drop-depiction")
    manifest = world.manifest("out")
    assert set(manifest) == {"sources", "options", "classes", "counts", "dropped", "skipped_images", "skipped_boxes", "crops", "versions"}
    assert manifest["sources"] == {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
                                   for p in world.meta.iterdir()}
    assert manifest["classes"] == [{"name": "Hamburger", "label": HAMBURGER, "folder": "hamburger"},
                                   {"name": "Sandwich", "label": SANDWICH, "folder": "sandwich"}]
    assert manifest["counts"] == {"hamburger": 3, "sandwich": 4}
    assert manifest["options"]["drop_group_of"] is True and "out" not in manifest["options"]
    assert manifest["skipped_images"] == [
        {"image": "20notfound", "reason": "not found (HTTP 404)"},
        {"image": "40gone", "reason": "placeholder: photo no longer available"},
        {"image": "50badmd5", "reason": "MD5 mismatch"},
        {"image": "90broken", "reason": "undecodable image (UnidentifiedImageError)"},
        {"image": "95unlisted", "reason": "not in image list"}]
    assert [(b.get("file") or b["image"], b.get("line", b.get("box")), b["reason"]) for b in manifest["skipped_boxes"]] == [
        ("80flags", 0, "group-of"), ("80flags", 1, "depiction"), ("80flags", 2, "tiny box"),
        (TRAIN_BOXES, 17, "malformed row: 12 fields, the header has 13"),
        (TRAIN_BOXES, 18, "malformed row: non-numeric coordinates"),
        (TRAIN_BOXES, 19, "malformed row: XMin 0.5 XMax 0.4 YMin 0.1 YMax 0.5 (need 0 <= min < max <= 1)")]
    crops = world.crops("out")
    assert {c["file"]: c["sha256"] for c in manifest["crops"]} == {f: hashlib.sha256(d).hexdigest() for f, d in crops.items()}
    assert set(manifest["versions"]) == {"python", "pillow", "numpy"}


def test_resume_fetches_only_what_is_missing(world):
    world.build("out")
    first_manifest, first_crops = (world.root / "out/manifest.json").read_bytes(), world.crops("out")
    world.image("out", "10normal").unlink()
    world.image("out", "10normal", ".jpg.part").write_bytes(b"\xff\xd8 half a download")
    (world.root / f"out/images_cropped/hamburger/{image_id('10normal')}_0.jpg.part").write_bytes(b"half a crop")
    world.flickr.reset_counts()
    world.build("out")
    assert dict(world.flickr.requests) == {"/10normal.jpg": 1}  # failures for good are remembered too
    assert not list((world.root / "out").rglob("*.part"))
    assert (world.root / "out/manifest.json").read_bytes() == first_manifest and world.crops("out") == first_crops
    world.flickr.reset_counts()
    world.build("out")
    assert not world.flickr.requests


def test_an_interrupted_run_leaves_nothing_half_written(world, monkeypatch):
    real_fetch = downloading.fetch

    def fetch(client, url, part, retries):
        if url.endswith("/60goodmd5.jpg"):
            part.write_bytes(b"\xff\xd8 half")
            raise KeyboardInterrupt
        return real_fetch(client, url, part, retries)

    monkeypatch.setattr(downloading, "fetch", fetch)
    with pytest.raises(KeyboardInterrupt):
        world.build("out", "--workers", "1")
    out = world.root / "out"
    assert not list(out.rglob("*.part")) and not (out / "manifest.json").exists()
    assert all(Image.open(p).size == (64, 48) for p in (out / "images").glob("*.jpg"))
    monkeypatch.setattr(downloading, "fetch", real_fetch)
    world.build("out")
    world.build("clean")
    assert world.crops("out") == world.crops("clean")


def test_two_builds_from_the_same_inputs_are_identical(world):
    world.build("a", "--drop-group-of")
    world.build("b", "--drop-group-of")
    assert world.crops("a") == world.crops("b") and len(world.crops("a")) == 8
    assert (world.root / "a/manifest.json").read_bytes() == (world.root / "b/manifest.json").read_bytes()


def test_class_names_match_case_insensitively_and_unknown_ones_list_close_matches(world):
    assert world.build("out", classes=("hamBURGER", "SANDWICH"))["counts"] == {"hamburger": 4, "sandwich": 5}
    with pytest.raises(SystemExit, match=r"Unknown class 'Hamburgr'\. Close matches: Hamburger"):
        world.build("x", classes=("Hamburgr", "Sandwich"))
    with pytest.raises(SystemExit, match=r"Unknown class 'sandwiches'\. Close matches: Sandwich"):
        world.build("x", classes=("sandwiches",))
    with pytest.raises(SystemExit, match=r"Unknown class 'sandw'\. Close matches: .*Submarine sandwich"):
        world.build("x", classes=("sandw",))
    assert not (world.root / "x").exists()


def test_command_line_prints_a_summary_and_progress_on_stderr(world):
    command = [sys.executable, "-m", "training.open_images", "--classes", "Hamburger", "Sandwich", "--meta", str(world.meta),
               "--out", str(world.root / "out"), "--source", "flickr", "--rate", "1000", "--backoff", "0.01"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"] == {"hamburger": 4, "sandwich": 5}
    assert "downloading" in done.stderr and "cropping" in done.stderr


def test_a_display_name_two_labels_share_is_refused_and_a_label_id_picks_one(world, tmp_path):
    twin = "/m/0twin"  # a second label that Open Images' descriptions would also call "Sandwich"
    meta = write_meta(tmp_path / "twins", {**CLASSES, twin: "Sandwich"}, {TRAIN_BOXES: world.boxes},
                      {"train-images-boxable-with-rotation.csv": list(csv.reader((world.meta / "train-images-boxable-with-rotation.csv").open()))[1:]})

    def build(*classes):
        return open_images.main(["--classes", *classes, "--meta", str(meta), "--out", str(tmp_path / "out"), *FAST])

    with pytest.raises(SystemExit, match=rf"Class name 'sandwich' is the display name of 2 labels: {SANDWICH}, {twin}\. "
                                         rf"Ask for one by its label, e\.g\. --classes {SANDWICH}"):
        build("Hamburger", "sandwich")
    with pytest.raises(SystemExit, match=rf"Two classes would share one folder: Sandwich \({SANDWICH}\), Sandwich \({twin}\)"):
        build(SANDWICH, twin)
    assert build("Hamburger", SANDWICH)["counts"] == {"hamburger": 4, "sandwich": 4}  # v1valid is not in this list


# --- where images come from --------------------------------------------------------------

def test_the_mirror_serves_its_subsets_by_image_id_and_flickr_the_rest(tmp_path):
    original = jpeg(size=(128, 96), rects=[((32, 24, 96, 72), BLUE)])  # Flickr's original
    rescaled = jpeg(size=(64, 48), rects=[((16, 12, 48, 36), BLUE)])  # the mirror's copy: rescaled, other bytes
    subsets = {"a_train": "train", "b_valid": "validation", "c_test": "test", "d_gone": "train", "e_other": "extra"}
    with FakeFlickr() as flickr, FakeFlickr() as mirror:
        rows = []
        for image, subset in subsets.items():
            rows.append(image_row(image_id(image), flickr.serve(f"/{image}.jpg", original), md5=md5_base64(original), subset=subset))
            mirror.serve(f"/{subset}/{image_id(image)}.jpg", rescaled)
        mirror.serve(f"/test/{image_id('c_test')}.jpg", 503, rescaled)
        mirror.serve(f"/train/{image_id('d_gone')}.jpg", 404)
        meta = write_meta(tmp_path / "meta", CLASSES, {TRAIN_BOXES: [box_row(image_id(i), SANDWICH, (32, 24, 96, 72), size=(128, 96))
                                                                     for i in subsets]},
                          {"train-images-boxable-with-rotation.csv": rows})

        def build(out, *options):
            return open_images.main(["--classes", "Sandwich", "--meta", str(meta), "--out", str(tmp_path / out), *QUICK,
                                     "--mirror-url", mirror.url + "/", *options])

        build("out")  # the mirror is the default
        assert readable(dict(mirror.requests)) == {"/train/a_train.jpg": 1, "/validation/b_valid.jpg": 1, "/test/c_test.jpg": 2,
                                         "/train/d_gone.jpg": 1}
        assert dict(flickr.requests) == {"/e_other.jpg": 1}  # no mirror for that subset
        images = tmp_path / "out/images"
        # OriginalMD5 describes Flickr's original, so the mirror's rescaled copy is kept unchecked.
        assert (images / f"{image_id('a_train')}.jpg").read_bytes() == rescaled
        assert (images / f"{image_id('e_other')}.jpg").read_bytes() == original
        manifest = readable(json.loads((tmp_path / "out/manifest.json").read_text()))
        assert manifest["skipped_images"] == [{"image": "d_gone", "reason": "not found (HTTP 404)"}]
        assert manifest["options"]["source"] == "mirror"
        crops = {c["file"]: c for c in manifest["crops"]}
        assert crops["sandwich/a_train_0.jpg"]["xyxy"] == [16, 12, 48, 36] and crops["sandwich/e_other_0.jpg"]["xyxy"] == [32, 24, 96, 72]
        crop = pixels((tmp_path / f"out/images_cropped/sandwich/{image_id('a_train')}_0.jpg").read_bytes())
        assert crop.shape == (24, 32, 3) and np.abs(crop.mean(axis=(0, 1)) - BLUE).max() < 12

        # Resumed from Flickr: what is on disk stays; the mirror's failure for good is one of the
        # mirror's, so Flickr is tried for it.
        flickr.reset_counts(), mirror.reset_counts()
        assert build("out", "--source", "flickr")["counts"] == {"sandwich": 5}
        assert dict(flickr.requests) == {"/d_gone.jpg": 1} and not mirror.requests

        flickr.serve("/a_train.jpg", rescaled)  # on Flickr, bytes OriginalMD5 does not describe are refused
        build("flickr", "--source", "flickr")
        skipped = readable(json.loads((tmp_path / "flickr/manifest.json").read_text()))["skipped_images"]
        assert {"image": "a_train", "reason": "MD5 mismatch"} in skipped


def test_the_cap_is_met_from_the_images_that_download_whatever_order_they_finish_in(world):
    summary = world.build("three", "--max-per-class", "3")
    # hamburger: 20notfound (404) and 50badmd5 (MD5) fail, 80flags' second box is tiny; sandwich: 40gone is gone.
    assert set(world.crops("three")) == {"hamburger/10normal_0.jpg", "hamburger/30flaky_0.jpg", "hamburger/70rotated_0.jpg",
                                         "sandwich/10normal_1.jpg", "sandwich/60goodmd5_0.jpg", "sandwich/80flags_1.jpg"}
    assert summary["counts"] == {"hamburger": 3, "sandwich": 3}
    assert world.flickr.requests["/90broken.jpg"] == 0  # not needed: the classes were full before it
    world.build("one_by_one", "--max-per-class", "3", "--workers", "1")
    assert world.crops("one_by_one") == world.crops("three")
    assert world.build("short", "--max-per-class", "10")["counts"] == {"hamburger": 4, "sandwich": 5}  # all there is


# --- the dataset published like the model -------------------------------------------------

DATASET = "team/hamburger-or-sandwich"


def test_push_to_hub_publishes_the_crops_as_an_imagefolder_dataset_with_their_licences(world):
    def push(out, *options):
        command = [sys.executable, "-m", "training.open_images", "--meta", str(world.meta), "--out", str(world.root / out),
                   *FAST, "--push-to-hub", DATASET, *options]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, **hub_env(hub.url, world.root / "hf")})
        assert done.returncode == 0, done.stderr[-3000:]
        commit = hub.datasets[DATASET]["refs"]["main"]
        assert f"Pushed to datasets/{DATASET} at commit {commit}" in done.stdout
        assert f"--data hf://datasets/{DATASET}@{commit} " in done.stdout
        return commit, readable(hub.datasets[DATASET]["commits"][commit])

    with FakeHub() as hub:
        first, files = push("out", "--classes", "Hamburger", "Sandwich", "--drop-group-of", "--drop-depiction", "--private")
        assert hub.datasets[DATASET]["private"] is True and DATASET not in hub.repos  # a dataset repo, not a model one
        crops = world.crops("out")
        assert {name: data for name, data in files.items() if name.endswith(".jpg")} == crops
        assert set(files) == set(crops) | {"metadata.jsonl", "manifest.json", "README.md"}
        assert files["manifest.json"] == (world.root / "out/manifest.json").read_bytes()

        rows = [readable(json.loads(line)) for line in files["metadata.jsonl"].decode().splitlines()]
        assert [row["file_name"] for row in rows] == sorted(crops)
        assert rows[[row["file_name"] for row in rows].index("sandwich/60goodmd5_0.jpg")] == {
            "file_name": "sandwich/60goodmd5_0.jpg", "ImageID": "60goodmd5", "rotation": 0,
            "box": {"XMin": 0.25, "XMax": 0.75, "YMin": 8 / 48, "YMax": 40 / 48},
            "class": "Sandwich", "source_class": "Sandwich", "source_label": SANDWICH, "Subset": "train", "downloaded_from": "flickr",
            "License": "https://creativecommons.org/licenses/by/2.0/", "Author": "Some One",
            "AuthorProfileURL": "https://www.flickr.com/people/someone/", "Title": "Photo 60goodmd5, with a comma",
            "OriginalURL": f"{world.flickr.url}/60goodmd5.jpg", "OriginalLandingURL": "https://www.flickr.com/photos/someone/60goodmd5"}

        front = hub.validated_cards[-1]  # the card's front matter, as the Hub validated it
        assert front["license"] == ["cc-by-4.0", "cc-by-2.0"] and front["source_datasets"] == ["open-images"]
        assert front["task_categories"] == ["image-classification"] and front["size_categories"] == ["n<1K"]
        card = files["README.md"].decode()
        assert "**Annotations** (boxes and labels): by Google LLC, under CC BY 4.0." in card
        assert "| https://creativecommons.org/licenses/by/2.0/ | 7 |" in card and "| Hamburger | `/m/0cdn1` | `hamburger/` | 3 | — |" in card

        # Another build pushed to the same repo: its commit holds that build only; the first stays pinned.
        second, files = push("sandwiches", "--classes", "Sandwich")
        assert second != first and not any(name.startswith("hamburger/") for name in files)
        assert "hamburger/10normal_0.jpg" in readable(hub.datasets[DATASET]["commits"][first])
        assert hub.unknown == []
