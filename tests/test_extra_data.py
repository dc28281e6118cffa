"""--flags (formerly --extra-data): corrections flagged in the app (an imagefolder: images/ + metadata.jsonl) join the
training split only; every line that cannot be used is skipped and counted by reason."""

import json
import shutil

import numpy as np
import pytest
from conftest import TINY_TRAINING, write_flags
from PIL import Image

from training import caries, dog_breed, inputs, movie_genres, multilabel
from training.datasets import flagged
from training.datasets.movie_posters import read_posters


def test_dog_breed_flags_join_the_training_split_and_are_counted(dog_comparison, dogs_data):
    out, flags, (train, val, test), _ = dog_comparison
    dataset = json.loads((out / "task.json").read_text())["dataset"]
    extra = dataset["report"]["extra_data"]
    # Four written by hand, one flagged through the live server.
    assert extra["extra_examples"] == 5 and extra["lines"] == 11
    assert extra["dropped"] == {"other_task": 1, "unknown_label": 1, "no_correction": 1, "malformed_json": 1,
                                "missing_image": 1, "held_out_image": 1}
    assert extra["examples"]["malformed_json"][0].startswith("line 9: not JSON")
    assert "'Poodle'" in extra["examples"]["unknown_label"][0]
    # The training split grew by the five; validation and test are the dataset's own.
    assert dataset["split_sizes"] == {"train": len(train) + 5, "validation": len(val), "test": len(test)}
    assert "5 extra examples from `dog_breed`" in (out / "README.md").read_text()
    # The content hash covers the flags: it is not the dataset's alone.
    assert dataset["sha256"] != inputs.fingerprint(list((dogs_data / "Images").rglob("*.jpg")), dogs_data)


@pytest.mark.slow
def test_multilabel_flags_join_the_training_split_and_are_counted(poster_data, tmp_path):
    rows, genres, _ = read_posters(poster_data)
    usable = [(path, labels) for _, path, labels in rows
              if str(path) not in inputs.scan([p for _, p, _ in rows], poster_data).unreadable]
    train, val, test = ([usable[i] for i in part] for part in multilabel.random_split(len(usable), 1337))
    good = [(path, [genres[i] for i in labels]) for path, labels in train[:3]]
    write_flags(tmp_path / "flags", "movie_genres", good, held_out=[(test[0][0], [genres[i] for i in test[0][1]])],
                bad_labels=[["Telenovela", genres[0]], []])
    out = tmp_path / "movie_genres"
    metrics = movie_genres.main(["--data", str(poster_data), "--out", str(out), "--flags", str(tmp_path / "flags"),
                                 "--backbone", "conv4-gap", "--weights", "none", *TINY_TRAINING])
    dataset = json.loads((out / "task.json").read_text())["dataset"]
    extra = dataset["report"]["extra_data"]
    assert extra["extra_examples"] == 3
    assert extra["dropped"] == {"other_task": 1, "unknown_label": 1, "empty_correction": 1, "no_correction": 1,
                                "malformed_json": 1, "missing_image": 1, "held_out_image": 1}
    assert dataset["split_sizes"] == {"train": len(train) + 3, "validation": len(val), "test": len(test)}
    # It learned: micro-F1 well above predicting the most frequent genres for every poster.
    assert metrics["f1_micro"] > metrics["baselines"]["most_frequent_f1_micro"] + 0.2, metrics["f1_micro"]


