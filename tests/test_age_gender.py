"""Age & gender: dataset readers and cleaning, face detection and straightening, the three
networks learning from drawn faces, and the live endpoint."""

import csv
import json
import math
import pickle
import re
import shutil
import subprocess
import sys
from datetime import date

import numpy as np
import pytest
from conftest import ROOT, page_text, running_app
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw
from skimage import data

from core import faces
from core.bundle import load_bundle
from training import age_gender
from training.datasets import face_datasets, flagged, imdb_wiki, utkface
from training.datasets.face_records import GENDERS
from training.synthetic.drawn_faces import draw_face, matlab_datenum, write_imdb_wiki_mat

# --- readers and cleaning ----------------------------------------------------------------------

def wiki_row(path, born, taken, gender=1.0, score=3.0, second=float("nan")):
    return {"dob": matlab_datenum(born) if isinstance(born, date) else born, "photo_taken": taken,
            "full_path": path, "gender": gender, "face_score": score, "second_face_score": second}


def test_matlab_birth_dates_match_the_real_file_names():
    # wiki.mat's first row: dob 723671, path 17/10000217_1981-05-05_2009.jpg
    assert imdb_wiki.birth_year(723671) == 1981
    assert imdb_wiki.birth_year(matlab_datenum(date(1999, 12, 31))) == 1999


def test_imdb_wiki_cleaning_keeps_exactly_the_clean_rows(tmp_path):
    rows = [
        wiki_row("01/a.jpg", date(1980, 3, 1), 2010, gender=1.0),              # kept: Male, 30
        wiki_row("01/b.jpg", date(1990, 11, 30), 2000, gender=0.0),            # kept: Female, 10
        wiki_row("02/c.jpg", date(1915, 1, 1), 2015, gender=0.0, score=1.5),   # kept: Female, 100 (edge)
        wiki_row("02/d.jpg", date(1980, 1, 1), 2010, score=-math.inf),         # no face
        wiki_row("02/e.jpg", date(1980, 1, 1), 2010, score=0.7),               # low face score
        wiki_row("03/f.jpg", date(1980, 1, 1), 2010, second=2.5),              # second face
        wiki_row("03/g.jpg", date(1980, 1, 1), 2010, gender=float("nan")),     # unknown gender
        wiki_row("03/h.jpg", date(1850, 1, 1), 2010),                          # age 160
        wiki_row("04/i.jpg", date(2012, 1, 1), 2010),                          # age -2
        wiki_row("04/j.jpg", 0.0, 2010),                                       # dob 0: no such date
        wiki_row("04/k.jpg", date(1980, 1, 1), 2010, score=-math.inf, second=1.0),  # counted once, first reason
    ]
    mat = write_imdb_wiki_mat(tmp_path / "wiki_crop" / "wiki.mat", rows)
    records, report = imdb_wiki.read_imdb_wiki(mat)
    kept = [(r.path.relative_to(tmp_path / "wiki_crop").as_posix(), GENDERS[r.gender], r.age) for r in records]
    assert kept == [("01/a.jpg", "Male", 30.0), ("01/b.jpg", "Female", 10.0), ("02/c.jpg", "Female", 100.0)]
    assert report.as_dict()["dropped"] == {"age_out_of_range": 2, "bad_date_of_birth": 1, "low_face_score": 1,
                                           "no_face": 2, "second_face": 1, "unknown_gender": 1}
    assert "wiki.mat row 8 (03/h.jpg)" in report.examples["age_out_of_range"]

    # Through the data folder: images on disk are checked, missing ones counted as well.
    for relative in ("01/a.jpg", "01/b.jpg"):
        (tmp_path / "wiki_crop" / relative).parent.mkdir(parents=True, exist_ok=True)
        draw_face(np.random.default_rng(0), "Male", 30, 48).save(tmp_path / "wiki_crop" / relative)
    records, reports = face_datasets.read_faces(tmp_path)
    assert len(records) == 2 and reports["wiki"]["kept"] == 2
    assert reports["wiki"]["dropped"]["missing_image"] == 1 and reports["wiki"]["dropped"]["no_face"] == 2


