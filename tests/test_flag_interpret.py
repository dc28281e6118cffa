"""Interpret and Flag through the live app (gradio_client), and the flags pushed to a loopback Hub."""

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta

import numpy as np
import pytest
import yaml
from conftest import ROOT, running_app
from gradio_client import Client, handle_file
from PIL import Image
from support.hub_server import FakeHub, hub_env

from core import flags

KEYS = ["file_name", "task", "answer", "correction", "comment", "origin", "time"]


@pytest.fixture(scope="module")
def models_root(dog_bundle, hashtag_bundle, age_gender_trained, caries_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("flag_app") / "models"
    for task, bundle in [("dog_breed", dog_bundle), ("hashtags", hashtag_bundle),
                         ("age_gender", age_gender_trained[0]), ("caries", caries_bundle)]:
        shutil.copytree(bundle, root / task)
    return root


@pytest.fixture(scope="module")
def app(models_root):
    """One server for the module, its flags in a folder of its own (--flag-dir): (client, flag folder, url)."""
    flag_dir = models_root.parent / "flags"
    with running_app(models_root, args=["--flag-dir", str(flag_dir)]) as url:
        yield Client(url, verbose=False), flag_dir, url


def dog_photo(dogs_data, breed="n02110185-Siberian_husky", index=0):
    return sorted((dogs_data / "Images" / breed).glob("*.jpg"))[index]


def example(models_root, task, index=0):
    return sorted((models_root / task / "examples").iterdir())[index]


def differs(shown_path, picture_path) -> float:
    """Mean absolute difference per channel between what came back and the picture sent."""
    shown = np.asarray(Image.open(shown_path).convert("RGB"), np.float32)
    picture = np.asarray(Image.open(picture_path).convert("RGB"), np.float32)
    assert shown.shape == picture.shape, (shown.shape, picture.shape)
    return float(np.abs(shown - picture).mean())


def lines(folder):
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


# --- Interpret --------------------------------------------------------------------------------

def test_interpret_shows_the_heatmap_over_the_dog_photo(app, dogs_data):
    client, *_ = app
    photo = dog_photo(dogs_data)
    heatmap = client.predict(handle_file(str(photo)), api_name="/dog_breed_interpret")
    assert differs(heatmap, photo) > 5  # the picture's size, with a colour map over it


def test_interpret_a_chosen_label_of_a_multilabel_answer(app, models_root):
    client, *_ = app
    picture = example(models_root, "hashtags")
    answer, _ = client.predict(handle_file(str(picture)), 0.0, api_name="/hashtags")
    second = answer["confidences"][1]["label"].removesuffix(" (below threshold)")
    top = client.predict(handle_file(str(picture)), None, api_name="/hashtags_interpret")
    chosen = client.predict(handle_file(str(picture)), second, api_name="/hashtags_interpret")
    assert differs(top, picture) > 5 and differs(chosen, picture) > 5
    assert differs(chosen, top) > 2  # another label, another map
    with pytest.raises(Exception, match="'not-a-tag' is not one of this model's labels"):
        client.predict(handle_file(str(picture)), "not-a-tag", api_name="/hashtags_interpret")


def test_interpret_the_gender_of_a_chosen_face(app, models_root, tmp_path):
    from skimage import data

    client, *_ = app
    picture = tmp_path / "astronaut.png"  # a real face, which the detector finds
    Image.fromarray(data.astronaut()).save(picture)
    heatmap = client.predict(handle_file(str(picture)), 1, None, api_name="/age_gender_interpret")
    assert Image.open(heatmap).size == (160, 160)  # the straightened crop, shown at least 160 px
    with pytest.raises(Exception, match="There is no face 4: .* Pick a face from 1 to"):
        client.predict(handle_file(str(picture)), 4, None, api_name="/age_gender_interpret")


# --- Flag -------------------------------------------------------------------------------------

def check_line(line, folder, task, upload, models_root):
    assert list(line) == KEYS
    assert line["task"] == task and line["origin"] == f"local bundle {task}"  # not the server's models folder
    assert line["file_name"].startswith("images/") and (folder / line["file_name"]).read_bytes() == upload.read_bytes()
    assert abs(datetime.fromisoformat(line["time"]).utcoffset()) == timedelta(0)


def test_flags_land_as_an_imagefolder_per_task(app, models_root, dogs_data):
    client, flag_dir, url = app
    # Dog breed: the ranked answer as shown, and the right breed.
    photo = dog_photo(dogs_data, "n02085620-Chihuahua")
    answer = client.predict(handle_file(str(photo)), api_name="/dog_breed")
    said = client.predict(handle_file(str(photo)), answer, "Chihuahua", "it is a chihuahua", api_name="/dog_breed_flag")
    assert said.startswith("Flagged, thank you")
    [line] = lines(flag_dir / "dog_breed")
    check_line(line, flag_dir / "dog_breed", "dog_breed", photo, models_root)
    assert line["correction"] == "Chihuahua" and line["comment"] == "it is a chihuahua"
    assert line["answer"] == {c["label"]: c["confidence"] for c in answer["confidences"]}
    assert list(line["answer"].values()) == sorted(line["answer"].values(), reverse=True)
    # The extension says what the bytes are (the synthetic Stanford Dogs, like the real one, has PNGs named .jpg).
    extension = {"JPEG": ".jpg", "PNG": ".png"}[Image.open(photo).format]
    assert line["file_name"].endswith(extension) and line["file_name"] in said
    # Stored on the server, not served by it.
    for stored in (flag_dir / "dog_breed" / line["file_name"], flag_dir / "dog_breed" / "metadata.jsonl"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={stored}", timeout=10)
        assert refused.value.code in (403, 404)

    # Hashtags: the right tags, as a list in the model's order.
    picture = example(models_root, "hashtags")
    labels = json.loads((models_root / "hashtags" / "task.json").read_text())["labels"]
    tags, _ = client.predict(handle_file(str(picture)), 0.5, api_name="/hashtags")
    client.predict(handle_file(str(picture)), tags, [labels[3], labels[0]], "", api_name="/hashtags_flag")
    [line] = lines(flag_dir / "hashtags")
    check_line(line, flag_dir / "hashtags", "hashtags", picture, models_root)
    assert line["correction"] == [labels[0], labels[3]] and line["comment"] == ""

    # Age & gender: the faces as shown, the right gender and age.
    picture = example(models_root, "age_gender")
    records = client.predict(handle_file(str(picture)), None, api_name="/age_gender")[6]
    client.predict(handle_file(str(picture)), records, "Male", 41, "", api_name="/age_gender_flag")
    [line] = lines(flag_dir / "age_gender")
    check_line(line, flag_dir / "age_gender", "age_gender", picture, models_root)
    assert line["answer"] == records and line["correction"] == {"gender": "Male", "age": 41}

    # Caries: the summary as shown, and a comment only.
    picture = example(models_root, "caries")
    summary = client.predict(handle_file(str(picture)), 0.5, 0.5, api_name="/caries")[2]
    client.predict(handle_file(str(picture)), summary, "misses the lesion on the left", api_name="/caries_flag")
    [line] = lines(flag_dir / "caries")
    check_line(line, flag_dir / "caries", "caries", picture, models_root)
    assert line["answer"] == summary and line["correction"] is None


def test_a_flag_that_cannot_be_saved_says_why(app, models_root, dogs_data):
    client, flag_dir, _ = app
    saved = (flag_dir / "dog_breed" / "metadata.jsonl").read_bytes()
    photo = dog_photo(dogs_data, index=3)
    with pytest.raises(Exception, match="Run the model first"):
        client.predict(handle_file(str(photo)), None, None, "", api_name="/dog_breed_flag")
    answer = client.predict(handle_file(str(photo)), api_name="/dog_breed")
    with pytest.raises(Exception, match="Poodle"):  # not a label of this model
        client.predict(handle_file(str(photo)), answer, "Poodle", "", api_name="/dog_breed_flag")
    with pytest.raises(Exception, match="Pick face 1's right gender"):
        client.predict(handle_file(str(example(models_root, "age_gender"))), [], None, 30, "",
                       api_name="/age_gender_flag")
    assert (flag_dir / "dog_breed" / "metadata.jsonl").read_bytes() == saved


def test_concurrent_flags_all_land_whole(app, dogs_data):
    client, flag_dir, _ = app
    before = len(lines(flag_dir / "dog_breed")) if (flag_dir / "dog_breed" / "metadata.jsonl").exists() else 0
    photos = [dog_photo(dogs_data, index=i) for i in (1, 2)]
    answer = {"label": "Beagle", "confidences": [{"label": "Beagle", "confidence": 0.6}]}
    jobs = [client.submit(handle_file(str(p)), answer, "Siberian husky", f"flag {i}", api_name="/dog_breed_flag")
            for i, p in enumerate(photos)]
    assert all(job.result().startswith("Flagged") for job in jobs)
    landed = lines(flag_dir / "dog_breed")[before:]
    assert sorted(line["comment"] for line in landed) == ["flag 0", "flag 1"]
    for line in landed:
        photo = photos[int(line["comment"][-1])]
        assert (flag_dir / "dog_breed" / line["file_name"]).read_bytes() == photo.read_bytes()


def test_with_flagging_off_there_is_no_flag_control(dog_bundle, models_with):
    root = models_with(dog_breed=dog_bundle)
    with running_app(root, env={"FLAGGING": "off"}) as url:
        client = Client(url, verbose=False)
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert "/dog_breed_interpret" in endpoints and "/dog_breed_flag" not in endpoints
        config = client.config
    buttons = [c["props"].get("value") for c in config["components"] if c["type"] == "button"]
    assert "Interpret" in buttons and "Flag" not in buttons
    assert not any("on this server" in str(c["props"].get("value")) for c in config["components"])


def test_flag_dir_from_the_environment_and_off_switches(monkeypatch, tmp_path):
    monkeypatch.delenv("FLAGGING", raising=False)
    monkeypatch.setenv("FLAG_DIR", str(tmp_path / "env"))
    assert flags.flag_root() == tmp_path / "env"
    assert flags.flag_root(tmp_path / "option") == tmp_path / "option"  # --flag-dir wins
    assert flags.flag_root(enabled=False) is None  # --no-flagging
    monkeypatch.setenv("FLAGGING", "off")
    assert flags.flag_root(tmp_path / "option") is None
    monkeypatch.delenv("FLAG_DIR")
    monkeypatch.delenv("FLAGGING")
    assert flags.flag_root() == ROOT / "flagged"


# --- to the Hub ---------------------------------------------------------------------------------

def test_push_uploads_the_flags_as_a_dataset_repo(tmp_path, dogs_data):
    folder = tmp_path / "flagged" / "dog_breed"
    target = flags.Flagging(folder, "dog_breed", "team/dog-breed@" + "a" * 40, ("Beagle", "Chihuahua"))
    photos = [dog_photo(dogs_data, index=i) for i in (0, 1)]
    flags.save(target, photos[0], {"Beagle": 0.9}, "Chihuahua", "")

    def push(*options):
        result = subprocess.run([sys.executable, "-m", "core.flags", "push", str(folder), "--repo", "team/flags",
                                 *options], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, **hub_env(hub.url, tmp_path / "hf")})
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    with FakeHub() as hub:
        said = push()
        repo = hub.datasets["team/flags"]
        assert f"Pushed 1 flag to datasets/team/flags at commit {repo['refs']['main']}" in said
        assert repo["private"]  # users' pictures: private unless --public
        files = {path: data for path, data in repo["commits"][repo["refs"]["main"]].items()}
        [line] = lines(folder)
        assert set(files) == {"README.md", "metadata.jsonl", line["file_name"]}
        assert files[line["file_name"]] == photos[0].read_bytes()
        assert files["metadata.jsonl"] == (folder / "metadata.jsonl").read_bytes()
        front = yaml.safe_load(files["README.md"].decode().split("---")[1])
        assert front["pretty_name"] == "Flagged answers of the dog_breed tab" and front["size_categories"] == ["n<1K"]
        assert not (folder / "README.md").exists()  # the card goes to the Hub, made at each push

        # A second flag, pushed again: both images, both lines, the card made again.
        flags.save(target, photos[1], {"Beagle": 0.7}, "Beagle", "second")
        assert "Pushed 2 flags" in push()
        from huggingface_hub import HfApi

        listed = HfApi(endpoint=hub.url, token="hf_loopback_token").list_repo_files("team/flags", repo_type="dataset")
        assert sorted(listed) == sorted(["README.md", "metadata.jsonl", *(line["file_name"] for line in lines(folder))])
        card = hub.datasets["team/flags"]["commits"][hub.datasets["team/flags"]["refs"]["main"]]["README.md"].decode()
        assert "| `dog_breed` | Chihuahua | 1 |" in card and "| `dog_breed` | Beagle | 1 |" in card
        assert hub.unknown == []


def test_a_flag_is_stored_with_the_extension_of_its_decoded_format(tmp_path):
    """The upload's name says nothing of its bytes: a PPM sent as x.html is stored (and pushed) as
    .ppm, a JPEG sent as a.png as .jpg."""
    target = flags.Flagging(tmp_path / "dog_breed", "dog_breed", "local bundle dog_breed", ("Beagle",))
    page, named_png = tmp_path / "x.html", tmp_path / "a.png"
    photo = Image.open("/usr/share/darknet/data/dog.jpg")
    photo.reduce(8).save(page, "PPM")
    photo.reduce(8).save(named_png, "JPEG")
    for upload, extension in ((page, ".ppm"), (named_png, ".jpg")):
        record = flags.save(target, upload, {"Beagle": 1.0}, None, "")
        assert record["file_name"].endswith(extension), record["file_name"]
        assert (target.folder / record["file_name"]).read_bytes() == upload.read_bytes()
    assert [p.suffix for p in sorted((target.folder / "images").iterdir(), key=lambda p: p.suffix)] == [".jpg", ".ppm"]


def test_save_refuses_what_is_not_an_image(tmp_path):
    target = flags.Flagging(tmp_path / "dog_breed", "dog_breed", "here", ("Beagle",))
    with pytest.raises(flags.FlagError):
        flags.save(target, tmp_path, None, None, "")
    page = tmp_path / "page.jpg"
    page.write_bytes(b"<html>not a picture</html>")
    with pytest.raises(Exception, match="not an image"):
        flags.save(target, page, {"Beagle": 1.0}, None, "")
    assert not (tmp_path / "dog_breed" / "metadata.jsonl").exists()


def test_a_full_flag_directory_refuses_flags_and_the_rest_goes_on(app, dogs_data):
    """A public server's visitors cannot fill its disk with flags: past FLAG_QUOTA_MB (1000 MB by
    default) a flag is refused with a message that says so; answers go on, and once the owner has
    cleared the folder, flags land again."""
    client, flag_dir, _ = app
    photo = dog_photo(dogs_data, index=4)
    answer = client.predict(handle_file(str(photo)), api_name="/dog_breed")
    before = (flag_dir / "dog_breed" / "metadata.jsonl").read_bytes()
    filler = flag_dir / "caries" / "filler.bin"  # another task's folder: the quota is the directory's
    filler.parent.mkdir(parents=True, exist_ok=True)
    with open(filler, "wb") as handle:
        handle.truncate(int(flags.QUOTA_MB * 2**20) - 1000)  # sparse: counts its size, takes no disk
    try:
        full = r"flags are full: they take 100\d\.\d MB of the 1000 MB allowed, and this flag needs 0\.\d MB"
        with pytest.raises(Exception, match=full):
            client.predict(handle_file(str(photo)), answer, "Chihuahua", "", api_name="/dog_breed_flag")
        assert (flag_dir / "dog_breed" / "metadata.jsonl").read_bytes() == before
        assert client.predict(handle_file(str(photo)), api_name="/dog_breed") == answer
    finally:
        filler.unlink()
    said = client.predict(handle_file(str(photo)), answer, "Chihuahua", "", api_name="/dog_breed_flag")
    assert said.startswith("Flagged, thank you")
    assert len(lines(flag_dir / "dog_breed")) == len(before.splitlines()) + 1
