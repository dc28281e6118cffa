"""`python -m predict`: every image named (files, folders, lists) gets its row, bad files their
reason, and the rows say what the tab's own predict says."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import predict
from core.bundle import load_bundle
from core.images import ImageError, load_image
from tasks import age_gender, caries, dog_breed, hashtags


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def photos(dogs_data, tmp_path):
    """A folder with images (one a PNG), a subfolder, a hidden file, a broken JPEG and a text file;
    beside it a list naming one more image, the subfolder again, and a missing file."""
    originals = sorted((dogs_data / "Images").rglob("*.jpg"))[::20][:5]
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(originals[0], folder / "a.jpg")
    Image.open(originals[1]).save(folder / "b.png")
    shutil.copy(originals[2], folder / "sub" / "c.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.md").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\x00\x00")
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(originals[3], other / "d.jpg")
    listing = other / "list.txt"
    listing.write_text("# the hashtag course's imgTest.txt\nd.jpg\n\n../photos/sub\nmissing.jpg\n")
    return folder, listing


def test_a_folder_and_a_list_give_one_row_per_image_as_the_tab_predicts(dog_bundle, photos, models_with, tmp_path):
    folder, listing = photos
    out = tmp_path / "out" / "breeds.csv"
    code = predict.main(["dog_breed", str(folder), str(listing), "--out", str(out),
                         "--models-dir", str(models_with(dog_breed=dog_bundle)), "--batch-size", "2", "--quiet"])
    assert code == 0
    rows = read_rows(out)
    # In the order given: the folder (recursive, sorted, hidden files left out), then the list; the
    # subfolder the list names again is not repeated; the missing file keeps its row.
    names = [row["path"].replace(str(tmp_path) + "/", "") for row in rows]
    assert names == ["photos/a.jpg", "photos/b.png", "photos/broken.jpg", "photos/notes.md", "photos/sub/c.jpg",
                     "elsewhere/d.jpg", "elsewhere/missing.jpg"]
    errors = {name: row["error"] for name, row in zip(names, rows) if row["error"]}
    assert set(errors) == {"photos/broken.jpg", "photos/notes.md", "elsewhere/missing.jpg"}
    for name, reason in errors.items():  # the reason is the one the tab would give
        with pytest.raises(ImageError) as refused:
            load_image(tmp_path / name)
        assert reason == str(refused.value)
    assert "truncated" in errors["photos/broken.jpg"] and "does not exist" in errors["elsewhere/missing.jpg"]

    bundle = load_bundle(dog_bundle)
    for row in rows:
        if row["error"]:
            assert row["label"] == row["scores"] == ""
            continue
        expected, dog = dog_breed.predict(bundle, row["path"])  # the tab's own predict, one image at a time
        assert dog is None and row["dog_probability"] == ""  # a synthetic bundle: no ImageNet head, no dog probability
        got = json.loads(row["scores"])
        assert list(got) == list(expected)
        np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-5)
        assert row["label"] == next(iter(expected))


def test_without_a_model_it_says_how_to_get_one(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    code = predict.main(["dog_breed", str(tmp_path), "--out", str(tmp_path / "x.csv"), "--models-dir",
                         str(tmp_path / "models"), "--hub-config", str(tmp_path / "none.json")])
    assert code == 1
    assert "python -m training.dog_breed" in capsys.readouterr().err


def test_hashtags_at_a_chosen_threshold_match_the_tab(hashtag_bundle, harrison_data, tmp_path):
    bundle = load_bundle(hashtag_bundle)
    images = sorted((harrison_data / "instagram_dataset").rglob("*.jpg"))[:12]
    out = tmp_path / "tags.csv"
    counts = predict.predict_files(hashtags, bundle, images, out, batch_size=5, threshold=0.3, progress=False)
    assert counts["images"] == len(images)
    for row in read_rows(out):
        if row["error"]:
            continue
        tags, line = hashtags.predict(bundle, row["path"], 0.3)
        assert row["hashtags"] == line
        assert list(json.loads(row["scores"])) == list(tags)


def test_caries_writes_each_mask_beside_the_csv_as_the_tab_computes_it(caries_bundle, caries_data, tmp_path):
    bundle = load_bundle(caries_bundle)
    images = sorted((caries_data / "images").iterdir())[:4]
    out = tmp_path / "radiographs.csv"
    predict.predict_files(caries, bundle, images, out, batch_size=3, progress=False)
    rows = read_rows(out)
    assert [row["path"] for row in rows] == [str(p) for p in images]
    for row in rows:
        from core.images import load_image
        from core.segmentation import letterbox

        picture = load_image(row["path"])  # the tab's own path, one image at a time
        pixels, box = letterbox(picture, bundle.input_size[0])
        masks, table, summary = caries.from_output(bundle, picture, box, bundle.network("segmenter")(pixels[None])[0])
        assert row["summary"] == summary
        for name, count, _ in table:
            assert int(row[f"pixels {name}"]) == count
        for k, label in enumerate(bundle.labels):
            written = np.asarray(Image.open(out.parent / row[f"mask {label}"]))
            assert written.shape == masks.shape[:2]
            assert np.array_equal(written > 0, masks[..., k])


def test_age_and_gender_gives_one_row_per_face_and_one_for_a_picture_without(age_gender_trained, tmp_path):
    from skimage import data

    bundle = load_bundle(age_gender_trained[0])
    astronaut, coffee = tmp_path / "astronaut.png", tmp_path / "coffee.png"
    Image.fromarray(data.astronaut()).rotate(20, expand=True).save(astronaut)
    Image.fromarray(data.coffee()).save(coffee)
    out = tmp_path / "faces.csv"
    predict.predict_files(age_gender, bundle, [astronaut, coffee], out, progress=False)
    rows = read_rows(out)
    *_, records = age_gender.predict(bundle, astronaut)
    faces = [row for row in rows if row["path"] == str(astronaut)]
    assert len(faces) == len(records) >= 1
    for row, record in zip(faces, records):
        assert [int(row[k]) for k in ("left", "top", "width", "height")] == record["box"]
        assert float(row["age"]) == pytest.approx(record["age"], abs=0.11)
        assert row["gender"] == max(record["gender"], key=record["gender"].get)
        # Each P(label) column is the answer's probability of that label, and `gender` the likeliest.
        for label in bundle.labels:
            assert float(row[f"P({label})"]) == pytest.approx(record["gender"][label], abs=1e-4), (label, row)
        assert row["gender"] == max(bundle.labels, key=lambda label: float(row[f"P({label})"]))
        assert float(row["tilt_used"]) == pytest.approx(record["tilt_used"], abs=0.11)
    (none,) = [row for row in rows if row["path"] == str(coffee)]  # no face: no gender, no age
    assert none["face"] == none["gender"] == none["age"] == "" and none["note"] == age_gender.NO_FACE