def test_utkface_names_including_malformed_ones(tmp_path):
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    names = {
        "26_1_2_20170116174525125.jpg.chip.jpg": ("Female", 26.0),
        "40_0_0_20170117135433394.jpg": ("Male", 40.0),
        "100_0_0_20170112213500903.jpg.chip.jpg": ("Male", 100.0),
        "39_1_20170116174525125.jpg.chip.jpg": "malformed_name",  # real: race field missing
        "61_1_20170109150557335.jpg.chip.jpg": "malformed_name",  # real: race field missing
        "24_0_1_20170116220224657 .jpg.chip.jpg": "malformed_name",  # stray space
        "x_0_1_20170116220224657.jpg": "malformed_name",
        "53__0_20170116184028385.jpg": "malformed_name",
        "61_3_2_20170109150557335.jpg": "unknown_gender",
        "116_0_0_20170120134921760.jpg.chip.jpg": "age_out_of_range",
    }
    for name in names:
        (folder / name).write_bytes(b"jpeg")
    (folder / "readme.txt").write_text("not an image name")
    records, report = utkface.read_utkface(folder)
    kept = {r.path.name: (GENDERS[r.gender], r.age) for r in records}
    assert kept == {name: value for name, value in names.items() if isinstance(value, tuple)}
    assert report.as_dict()["dropped"] == {"malformed_name": 5, "unknown_gender": 1, "age_out_of_range": 1}


def test_both_gender_codes_map_to_the_same_labels(tmp_path):
    mat = write_imdb_wiki_mat(tmp_path / "wiki.mat", [wiki_row("m.jpg", date(1980, 1, 1), 2000, gender=1.0),
                                                      wiki_row("f.jpg", date(1980, 1, 1), 2000, gender=0.0)])
    wiki, _ = imdb_wiki.read_imdb_wiki(mat)
    assert [GENDERS[r.gender] for r in wiki] == ["Male", "Female"]
    assert GENDERS[utkface.parse_utkface_name("20_0_0_1.jpg")[1]] == "Male"
    assert GENDERS[utkface.parse_utkface_name("20_1_0_1.jpg")[1]] == "Female"


def test_a_folder_without_either_dataset_says_what_is_expected(tmp_path):
    with pytest.raises(SystemExit, match="wiki_crop/wiki.mat, imdb_crop/imdb.mat nor a UTKFace/"):
        face_datasets.find_sources(tmp_path)


# --- straightening and detection -----------------------------------------------------------------

BACKGROUND = (40, 90, 40)


def face_on_plain_ground(size=300, face=140):
    """A drawn face (an ellipse of it) on a plain background, centred: (picture, centre)."""
    picture = Image.new("RGB", (size, size), BACKGROUND)
    mask = Image.new("L", (face, face), 0)
    ImageDraw.Draw(mask).ellipse([0, 0, face - 1, face - 1], fill=255)
    offset = (size - face) // 2
    picture.paste(draw_face(np.random.default_rng(3), "Female", 50, face), (offset, offset), mask)
    return picture, (size / 2, size / 2)


def face_pixels(image) -> int:
    diff = np.abs(np.asarray(image, np.int16) - np.array(BACKGROUND)).sum(axis=2)
    return int((diff > 60).sum())


@pytest.mark.parametrize("angle", [30.0, -75.0, 179.0])
def test_straightening_restores_a_turned_face_and_cuts_nothing_off(angle):
    picture, centre = face_on_plain_ground()
    turned = picture.rotate(angle, resample=Image.Resampling.BICUBIC, center=centre, fillcolor=BACKGROUND)
    side = 170  # the face is 140 wide: the crop holds all of it
    reference = faces.rotated_crop(picture, centre, side, 0)
    straightened = faces.rotated_crop(turned, centre, side, -angle)
    error = np.abs(np.asarray(straightened, np.float32) - np.asarray(reference, np.float32)).mean()
    assert error < 6, error  # two resamplings of a sharp drawing; a wrong turn gives > 30
    wrong = np.abs(np.asarray(faces.rotated_crop(turned, centre, side, angle), np.float32)
                   - np.asarray(reference, np.float32)).mean()
    assert wrong > 3 * error
    # Nothing of the face is lost: all of its pixels are in the crop, none touches the border.
    assert face_pixels(straightened) == pytest.approx(face_pixels(reference), rel=0.03)
    border = np.concatenate([np.asarray(straightened)[[0, -1]].reshape(-1, 3),
                             np.asarray(straightened)[:, [0, -1]].reshape(-1, 3)])
    assert (np.abs(border.astype(int) - BACKGROUND).sum(axis=1) < 30).all()


