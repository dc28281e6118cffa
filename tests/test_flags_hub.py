"""Flags on the Hub (core/flags_hub.py) against a loopback Hub: the dataset card huggingface_hub
makes at every push, a running app's flags pushed by CommitScheduler so that they outlive a
Space's restart, and flags read back for training from a commit (`hf://datasets/...@COMMIT`)."""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, free_port, page_text, running_app
from gradio_client import Client, handle_file
from huggingface_hub import DatasetCard, HfApi
from PIL import Image
from support.hub_server import FakeHub, hub_env

from core import flags, flags_hub
from training.datasets import flagged

DARKNET = Path("/usr/share/darknet/data")  # Debian's darknet-data: real photos
TOKEN = "hf_loopback_token"
SPACE = {"SPACE_ID": "team/vision-demos"}


def loopback(hub) -> HfApi:
    return HfApi(endpoint=hub.url, token=TOKEN)


def head(hub, repo: str) -> dict[str, bytes]:
    """The files of a dataset repo of the loopback Hub at its main branch."""
    repo = hub.datasets[repo]
    return repo["commits"][repo["refs"]["main"]]


def card_of(files: dict[str, bytes]) -> DatasetCard:
    return DatasetCard(files["README.md"].decode())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_back(reference: str, task: str, kind: str, labels, hub, hf_home) -> dict:
    """training.datasets.flagged.read_flagged(reference, ...) in a process of its own pointed at
    the loopback Hub, as a recipe runs (huggingface_hub reads HF_ENDPOINT when imported): its
    summary, and each flag's (file name, correction, SHA-256 of the picture)."""
    code = ("import hashlib, json, sys\n"
            "from training.datasets.flagged import read_flagged\n"
            "read = read_flagged(*json.loads(sys.argv[1]))\n"
            "print(json.dumps({'summary': read.summary(), 'flags': [[f.path.name, f.correction, "
            "hashlib.sha256(f.path.read_bytes()).hexdigest()] for f in read.flags]}))")
    result = subprocess.run([sys.executable, "-c", code, json.dumps([reference, task, kind, list(labels)])], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, **hub_env(hub.url, hf_home)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def wait_for_commits(hub, repo: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(hub.datasets.get(repo, {}).get("commits", {})) < count:
        assert time.monotonic() < deadline, f"no commit {count} on {repo} within {timeout} s"
        time.sleep(0.2)


def write_flags_fast(folder: Path, corrections) -> None:
    """One flag per correction in the app's layout, written directly (the app's writer checks the
    quota against the whole folder at each flag): a tiny PNG made once, copied under each id."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (120, 80, 40)).save(buffer, "PNG")
    start = len(flags.read(folder))
    lines = []
    for number, correction in enumerate(corrections, start=start):
        name = f"images/{number:032x}.png"
        (folder / name).write_bytes(buffer.getvalue())
        lines.append(json.dumps({"file_name": name, "task": "dog_breed", "answer": {"Beagle": 0.9},
                                 "correction": correction, "comment": "", "origin": "local bundle dog_breed",
                                 "time": "2025-03-01T10:00:00.000+00:00"}) + "\n")
    with open(folder / flags.METADATA, "a") as handle:
        handle.writelines(lines)


# --- the card ---------------------------------------------------------------------------------

def test_the_card_is_made_again_at_every_push_with_the_size_and_the_corrections(tmp_path):
    folder = tmp_path / "flagged" / "dog_breed"
    write_flags_fast(folder, ["Beagle"] * 600 + ["Chihuahua"] * 395 + [None] * 4)
    with FakeHub() as hub:
        commit, pushed = flags_hub.push(folder, "team/dog-flags", api=loopback(hub))
        assert pushed == 999 and hub.datasets["team/dog-flags"]["refs"]["main"] == commit
        first = card_of(head(hub, "team/dog-flags"))
        assert first.data.size_categories == ["n<1K"]

        write_flags_fast(folder, ["Chihuahua"] * 300 + [None])  # 1,300 flags in all
        flags_hub.push(folder, "team/dog-flags", api=loopback(hub))
        files = head(hub, "team/dog-flags")
        card = card_of(files)
        assert hub.unknown == []
    assert card.data.size_categories == ["1K<n<10K"]
    assert card.data.license == "unknown" and card.data.pretty_name == "Flagged answers of the dog_breed tab"
    assert hub.validated_cards[-1]["size_categories"] == ["1K<n<10K"]  # the Hub checked this front matter
    assert "1300 flags" in card.text
    assert "| `dog_breed` | 1300 | 1295 |" in card.text  # flags, and those with a right answer
    for row in ("| `dog_breed` | Chihuahua | 695 |", "| `dog_breed` | Beagle | 600 |",
                "| `dog_breed` | (none: a comment only) | 5 |"):
        assert row in card.text
    assert "Keep this repository private" in card.text and "hf://datasets/team/dog-flags@COMMIT" in card.text
    assert len([name for name in files if name.startswith("images/")]) == 1300


def test_a_folder_cleared_after_a_push_and_pushed_again_keeps_what_was_pushed(tmp_path):
    """The full-store message tells the owner to push the flags and clear the folder: the next push
    must not replace the repo's lines by the new folder's."""
    folder = tmp_path / "flagged" / "dog_breed"
    target = flags.Flagging(folder, "dog_breed", "local bundle dog_breed", ("Beagle", "Chihuahua"))
    photos = [DARKNET / "dog.jpg", DARKNET / "eagle.jpg"]
    with FakeHub() as hub:
        first = flags.save(target, photos[0], {"Beagle": 0.9}, "Chihuahua", "")
        flags_hub.push(folder, "team/dog-flags", api=loopback(hub))
        shutil.rmtree(folder)  # the owner clears the folder
        second = flags.save(target, photos[1], {"Beagle": 0.7}, "Beagle", "")
        _, pushed = flags_hub.push(folder, "team/dog-flags", api=loopback(hub))
        files = head(hub, "team/dog-flags")
    assert pushed == 2, "a push after the folder was cleared must keep the lines pushed before"
    assert [json.loads(line)["file_name"] for line in files["metadata.jsonl"].splitlines()] == [
        first["file_name"], second["file_name"]]
    assert files[first["file_name"]] == photos[0].read_bytes() and files[second["file_name"]] == photos[1].read_bytes()
    assert "2 flags" in card_of(files).text


# --- a running app's flags, pushed ------------------------------------------------------------

def test_flags_on_a_space_reach_the_flags_repo_when_the_app_stops_and_train_from_that_commit(
        dog_bundle, models_with, dogs_data, tmp_path):
    """The real app on a "Space" with FLAG_REPO set: two flags through the API as a user sends
    them (a photo, and a PPM named x.html), then the app is stopped as a Space restart stops it
    (SIGTERM): its last push brings both to the private repo, where the reader finds them at that
    commit. Nothing pushed names a folder of the server."""
    root = models_with(dog_breed=dog_bundle)
    labels = json.loads((dog_bundle / "task.json").read_text())["labels"]
    flag_dir = tmp_path / "flags"
    photo = sorted((dogs_data / "Images" / "n02085620-Chihuahua").glob("*.jpg"))[0]
    page = tmp_path / "x.html"
    Image.open(DARKNET / "dog.jpg").reduce(4).save(page, "PPM")  # a PPM, named like a web page
    with FakeHub() as hub:
        env = hub_env(hub.url, tmp_path / "hf", FLAG_REPO="team/flags", **SPACE)
        with running_app(root, env=env, args=["--flag-dir", str(flag_dir)]) as url:
            assert "and every 5 minutes in the owner's Hub dataset `team/flags`" in page_text(url)
            client = Client(url, verbose=False)
            answer = client.predict(handle_file(str(photo)), api_name="/dog_breed")
            for upload, correction in ((photo, labels[0]), (page, labels[1])):
                said = client.predict(handle_file(str(upload)), answer, correction, "", api_name="/dog_breed_flag")
                assert said.startswith("Flagged, thank you"), said
            assert hub.datasets["team/flags"]["commits"] == {}, "5 minutes are not up: nothing is pushed yet"
        repo = hub.datasets["team/flags"]
        assert repo["private"], "a flags repo the app creates must be private"
        assert len(repo["commits"]) == 1, "stopping the app (SIGTERM, as a Space restart does) must push the flags"
        commit = repo["refs"]["main"]
        files = head(hub, "team/flags")
        read = read_back(f"hf://datasets/team/flags@{commit}", "dog_breed", "single", labels, hub, tmp_path / "hf")
        assert hub.unknown == []
    assert read["flags"] == [[Path(line["file_name"]).name, labels.index(line["correction"]),
                              sha((flag_dir / "dog_breed" / line["file_name"]).read_bytes())]
                             for line in flags.read(flag_dir / "dog_breed")]
    assert [flag[2] for flag in read["flags"]] == [sha(photo.read_bytes()), sha(page.read_bytes())]
    assert read["summary"]["repo"] == "team/flags" and read["summary"]["commit"] == commit
    assert read["summary"]["folder"] == f"hf://datasets/team/flags@{commit}"
    assert read["flags"][1][0].endswith(".ppm")  # the decoded format's extension, not the upload's .html
    assert [name for name in files if name.endswith(".html")] == []
    assert [line["origin"] for line in flags.read(flag_dir / "dog_breed")] == ["local bundle dog_breed"] * 2
    for text in [*files.values(), (flag_dir / "dog_breed" / "metadata.jsonl").read_bytes()]:
        assert str(tmp_path).encode() not in text
    assert card_of(files).data.configs == [{"config_name": "dog_breed", "data_dir": "dog_breed"}]


@pytest.mark.slow
def test_a_restarted_space_adds_its_flags_beside_those_pushed_before(tmp_path):
    """Each start of a Space has an empty disk and a new flags file: the scheduler pushes it to a
    folder of its own, every few minutes while the app runs, and the lines pushed before stay.
    Nothing changed, nothing committed."""
    photos = [DARKNET / name for name in ("dog.jpg", "horses.jpg", "eagle.jpg")]
    with FakeHub() as hub:
        before = tmp_path / "before-restart"
        scheduler, _ = flags_hub.keep_flags(before, "team/flags", 0.02, True, api=loopback(hub))  # every 1.2 s
        target = flags.Flagging(before / "dog_breed", "dog_breed", "local bundle dog_breed", ("Beagle", "Chihuahua"))
        flags.save(target, photos[0], {"Beagle": 0.9}, "Chihuahua", "")
        wait_for_commits(hub, "team/flags", 1)
        assert "| `dog_breed` | 1 | 1 |" in card_of(head(hub, "team/flags")).text
        flags.save(target, photos[1], {"Beagle": 0.8}, None, "a horse")
        wait_for_commits(hub, "team/flags", 2)
        time.sleep(4)  # three more rounds of the timer, nothing new
        assert len(hub.datasets["team/flags"]["commits"]) == 2
        scheduler.close()

        after = tmp_path / "after-restart"  # the same Space, started again on a fresh disk
        scheduler, _ = flags_hub.keep_flags(after, "team/flags", 5, True, api=loopback(hub))
        flags.save(flags.Flagging(after / "dog_breed", "dog_breed", "local bundle dog_breed", ("Beagle", "Chihuahua")),
                   photos[2], {"Chihuahua": 0.6}, "Beagle", "")
        scheduler.close()
        files = head(hub, "team/flags")
        read = read_back(f"hf://datasets/team/flags@{hub.datasets['team/flags']['refs']['main']}", "dog_breed",
                         "single", ["Beagle", "Chihuahua"], hub, tmp_path / "hf")
        assert hub.unknown == []
    tables = sorted(name for name in files if name.endswith("/metadata.jsonl"))
    assert len(tables) == 2 and all(name.startswith("dog_breed/") for name in tables)
    assert sorted(files[table].count(b"\n") for table in tables) == [1, 2]
    assert sorted(sha(photo.read_bytes()) for photo in (photos[0], photos[2])) == sorted(f[2] for f in read["flags"])
    assert read["summary"]["lines"] == 3 and read["summary"]["dropped"] == {"no_correction": 1}
    assert "3 flags" in card_of(files).text and card_of(files).data.size_categories == ["n<1K"]


# --- what the page says -------------------------------------------------------------------------

def test_a_space_without_a_flags_repo_says_flags_last_until_it_restarts(dog_bundle, models_with):
    with running_app(models_with(dog_breed=dog_bundle), env=SPACE) as url:
        text = page_text(url)
    assert "On this Space they are kept only until it restarts**: its owner has set no Hub dataset" in text
    assert "(FLAG_REPO)" in text


@pytest.mark.slow
def test_a_flags_repo_that_cannot_be_used_is_said_and_flags_stay(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    scheduler, notice = flags_hub.keep_flags(tmp_path, "team/flags", 5, True, api=HfApi(endpoint=dead, token=TOKEN))
    assert scheduler is None
    assert "kept only until it restarts**: they cannot be sent to the Hub dataset `team/flags` (" in notice
    scheduler, notice = flags_hub.keep_flags(tmp_path, "flags", 5, False, api=HfApi(endpoint=dead, token=TOKEN))
    assert scheduler is None and "They stay on this server only" in notice and "'flags' is not OWNER/NAME" in notice
    scheduler, notice = flags_hub.keep_flags(tmp_path, None, 5, False)
    assert scheduler is None and notice == flags.NOTICE  # off a Space, flags on this disk stay


# --- read back ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_hub_reference_that_cannot_be_read_says_why(tmp_path):
    with pytest.raises(SystemExit, match="names no commit"):
        flagged.read_flagged("hf://datasets/team/flags", "dog_breed", "single", ["Beagle"])
    with FakeHub() as hub:
        commit = hub.commit("team/flags", {"hashtags/2025-01-01-abc/metadata.jsonl": b"{}\n"}, "dataset")
        code = ("import sys; from training.datasets.flagged import read_flagged; "
                "read_flagged(sys.argv[1], 'dog_breed', 'single', ['Beagle'])")
        for case, (reference, endpoint, said) in enumerate([
                (f"hf://datasets/team/flags@{commit}", hub.url, "no metadata.jsonl"),  # only another task's flags
                (f"hf://datasets/team/flags@{'0' * 40}", hub.url, "has no commit"),
                (f"hf://datasets/team/flags@{commit}", f"http://127.0.0.1:{free_port()}",
                 "could not download it from the Hub .*Check the network")]):
            result = subprocess.run([sys.executable, "-c", code, reference], cwd=ROOT, capture_output=True, text=True,
                                    timeout=120, env={**os.environ, **hub_env(endpoint, tmp_path / f"hf{case}")})
            assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
            assert re.search(said, result.stderr), result.stderr[-2000:]