def test_a_run_interrupted_with_other_flags_is_not_resumed(dogs_data, tmp_path, monkeypatch):
    """The flag folder grows while a run is away: resuming it with what was flagged since, or with
    another folder, would train on other data. The run says so instead."""
    from training import publishing

    train = sorted((dogs_data / "Images" / "n02085620-Chihuahua").iterdir())[-3:]
    table = write_flags(tmp_path / "flags", "dog_breed", [(train[0], "Chihuahua")])
    command = ["--data", str(dogs_data), "--out", str(tmp_path / "out"), "--flags", str(tmp_path / "flags"),
               *TINY_TRAINING, "--epochs", "1", "--backbone", "conv4-gap", "--weights", "none"]

    def cut_off(*args, **kwargs):
        raise SystemExit("cut off before the bundle")

    # The first run trains (its work folder is made at its first stage) and is cut off before it writes.
    monkeypatch.setattr(publishing, "release", cut_off)
    with pytest.raises(SystemExit, match="cut off"):
        dog_breed.main(command)
    with table.open("a") as handle:  # the app flags one more picture
        shutil.copy(train[1], tmp_path / "flags" / "images" / "more.jpg")
        handle.write(json.dumps({"file_name": "images/more.jpg", "task": "dog_breed", "correction": "Chihuahua"}) + "\n")
    with pytest.raises(SystemExit, match=r"other settings \(extra_data_sha256\).*--restart"):
        dog_breed.main(command)
    shutil.copytree(tmp_path / "flags", tmp_path / "other")
    with pytest.raises(SystemExit, match=r"other settings \(extra_data, extra_data_sha256\)"):
        dog_breed.main([*command[:5], str(tmp_path / "other"), *command[6:]])