def test_straightening_turns_the_whole_picture_so_corners_are_never_padding():
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 200, (400, 400, 3), dtype=np.uint8))
    for angle in (45.0, -90.0, 180.0):
        crop = np.asarray(faces.rotated_crop(picture, (200, 200), 180, angle, fill=(255, 0, 255)))
        assert not ((crop[..., 0] > 250) & (crop[..., 1] < 5) & (crop[..., 2] > 250)).any()


def test_wrap_around_angles():
    assert faces.angle_error(179, -179) == pytest.approx(2)
    assert faces.wrap_angle(190) == pytest.approx(-170)
    # Both encodings decode a face at +179 and one at -179 as neighbours.
    from training.age_gender import rotation_bins, rotation_targets

    bins = rotation_bins(180, 10)
    for angle in (179.0, -179.0):
        one_hot = np.eye(len(bins))[rotation_targets([angle], "bins", bins)]
        assert faces.angle_error(faces.decode_rotation(one_hot, {"loss": "bins", "bin_centres": bins}), 180) <= 5
        sincos = rotation_targets([angle], "sincos", None)
        assert faces.angle_error(faces.decode_rotation(sincos, {"loss": "sincos"}), angle) < 1e-6


ASTRONAUT_FACE = (223.5, 123.0)  # her face centre in skimage's astronaut photo (bench/face_photos.json)


def astronaut(angle):
    """skimage's astronaut photo (a real face, shipped in the wheel) turned by `angle` (PIL,
    expand=True), and where her face centre lands."""
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    turned = photo.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    return turned, faces.rotate_point(ASTRONAUT_FACE, angle, (256, 256), (turned.width / 2, turned.height / 2))


def group_photo(side=320):
    """Three real faces side by side: the astronaut, the cameraman (in profile), and the astronaut
    mirrored and turned 20 degrees clockwise; (picture, each panel's (left, right))."""
    from skimage import data

    astronaut_photo = Image.fromarray(data.astronaut())
    panels = [astronaut_photo, Image.fromarray(data.camera()).convert("RGB"),
              astronaut_photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(-20)]
    picture = Image.new("RGB", (3 * side, side))
    for i, panel in enumerate(panels):
        picture.paste(panel.resize((side, side)), (i * side, 0))
    return picture, [(i * side, (i + 1) * side) for i in range(3)]


@pytest.mark.parametrize("angle", [0, 25, -40])
def test_the_detector_finds_the_real_face_and_nothing_else_on_a_tilted_photo(angle):
    photo, centre = astronaut(angle)
    found = faces.detect_faces(photo)
    assert len(found) == 1, [(f.box, f.confidence) for f in found]  # not the wall, the badges or the helmet
    face = found[0]
    assert math.dist(face.centre, centre) < 20, (face.centre, centre)
    assert 70 < face.side < 140  # her face is about 100 px
    assert face.confidence >= faces.MIN_CONFIDENCE


@pytest.mark.parametrize("angle", [0, 25, -40])
def test_the_tilt_from_the_eyes_matches_a_known_turn(angle):
    photo, _ = astronaut(angle)
    face = faces.detect_faces(photo)[0]
    assert face.eyes[0][0] < face.eyes[1][0] or abs(angle) > 45  # left, then right, as seen
    assert faces.angle_error(face.eye_tilt, angle) < 10, face.eye_tilt  # her eyes are level upright


