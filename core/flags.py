"""Flags: a user says "this answer is wrong", and the picture is kept with the right answer.

Each task's flags are one Hugging Face `imagefolder` dataset, so they load with
`datasets.load_dataset("imagefolder", data_dir=...)` and push to the Hub as they are:

    <flag dir>/<task>/images/<id>.<ext>   the uploaded file's bytes, as uploaded (id: uuid4 hex;
                                          ext: the one Pillow registers for the decoded format)
    <flag dir>/<task>/metadata.jsonl      one JSON object per flag, appended, never rewritten:
        file_name   "images/<id>.<ext>"
        task        the tab's task name
        answer      the model's answer as the page showed it
        correction  the right answer the user gave: a label (single-label), a list of labels
                    (multi-label), {"gender", "age"} (age & gender); null when none was given
        comment     the user's words ("" when none)
        origin      where the model came from: `repo@commit`, "local bundle <task>" or
                    "demo bundle <task>" (never a folder of the server: flags get published)
        time        when, ISO 8601 in UTC

The flag directory is `flagged/` at the repository root, `--flag-dir DIR` or $FLAG_DIR; flagging
is off with `--no-flagging` or FLAGGING=off. It holds at most $FLAG_QUOTA_MB megabytes (1000): a
public server's visitors must not fill its disk; past that, a flag is refused with a message that
says so, and everything else goes on. The Hub side (a task's folder pushed as a dataset repo, and
a running app's flags pushed every few minutes) is core/flags_hub.py:

    python -m core.flags push flagged/dog_breed --repo USER/NAME [--public]
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from core.atomic import write_atomic
from core.errors import InputError
from core.images import open_image

DEFAULT_FLAG_DIR = Path(__file__).resolve().parent.parent / "flagged"
METADATA = "metadata.jsonl"
IMAGES = "images"
MAX_COMMENT = 2000  # characters
MAX_ANSWER = 64_000  # characters of JSON: a real answer is a few hundred; the API accepts anything
QUOTA_MB = float(os.environ.get("FLAG_QUOTA_MB", 1000))  # the whole flag directory, every task's flags
# Formats whose usual extension is not the one named after them (Pillow registers .jfif first
# for JPEG). An MPO is a phone's JPEG with extra pictures after the first: every JPEG reader
# reads it, and an imagefolder loader knows .jpg.
USUAL_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}
NOTICE = ("Flagging stores this picture, the model's answer and your correction **on this server**, "
          "to check and retrain the model.")

# Gradio serves requests on threads: one writer at a time, so each line lands whole and in order
# (and `snapshot` reads between two flags, never during one).
_lock = threading.Lock()


class FlagError(InputError):
    """A flag that cannot be saved as sent; the message says what to change."""


@dataclass(frozen=True)
class Flagging:
    """Where one tab's flags go, and what the tab's model is (labels to check corrections against)."""

    folder: Path  # <flag dir>/<task>
    task: str
    origin: str  # model_origin: no path of this server
    labels: tuple[str, ...] = ()
    notice: str = NOTICE  # where flags go, said next to the Flag button (core.flags_hub.keep_flags)


def model_origin(resolved, task: str) -> str:
    """Where a tab's model came from, as its flags record it (a core.source.Resolved with a
    bundle): `repo@commit` for a pinned Hub model, else "local bundle <task>" or "demo bundle
    <task>". Never the bundle's folder: that is this server's own path, and flags get published."""
    if resolved.origin != str(resolved.bundle.path):  # a Hub model: its snapshot is not its origin
        return resolved.origin
    kind = resolved.bundle.kind
    return f"{'local' if kind == 'trained' else kind} bundle {task}"


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
        extension = extension_of(picture.format)
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
        write_atomic(folder / record["file_name"], data, folder / f".{flag_id}.partial")
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


def extension_of(format_name: str | None) -> str:
    """The extension a picture of Pillow's format `format_name` is stored under: its usual one,
    else the one Pillow registers under the format's own name (PPM: ppm), else its first
    registered one. Never the upload's name, which says nothing of the bytes (x.html)."""
    if format_name in USUAL_EXTENSIONS:
        return USUAL_EXTENSIONS[format_name]
    registered = [ext.lstrip(".") for ext, name in Image.registered_extensions().items() if name == format_name]
    named = (format_name or "").lower()
    return named if named in registered or not registered else registered[0]


def read(folder) -> list[dict]:
    """Every flag in a task's folder, oldest first."""
    path = Path(folder) / METADATA
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def snapshot(root) -> dict[str, bytes]:
    """Every task's metadata.jsonl under the flag directory `root` as it is now, read between two
    flags: every picture a line names is on disk (it is written before its line)."""
    with _lock:
        return {table.parent.name: table.read_bytes() for table in sorted(Path(root).glob(f"*/{METADATA}"))}


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




# --- the command line ------------------------------------------------------------------------

if __name__ == "__main__":  # the documented command; pushing lives beside the other Hub code
    import runpy

    runpy.run_module("core.flags_hub", run_name="__main__")
