"""Flags on the Hub (core/flags_hub.py) against a loopback Hub: the dataset card huggingface_hub
makes at every push."""

import io
import json
import shutil
from pathlib import Path

from huggingface_hub import DatasetCard, HfApi
from PIL import Image

from core import flags, flags_hub
from hub_server import FakeHub

DARKNET = Path("/usr/share/darknet/data")  # Debian's darknet-data: real photos
TOKEN = "hf_loopback_token"


def loopback(hub) -> HfApi:
    return HfApi(endpoint=hub.url, token=TOKEN)


def head(hub, repo: str) -> dict[str, bytes]:
    """The files of a dataset repo of the loopback Hub at its main branch."""
    repo = hub.datasets[repo]
    return repo["commits"][repo["refs"]["main"]]


def card_of(files: dict[str, bytes]) -> DatasetCard:
    return DatasetCard(files["README.md"].decode())


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
    assert pushed == 2
    assert [json.loads(line)["file_name"] for line in files["metadata.jsonl"].splitlines()] == [
        first["file_name"], second["file_name"]]
    assert files[first["file_name"]] == photos[0].read_bytes() and files[second["file_name"]] == photos[1].read_bytes()
    assert "2 flags" in card_of(files).text
