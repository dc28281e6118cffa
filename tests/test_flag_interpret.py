"""Flags kept as an imagefolder per task, and pushed to a loopback Hub as a dataset repo."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from core import flags
from hub_server import FakeHub, hub_env


def dog_photo(dogs_data, breed="n02110185-Siberian_husky", index=0):
    return sorted((dogs_data / "Images" / breed).glob("*.jpg"))[index]


def lines(folder):
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


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
        assert front["pretty_name"] == "Flagged answers of the dog_breed tab"

        # A second flag, pushed again: both images, both lines, the card kept as it was edited.
        (folder / "README.md").write_text((folder / "README.md").read_text() + "\nChecked by hand.\n")
        flags.save(target, photos[1], {"Beagle": 0.7}, "Beagle", "second")
        push()
        from huggingface_hub import HfApi

        listed = HfApi(endpoint=hub.url, token="hf_loopback_token").list_repo_files("team/flags", repo_type="dataset")
        assert sorted(listed) == sorted(["README.md", "metadata.jsonl", *(line["file_name"] for line in lines(folder))])
        assert b"Checked by hand." in hub.datasets["team/flags"]["commits"][hub.datasets["team/flags"]["refs"]["main"]]["README.md"]
        assert hub.unknown == []


def test_save_refuses_what_is_not_an_image(tmp_path):
    target = flags.Flagging(tmp_path / "dog_breed", "dog_breed", "here", ("Beagle",))
    with pytest.raises(flags.FlagError):
        flags.save(target, tmp_path, None, None, "")
    page = tmp_path / "page.jpg"
    page.write_bytes(b"<html>not a picture</html>")
    with pytest.raises(Exception, match="not an image"):
        flags.save(target, page, {"Beagle": 1.0}, None, "")
    assert not (tmp_path / "dog_breed" / "metadata.jsonl").exists()
