"""Flags: a user says "this answer is wrong", and the picture is kept with the right answer.

Each task's flags are one Hugging Face `imagefolder` dataset, so they load with
`datasets.load_dataset("imagefolder", data_dir=...)` and push to the Hub as they are:

    <flag dir>/<task>/images/<id>.<ext>   the uploaded file's bytes, as uploaded (id: uuid4 hex)
    <flag dir>/<task>/metadata.jsonl      one JSON object per flag, appended, never rewritten:
        file_name   "images/<id>.<ext>"
        task        the tab's task name
        answer      the model's answer as the page showed it
        correction  the right answer the user gave: a label (single-label), a list of labels
                    (multi-label), {"gender", "age"} (age & gender); null when none was given
        comment     the user's words ("" when none)
        origin      where the model came from: a local path, repo@commit, or the demo path
        time        when, ISO 8601 in UTC

The flag directory is `flagged/` at the repository root, `--flag-dir DIR` or $FLAG_DIR; flagging
is off with `--no-flagging` or FLAGGING=off. It holds at most $FLAG_QUOTA_MB megabytes (1000): a
public server's visitors must not fill its disk; past that, a flag is refused with a message that
says so, and everything else goes on. A task's folder goes to the Hub as a dataset repo:

    python -m core.flags push flagged/dog_breed --repo USER/NAME [--public]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.errors import InputError
from core.images import open_image

DEFAULT_FLAG_DIR = Path(__file__).resolve().parent.parent / "flagged"
METADATA = "metadata.jsonl"
IMAGES = "images"
MAX_COMMENT = 2000  # characters
MAX_ANSWER = 64_000  # characters of JSON: a real answer is a few hundred; the API accepts anything
QUOTA_MB = float(os.environ.get("FLAG_QUOTA_MB", 1000))  # the whole flag directory, every task's flags
# Pillow's format name -> the extension an imagefolder loader expects for those bytes.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
NOTICE = ("Flagging stores this picture, the model's answer and your correction **on this server**, "
          "to check and retrain the model.")

# Gradio serves requests on threads: one writer at a time, so each line lands whole and in order.
_lock = threading.Lock()


class FlagError(InputError):
    """A flag that cannot be saved as sent; the message says what to change."""


@dataclass(frozen=True)
class Flagging:
    """Where one tab's flags go, and what the tab's model is (labels to check corrections against)."""

    folder: Path  # <flag dir>/<task>
    task: str
    origin: str
    labels: tuple[str, ...] = ()


def flag_root(flag_dir: str | os.PathLike | None = None, enabled: bool | None = None) -> Path | None:
    """The flag directory, or None when flagging is off (`enabled` False, or FLAGGING=off)."""
    if enabled is None:
        enabled = os.environ.get("FLAGGING", "on").strip().lower() not in ("off", "0", "false", "no")
    if not enabled:
        return None
    return Path(flag_dir or os.environ.get("FLAG_DIR") or DEFAULT_FLAG_DIR)


def save(flagging: Flagging, image, answer, correction, comment: str | None = "") -> dict:
    """Store one flag: the upload's bytes under images/ and one line in metadata.jsonl. Returns
    the line's record. `image` is the uploaded file (path or bytes), checked to be an image."""
    if answer is None or answer == "" or answer == {}:
        raise FlagError("Run the model first: a flag keeps its answer next to your correction.")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise FlagError(f"The comment is {len(comment)} characters long; keep it under {MAX_COMMENT}.")
    try:
        answer_json = json.dumps(answer, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise FlagError("The answer sent with the flag is not plain JSON (labels and numbers).") from None
    if len(answer_json) > MAX_ANSWER:
        raise FlagError("The answer sent with the flag is too large to be the model's.")
    with open_image(image) as picture:  # refuses what is not an image, from its header
        extension = EXTENSIONS.get(picture.format or "") or _suffix(image)
    data = bytes(image) if isinstance(image, (bytes, bytearray)) else Path(image).read_bytes()
    flag_id = uuid.uuid4().hex
    record = {
        "file_name": f"{IMAGES}/{flag_id}.{extension}",
        "task": flagging.task,
        "answer": json.loads(answer_json),
        "correction": correction,
        "comment": comment,
        "origin": flagging.origin,
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    folder = Path(flagging.folder)
    with _lock:
        used, needed = stored_bytes(folder.parent), len(data) + len(line)
        if used + needed > QUOTA_MB * 2**20:
            raise FlagError(f"This server's flags are full: they take {used / 2**20:.1f} MB of the {QUOTA_MB:g} MB "
                            f"allowed, and this flag needs {needed / 2**20:.1f} MB. It was not saved. The owner "
                            f"can push the flags to the Hub and clear the folder (python -m core.flags push).")
        (folder / IMAGES).mkdir(parents=True, exist_ok=True)
        # The image first, whole (written aside, then renamed): a line never names a missing file.
        partial = folder / f".{flag_id}.partial"
        partial.write_bytes(data)
        os.replace(partial, folder / record["file_name"])
        _append(folder / METADATA, line)
    return record


def _append(path: Path, line: bytes) -> None:
    """Append one whole line (O_APPEND: at the end, whatever else has the file open)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = 0
        while written < len(line):
            written += os.write(descriptor, line[written:])
    finally:
        os.close(descriptor)


def stored_bytes(root) -> int:
    """Bytes in the files under the flag directory `root` (0 before the first flag)."""
    total = 0
    for top, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(top, name)).st_size
            except FileNotFoundError:  # the owner clearing flags that were pushed
                pass
    return total


def _suffix(image) -> str:
    """A format we have no extension for: the upload's own, if it had one."""
    suffix = "" if isinstance(image, (bytes, bytearray)) else Path(image).suffix.lstrip(".").lower()
    return suffix if suffix.isalnum() else "img"


def read(folder) -> list[dict]:
    """Every flag in a task's folder, oldest first."""
    path = Path(folder) / METADATA
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def confirmation(record: dict) -> str:
    return f"Flagged, thank you: saved on this server as `{record['file_name']}` in the {record['task']} flags."


# --- corrections, checked against the model's labels ---------------------------------------

def label_correction(labels, label: str | None) -> str | None:
    """One of the model's labels, or None when the user gave none."""
    if label is None or label == "":
        return None
    if label not in labels:
        raise FlagError(f"'{label}' is not one of this model's labels.")
    return label


def labels_correction(labels, chosen) -> list[str]:
    """The right labels, in the model's order (empty when the user picked none)."""
    chosen = [chosen] if isinstance(chosen, str) else list(chosen or [])
    unknown = [label for label in chosen if label not in labels]
    if unknown:
        raise FlagError(f"Not labels of this model: {', '.join(map(repr, unknown))}.")
    return [label for label in labels if label in chosen]


def age_correction(age) -> float | None:
    """An age in years (a number, or text such as "34"), or None."""
    if age is None or str(age).strip() == "":
        return None
    try:
        age = float(str(age).strip())
    except (TypeError, ValueError):
        raise FlagError(f"The age must be a number of years, not {age!r}.") from None
    if not math.isfinite(age) or not 0 <= age <= 120:
        raise FlagError(f"The age must be between 0 and 120 years, not {age:g}.")
    return age


# --- what the tabs call --------------------------------------------------------------------

def flag_label(flagging: Flagging, image, answer, correction: str | None = None, comment: str = "") -> str:
    """A single-label classifier's answer is wrong; `correction`: the right label (optional)."""
    return confirmation(save(flagging, image, answer, label_correction(flagging.labels, correction), comment))


def flag_labels(flagging: Flagging, image, answer, correction=None, comment: str = "") -> str:
    """A multi-label answer is wrong; `correction`: the labels that do apply."""
    return confirmation(save(flagging, image, answer, labels_correction(flagging.labels, correction), comment))


def flag_comment(flagging: Flagging, image, answer, comment: str = "") -> str:
    """An answer is wrong, in words only (caries: a mask cannot be corrected in a dropdown)."""
    return confirmation(save(flagging, image, answer, None, comment))


# --- to the Hub ----------------------------------------------------------------------------

CARD = """---
pretty_name: Flagged answers of the {task} tab
tags:
- flagged-answers
- image
size_categories:
- n<1K
---

# Flagged answers: {task}

Pictures that users of the vision demos app flagged as answered wrongly by the `{task}` model,
each with the model's answer, the user's correction and comment. An `imagefolder` dataset:
`images/` holds the uploaded files as uploaded, `metadata.jsonl` one line per flag.

| column | meaning |
|---|---|
| `file_name` | the picture, `images/<id>.<ext>` |
| `task` | the app's task |
| `answer` | the model's answer as the page showed it |
| `correction` | the right answer the user gave (a label, a list of labels, or `{{"gender", "age"}}`); null when none |
| `comment` | the user's words |
| `origin` | the model that answered: a local path, `repo@commit`, or the demo model's path |
| `time` | when, ISO 8601 in UTC |

```python
from datasets import load_dataset
flags = load_dataset("imagefolder", data_dir="{task}")  # or load_dataset("USER/NAME") from the Hub
```

The pictures were uploaded by the app's users: check that you may share them before making this
repository public.
"""


def write_card(folder) -> Path:
    """The dataset card (README.md with front matter), unless the folder has one."""
    card = Path(folder) / "README.md"
    if not card.exists():
        card.write_text(CARD.format(task=Path(folder).resolve().name), encoding="utf-8")
    return card


def push(folder, repo_id: str, private: bool = True) -> str:
    """Upload a task's flags (card, metadata.jsonl, images/) as a Hub dataset repo; returns the
    commit. huggingface_hub reads HF_TOKEN and HF_ENDPOINT as usual."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    flags = read(folder)
    if not flags:
        raise FlagError(f"No flags in {folder}: it has no {METADATA}.")
    write_card(folder)
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset",
                               allow_patterns=["README.md", METADATA, f"{IMAGES}/*"],
                               commit_message=f"{_count(len(flags))} of the {flags[-1]['task']} tab")
    return commit.oid


def _count(flags: int) -> str:
    return f"{flags} flag" + ("" if flags == 1 else "s")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.flags", description="The app's flags.")
    commands = parser.add_subparsers(dest="command", required=True)
    pushing = commands.add_parser("push", help="upload a task's flags as a Hugging Face dataset repo")
    pushing.add_argument("folder", help="one task's flags, e.g. flagged/dog_breed")
    pushing.add_argument("--repo", required=True, help="the dataset repo, USER/NAME (created if missing)")
    # Private unless asked: the pictures are users' uploads (faces, among them).
    pushing.add_argument("--public", action="store_true", help="make a new repo public (default: private)")
    args = parser.parse_args(argv)
    try:
        commit = push(args.folder, args.repo, private=not args.public)
    except FlagError as error:
        parser.exit(2, f"{error}\n")
    print(f"Pushed {_count(len(read(args.folder)))} to datasets/{args.repo} at commit {commit}")
    return commit


if __name__ == "__main__":
    main()