def test_a_flagged_photo_is_cropped_and_straightened_as_the_app_does(tmp_path):
    """A picture flagged on the tab (--flags) is a whole photo, not a dataset crop: training
    finds its face 1 with the app's detector, crops it at the crop scale and straightens it by the
    eye line, as the app does before reading gender and age."""
    photo, centre = astronaut(25)
    (tmp_path / "images").mkdir()
    photo.save(tmp_path / "images" / "astronaut.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps(
        {"file_name": "images/astronaut.png", "task": "age_gender", "correction": {"gender": "Female", "age": None}}))
    flag, = flagged.read_flagged(tmp_path, "age_gender", "age_gender", list(GENDERS)).flags
    record = age_gender.flagged_face(flag, crop_scale=1.25)
    assert (record.gender, record.age) == (GENDERS.index("Female"), None)  # trains the gender head only
    assert math.dist(record.centre, centre) < 20 and faces.angle_error(record.tilt, 25) < 10
    assert 1.25 * 70 < record.side < 1.25 * 140
    upright = age_gender.turned(age_gender.contexts([record], 96, None).decoded(0)[0], 0.0, 96)
    found = faces.detect_faces(Image.fromarray(upright).resize((192, 192)))
    assert found and abs(found[0].eye_tilt) < 10, [f.eye_tilt for f in found]
    # A picture without a face got no gender or age on the tab: its correction is of nothing.
    Image.fromarray(data.coffee()).save(tmp_path / "images" / "coffee.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps(
        {"file_name": "images/coffee.png", "task": "age_gender", "correction": {"gender": "Male", "age": 30}}))
    flag, = flagged.read_flagged(tmp_path, "age_gender", "age_gender", list(GENDERS)).flags
    assert age_gender.flagged_face(flag, crop_scale=1.25) is None


def test_eye_tilt_is_the_eye_line_counter_clockwise_over_the_whole_circle():
    assert faces.eye_tilt((10, 50), (40, 50)) == pytest.approx(0)
    assert faces.eye_tilt((10, 50), (40, 20)) == pytest.approx(45)  # right eye higher: turned counter-clockwise
    assert faces.eye_tilt((10, 50), (40, 80)) == pytest.approx(-45)
    assert abs(faces.eye_tilt((40, 50), (10, 50))) == pytest.approx(180)  # upside down