def picture(path, color=(200, 50, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path)
    return path


def test_the_reader_reads_each_kind_of_correction_and_names_what_it_skips(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        picture(tmp_path / "images" / name)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    rows = [
        {"file_name": "images/a.png", "task": "age_gender", "correction": {"gender": "Male", "age": 31}},
        {"file_name": "images/b.png", "task": "age_gender", "correction": {"gender": "Female", "age": None}},
        {"file_name": "images/c.png", "task": "age_gender", "correction": {"gender": "female", "age": 30}},
        {"file_name": "images/c.png", "task": "age_gender", "correction": {"gender": "Male", "age": 130}},
        {"file_name": "images/c.png", "task": "age_gender", "correction": {"gender": "Male", "age": "30"}},
        {"file_name": "images/c.png", "task": "age_gender", "correction": {"gender": None, "age": None}},
        {"file_name": "../elsewhere.png", "task": "age_gender", "correction": {"gender": "Male", "age": 3}},
        {"file_name": "images/broken.png", "task": "age_gender", "correction": {"gender": "Male", "age": 3}},
        {"file_name": "images/a.png", "task": "age_gender", "correction": {"gender": "Female", "age": 33}},
        ["not", "an", "object"],
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n\n")
    read = flagged.read_flagged(tmp_path, "age_gender", "age_gender", ["Female", "Male"])
    # The latest correction of a picture wins; a gender without an age is kept (it trains the gender).
    assert [(f.line, f.path.name, f.correction) for f in read.flags] == [(2, "b.png", (0, None)), (9, "a.png", (0, 33.0))]
    assert read.lines == 10 and dict(read.dropped.counts) == {
        "unknown_label": 1, "age_out_of_range": 1, "malformed_correction": 1, "no_correction": 1, "malformed_row": 2,
        "unreadable_image": 1, "superseded": 1}
    assert "line 1: images/a.png is corrected again on line 9" in read.dropped.examples["superseded"]
    assert read.describe().startswith(f"--flags {tmp_path}: 2 flagged correction(s) of 10 line(s)")

    with pytest.raises(SystemExit, match="no metadata.jsonl"):
        flagged.read_flagged(tmp_path / "images", "age_gender", "age_gender", ["Female", "Male"])
    with pytest.raises(SystemExit, match="no such folder"):
        flagged.read_flagged(tmp_path / "nowhere", "dog_breed", "single", ["Beagle"])


def test_each_recipe_names_its_extra_data_for_what_it_reads_and_still_reads_the_old_name(capsys):
    from training import age_gender, hashtags, sandwich

    for recipe in (dog_breed, sandwich, movie_genres, hashtags, age_gender):
        assert recipe.parser().parse_args(["--data", "d", "--out", "o", "--flags", "hf://datasets/a/b@c"]).extra_data \
            == "hf://datasets/a/b@c"
    assert caries.parser().parse_args(["--data", "d", "--out", "o", "--extra-radiographs", "more"]).extra_data.name \
        == "more"
    with pytest.raises(SystemExit):
        caries.parser().parse_args(["--data", "d", "--out", "o", "--flags", "flagged/caries"])  # caries reads no flags
    capsys.readouterr()
    old = dog_breed.parser().parse_args(["--data", "d", "--out", "o", "--extra-data", "flagged"])
    assert str(old.extra_data) == "flagged"
    assert "--extra-data is deprecated: use --flags" in capsys.readouterr().err


def test_caries_takes_annotated_radiographs_and_says_why_not_flags(tmp_path):
    write_flags(tmp_path / "flags", "caries", [(picture(tmp_path / "x.png"), None)])
    with pytest.raises(SystemExit, match="a flag carries no mask: caries cannot learn from it.*training.caries_masks"):
        caries.read_extra(tmp_path / "flags", ["caries"])
    extra = tmp_path / "annotated"
    picture(extra / "images" / "r1.png")
    Image.fromarray(np.eye(16, dtype=np.uint8)).save(picture(extra / "masks" / "r1.png"))
    (extra / "classes.json").write_text(json.dumps({"classes": ["background", "filling"]}))
    with pytest.raises(SystemExit, match=r"classes \['filling'\].*--data has \['caries'\]"):
        caries.read_extra(extra, ["caries"])
    pairs, overlapping, dropped = caries.read_extra(extra, ["filling"])
    assert [p.image.name for p in pairs] == ["r1.png"] and not overlapping and not dropped.counts


@pytest.mark.slow
def test_a_recipe_trains_on_flags_pinned_on_the_hub(dogs_data, tmp_path):
    """--flags hf://datasets/OWNER/NAME@COMMIT: flags as a running app pushes them (a folder per
    flags file under each task's), downloaded at that commit, the task's files only, recorded by
    repo and commit; held-out figures untouched."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    from support.hub_server import FakeHub, hub_env

    from training.datasets.stanford_dogs import read_stanford_dogs, readable_breed

    folders, (train, val, test), _, _ = read_stanford_dogs(dogs_data, False, 1337)
    breeds = [readable_breed(f) for f in folders]
    write_flags(tmp_path / "store", "dog_breed", [(s.path, breeds[s.label]) for s in train[:2]])
    files = {f"dog_breed/2025-01-01-0123456789ab/{p.relative_to(tmp_path / 'store').as_posix()}": p.read_bytes()
             for p in (tmp_path / "store").rglob("*") if p.is_file()}
    files["hashtags/2025-01-02-ba9876543210/metadata.jsonl"] = b'{"file_name": "images/a.png", "task": "hashtags"}\n'
    files["hashtags/2025-01-02-ba9876543210/images/a.png"] = picture(tmp_path / "a.png").read_bytes()
    out = tmp_path / "dog_breed"
    with FakeHub() as hub:
        commit = hub.commit("team/flags", files, "dataset")
        reference = f"hf://datasets/team/flags@{commit}"
        done = subprocess.run([sys.executable, "-m", "training.dog_breed", "--data", str(dogs_data), "--out", str(out),
                               "--flags", reference, "--backbone", "conv4-gap", "--weights", "none",
                               *TINY_TRAINING], cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **hub_env(hub.url, tmp_path / "hf")})
        assert done.returncode == 0, done.stderr[-3000:]
        assert hub.unknown == [] and not [path for path in hub.downloads() if "hashtags/" in path]
    assert f"--flags {reference}: 2 flagged correction(s) of 6 line(s)" in done.stdout
    dataset = json.loads((out / "task.json").read_text())["dataset"]
    extra = dataset["report"]["extra_data"]
    assert (extra["folder"], extra["repo"], extra["commit"], extra["extra_examples"]) == (reference, "team/flags", commit, 2)
    assert extra["dropped"] == {"other_task": 1, "no_correction": 1, "malformed_json": 1, "missing_image": 1}
    assert dataset["split_sizes"] == {"train": len(train) + 2, "validation": len(val), "test": len(test)}
    assert f"2 extra examples from `team/flags@{commit}`" in (out / "README.md").read_text()