def test_a_group_photo_gives_every_face_most_confident_first():
    picture, panels = group_photo()
    found = faces.detect_faces(picture)
    assert sorted(int(f.centre[0] // 320) for f in found) == [0, 1, 2], [(f.box, f.confidence) for f in found]
    assert [f.confidence for f in found] == sorted((f.confidence for f in found), reverse=True)
    turned = next(f for f in found if f.centre[0] > panels[2][0])
    assert faces.angle_error(turned.eye_tilt, -20) < 10
    assert len(faces.detect_faces(picture, max_faces=2)) == 2


def test_the_detector_finds_nothing_in_pictures_without_faces():
    from skimage import data

    ramp = np.linspace(0, 255, 300)
    picture = Image.fromarray(np.stack([np.tile(ramp, (200, 1))] * 3, axis=2).astype(np.uint8))
    assert faces.detect_faces(picture) == []
    assert faces.detect_faces(Image.fromarray(data.coffee())) == []
    assert faces.detect_faces(Image.fromarray(data.chelsea())) == []  # a cat's face is not a person's
    assert faces.detect_faces(Image.new("RGB", (16, 16), "white")) == []


def test_detector_weights_load_as_numpy_arrays_only(tmp_path):
    """The wheel's weights are joblib pickles; ours are read refusing anything but arrays."""
    import joblib
    import lz4.frame

    assert all(isinstance(w, np.ndarray) for w in faces._wheel_weights("pnet.lz4"))
    joblib.dump([np.zeros(3), shutil.rmtree], tmp_path / "evil.lz4", compress="lz4")
    with pytest.raises(pickle.UnpicklingError, match="shutil"):
        faces._arrays_from_joblib(lz4.frame.decompress((tmp_path / "evil.lz4").read_bytes()), "evil.lz4")


# --- training --------------------------------------------------------------------------------

def test_rotation_network_learns_the_tilt_and_wraps_around(age_gender_trained):
    path, metrics = age_gender_trained
    baseline = metrics["baselines"]["rotation_mae_best_constant"]
    assert baseline > 60  # uniform over the full circle: about 90
    assert metrics["rotation_mae_degrees"] < 0.35 * baseline, metrics
    # The loaded bundle, on new faces: one face at +179 and at -179 reads as the same tilt.
    bundle = load_bundle(path, "age_gender")
    size = bundle.input_size[0]
    predictions = {}
    for tilt in (179.0, -179.0, 90.0):
        image = draw_face(np.random.default_rng(11), "Male", 45, 96, tilt)
        crop = faces.rotated_crop(image, (48, 48), faces.inner_side(96, 96), 0, size)
        outputs = bundle.network("rotation")(np.asarray(crop, np.float32)[None])
        predictions[tilt] = float(faces.decode_rotation(outputs, bundle.metadata["rotation"])[0])
    assert faces.angle_error(predictions[179.0], predictions[-179.0]) < 40, predictions
    assert faces.angle_error(predictions[179.0], 180) < 45 and faces.angle_error(predictions[90.0], 90) < 45, predictions


def test_gender_and_age_heads_learn_far_better_than_baselines(age_gender_trained):
    path, metrics = age_gender_trained
    b = metrics["baselines"]
    assert metrics["gender_accuracy"] > 0.8 and b["gender_accuracy_majority"] <= 0.55, metrics
    assert metrics["age_mae"] < 0.5 * b["age_mae_train_mean"], metrics
    assert metrics["age_rmse"] < 0.6 * b["age_rmse_train_mean"], metrics
    metadata = json.loads((path / "task.json").read_text())
    assert metadata["labels"] == ["Female", "Male"]
    assert metadata["age"]["rmse"] == pytest.approx(metrics["age_rmse"])
    assert set(metadata["networks"]) == {"rotation", "gender_age"}


def test_dropped_rows_are_counted_by_reason_in_the_report(age_gender_trained):
    path, _ = age_gender_trained
    metadata = json.loads((path / "task.json").read_text())
    report = metadata["dataset"]["report"]
    assert report["wiki"]["kept"] == 160 and report["wiki"]["dropped"] == {}
    assert report["utkface"]["dropped"] == {"malformed_name": 1, "unknown_gender": 1}
    assert report["unreadable_images_count"] == 1 and "25_0_0_" in report["unreadable_images"][0]
    card = (path / "README.md").read_text()
    assert "malformed name 1" in card and "| rotation MAE (degrees) |" in card


def test_predict_straightens_a_tilted_face(age_gender_trained):
    path, _ = age_gender_trained
    bundle = load_bundle(path, "age_gender")
    image = draw_face(np.random.default_rng(5), "Female", 30, 160, -35.0)
    from tasks import age_gender as task

    results = task.analyse(bundle, image, "network")
    assert faces.angle_error(results[0].tilt_network, -35) < 30, results[0].tilt_network
    annotated, gallery, tilt, gender, age, _, _ = task.predict(bundle, image)
    assert annotated.size == image.size and len(gallery) >= 1 and gallery[0][0].size == (160, 160)
    assert "network" in tilt
    assert set(gender) == {"Female", "Male"} and sum(gender.values()) == pytest.approx(1, abs=1e-4)
    assert age.endswith(f" ± {bundle.metadata['age']['rmse']:.0f} years")


# --- the live endpoint -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(age_gender_trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("app") / "models"
    shutil.copytree(age_gender_trained[0], root / "age_gender")
    with running_app(root) as url:
        yield url, Client(url, verbose=False), root / "age_gender"


def test_live_endpoint_on_a_drawn_face_turned_upside_down(app, tmp_path):
    url, client, _ = app
    photo = tmp_path / "tilted.png"
    # A face MTCNN finds in the picture turned by 180 degrees (the bundle searches 0 and 180): without a
    # face, the tab now answers nothing (seed 8's drawing is found at no angle).
    draw_face(np.random.default_rng(9), "Male", 60, 200, 150.0).save(photo)
    annotated, gallery, tilt, gender, age, summary, records = client.predict(handle_file(str(photo)),
                                                                             api_name="/age_gender")
    assert Image.open(annotated["path"] if isinstance(annotated, dict) else annotated).size == (200, 200)
    crop = gallery[0]["image"]
    assert Image.open(crop["path"] if isinstance(crop, dict) else crop).size == (160, 160)
    network = float(re.search(r"network ([+-][0-9.]+)°", tilt).group(1))
    assert faces.angle_error(network, 150) < 45, tilt
    assert {c["label"] for c in gender["confidences"]} == {"Female", "Male"}
    assert " ± " in age and age.endswith("years")
    assert "Face 1" in summary
    assert "| tilt error, rotation network (degrees) |" in page_text(url)


FACE_KEYS = {"box", "confidence", "tilt_network", "tilt_eyes", "tilt_used", "tilt_by", "gender", "age", "age_rmse"}


def test_live_endpoint_returns_the_tilted_astronaut_as_face_1_with_both_tilts(app, tmp_path):
    _, client, _ = app
    photo, centre = astronaut(25)
    photo.save(tmp_path / "astronaut.png")
    *_, summary, records = client.predict(handle_file(str(tmp_path / "astronaut.png")), api_name="/age_gender")
    assert len(records) == 1 and set(records[0]) == FACE_KEYS, records
    face = records[0]
    left, top, width, height = face["box"]
    assert left < centre[0] < left + width and top < centre[1] < top + height, (face["box"], centre)
    assert face["confidence"] >= faces.MIN_CONFIDENCE
    assert faces.angle_error(face["tilt_eyes"], 25) < 10
    # This bundle has no held-out error for the eyes: it straightens by the network unless asked.
    assert face["tilt_by"] == "network" and face["tilt_used"] == face["tilt_network"]
    assert set(face["gender"]) == {"Female", "Male"} and sum(face["gender"].values()) == pytest.approx(1, abs=1e-3)
    assert face["age_rmse"] == pytest.approx(json.loads((app[2] / "task.json").read_text())["age"]["rmse"], abs=0.05)
    assert "eyes +" in summary and "straightened by the network" in summary

    *_, by_eyes = client.predict(handle_file(str(tmp_path / "astronaut.png")), "eyes", api_name="/age_gender")
    assert by_eyes[0]["tilt_by"] == "eyes" and by_eyes[0]["tilt_used"] == by_eyes[0]["tilt_eyes"]
    assert by_eyes[0]["box"] == face["box"] and by_eyes[0]["tilt_network"] == face["tilt_network"]
    returns = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/age_gender"]["returns"]
    assert "faces" in [r["label"] for r in returns]


def test_live_endpoint_on_a_group_photo_gives_one_result_per_face(app, tmp_path):
    _, client, _ = app
    picture, _ = group_photo()
    picture.save(tmp_path / "group.png")
    _, gallery, *_, summary, records = client.predict(handle_file(str(tmp_path / "group.png")),
                                                              api_name="/age_gender")
    assert len(records) == len(gallery) == 3 and "3 faces found" in summary
    assert sorted(int((r["box"][0] + r["box"][2] / 2) // 320) for r in records) == [0, 1, 2]
    assert [r["confidence"] for r in records] == sorted((r["confidence"] for r in records), reverse=True)
    # The caption rounds the tilt to a degree, the record to a tenth: 178.54 shows as +179 beside 178.5.
    captions = [re.fullmatch(r"Face (\d): ([+-]\d+)°", g["caption"]) for g in gallery]
    assert [int(c[1]) for c in captions] == [1, 2, 3], gallery
    assert all(abs(int(c[2]) - r["tilt_used"]) <= 0.55 for c, r in zip(captions, records)), (gallery, records)


def test_face_boxes_are_in_the_uploaded_pictures_pixels(app, tmp_path):
    """A phone photo: stored sideways with an EXIF orientation, and larger than the 2048 px the
    decoder keeps: the box is still in the upright upload's pixels."""
    _, client, _ = app
    photo, centre = astronaut(25)
    upright = photo.crop((0, 0, photo.width, 520)).resize((photo.width * 4, 520 * 4))  # 2728 x 2080
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif, quality=90)
    *_, records = client.predict(handle_file(str(tmp_path / "phone.jpg")), api_name="/age_gender")
    left, top, width, height = records[0]["box"]
    assert left < 4 * centre[0] < left + width and top < 4 * centre[1] < top + height, (records[0]["box"], centre)
    assert 280 < max(width, height) < 560  # her face, about 100 px in the photo, times 4


def test_live_endpoint_without_a_face_says_so_and_bad_files_get_clear_errors(app, tmp_path):
    _, client, _ = app
    ramp = np.linspace(0, 255, 240)
    blank = tmp_path / "no_face.png"
    Image.fromarray(np.stack([np.tile(ramp, (180, 1))] * 3, axis=2).astype(np.uint8)).save(blank)
    *_, gender, age, summary, records = client.predict(handle_file(str(blank)), api_name="/age_gender")
    assert "No face found" in summary and "no gender or age" in summary  # and none is given
    assert age == "" and records == [] and not (gender or {}).get("confidences")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"<html>not an image</html>")
    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(str(junk)), api_name="/age_gender")
    assert "No face found" in client.predict(handle_file(str(blank)), api_name="/age_gender")[-2]


def test_the_face_crop_is_calibrated_on_the_training_faces(age_gender_trained):
    """The app crops a detected face at the scale measured between the detector's box and the
    training crop: on new drawn faces, the app's crop is the training crop's size."""
    face = json.loads((age_gender_trained[0] / "task.json").read_text())["face"]
    assert face["crop_scale_calibrated_on"] >= 10, face
    rng = np.random.default_rng(21)
    ratios = []
    for i in range(40):
        image = draw_face(rng, GENDERS[i % 2], int(rng.integers(15, 85)), 72)
        found = faces.detect_faces(image, max_faces=1)
        if found:
            ratios.append(found[0].side * face["crop_scale"] / faces.inner_side(72, 72))
    assert len(ratios) >= 5 and abs(np.median(ratios) - 1) < 0.1, ratios


@pytest.mark.slow
def test_a_from_scratch_backbone_validates_what_it_learns_and_both_tilts_are_measured(faces_data, tmp_path):
    """Seen with a from-scratch Xception: training gender accuracy climbing to 1.0 while validation
    stayed at the majority share with a loss of ln 2 — BatchNorm's moving averages (Keras' 0.99)
    were still mostly their initial values after a few dozen steps, so in inference mode every
    face gave the same features. With Keras' default momentum this very run stays at 0.5 / 0.693
    every epoch (measured); fitting.match_batchnorm fixes it. The same run measures the eye line's
    tilt on the held-out faces it turned, beside the network's.

    The run is --deterministic (the same checkout gives the same figures) and trains all ten epochs.
    Its 32 validation and 32 test faces make single figures coarse, so the margins come from the
    spread over the recipe's seed (2026-12-07; seeds 1337, 1, 2, 3): best validation gender accuracy
    0.75-0.91, held-out age MAE 5.8-11.4 years under the training mean's, eyes found on 31-53 % of the
    turned faces with 1.7-3.0 degrees of error against 18-22 for the network. Run without
    --deterministic and with early stopping, one run in four stopped after six epochs at 0.66."""
    out = tmp_path / "scratch"
    # A process of its own: op determinism holds for a whole process, and this worker's other tests
    # must not inherit it.
    run = subprocess.run([sys.executable, "-m", "training.age_gender", "--data", str(faces_data), "--out", str(out),
                          "--backbone", "mobilenetv2", "--weights", "none", "--image-size", "32", "--epochs", "10",
                          "--patience", "50", "--fine-tune-epochs", "0", "--rotation-backbone", "small",
                          "--rotation-epochs", "1", "--batch-size", "32", "--max-angle", "45", "--angle-bin", "5",
                          "--deterministic"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "task.json").read_text())["metrics"]
    with open(out / "logs" / "gender_age-1.csv", newline="") as handle:
        history = [(float(row["val_gender_accuracy"]), float(row["val_gender_loss"])) for row in csv.DictReader(handle)]
    accuracies, losses = zip(*history)
    assert len(history) == 10 and len(set(accuracies)) > 1, history
    assert max(abs(loss - math.log(2)) for loss in losses) > 0.1, history
    assert max(accuracies) >= 0.65, history  # the majority share is 0.5
    assert metrics["age_mae"] < metrics["baselines"]["age_mae_train_mean"] - 3, metrics
    tilt = metrics["tilt"]
    assert tilt["eyes_found"] >= 0.2, tilt  # MTCNN finds about half the drawn faces
    assert tilt["eyes_mae"] < 8 and tilt["eyes_mae"] < tilt["network_mae_where_eyes_found"], tilt
    face = json.loads((out / "task.json").read_text())["face"]
    assert face["tilt"]["default"] == "eyes" and face["tilt"]["eyes_mae"] == pytest.approx(tilt["eyes_mae"])
