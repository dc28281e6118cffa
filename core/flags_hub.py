"""Flags on the Hugging Face Hub: the dataset card, and one task's folder pushed as a dataset repo.

`python -m core.flags push FOLDER --repo R` pushes one task's folder as the repo itself
(`metadata.jsonl`, `images/`), keeping the lines of an earlier push the folder no longer has.
The card is made again at every push by huggingface_hub (DatasetCardData, DatasetCard).

Repos are created private unless asked; one the owner made public stays public. huggingface_hub
reads HF_TOKEN and HF_ENDPOINT as usual.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

from huggingface_hub import CommitOperationAdd, DatasetCard, DatasetCardData, HfApi
from huggingface_hub.errors import EntryNotFoundError

from core.flags import IMAGES, METADATA, FlagError

# The Hub's size categories by their upper bound: a card's front matter names the one it is in.
SIZE_CATEGORIES = ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                   (1e7, "1M<n<10M"), (float("inf"), "n>10M"))


def count(number: int) -> str:
    """"1 flag", "2 flags"."""
    return f"{number} flag" + ("" if number == 1 else "s")


def size_category(rows: int) -> str:
    return next(label for limit, label in SIZE_CATEGORIES if rows < limit)


def parse(table: bytes) -> list[dict]:
    """The flags of a metadata.jsonl; a line that is not a JSON object (a hand edit) is left out
    of the card, and stays in the file for the reader to report."""
    records = []
    for line in table.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def right_answer(correction) -> list[str]:
    """What a correction counts as in the card: its label, each of its labels, face 1's gender."""
    if correction is None:
        return ["(none: a comment only)"]
    if isinstance(correction, str):
        return [correction]
    if isinstance(correction, list):
        return [str(label) for label in correction] or ["(no label applies)"]
    if isinstance(correction, dict):
        return [str(correction["gender"]) if correction.get("gender") else "(an age only)"]
    return ["(other)"]


def dataset_card(records: dict[str, list[dict]], repo_id: str, by_task: bool) -> str:
    """The dataset card of `records` (task -> its flags): front matter from huggingface_hub's
    DatasetCardData (the size category of all the flags; with `by_task`, a config per task folder),
    then what is in it, how often each right answer was given, and under which terms."""
    tasks = sorted(task for task in records if records[task])
    total = sum(len(records[task]) for task in tasks)
    data = DatasetCardData(
        pretty_name="Flagged answers of the vision demos" if by_task else f"Flagged answers of the {tasks[0]} tab",
        license="unknown",
        size_categories=[size_category(total)],
        tags=["flagged-answers", "image", "imagefolder"],
        **({"configs": [{"config_name": task, "data_dir": task} for task in tasks]} if by_task else {}),
    )
    answers = {task: Counter(a for r in records[task] for a in right_answer(r.get("correction"))) for task in tasks}
    per_task = "\n".join(f"| `{task}` | {len(records[task])} | {sum(r.get('correction') is not None for r in records[task])} |"
                         for task in tasks)
    given = "\n".join(f"| `{task}` | {answer} | {times} |" for task in tasks
                      for answer, times in sorted(answers[task].items(), key=lambda item: (-item[1], item[0])))
    if by_task:
        layout = (f"A folder per task, each a config, in which each flags file the app kept has a folder of its own "
                  f"(`<task>/<store>/metadata.jsonl` and `<task>/<store>/{IMAGES}/<id>.<ext>`): a restarted Space "
                  f"starts a new one.")
        loading = f'load_dataset("{repo_id}", "{tasks[0]}")  # a config per task: {", ".join(tasks)}'
    else:
        layout = f"`{METADATA}` holds a line per flag, `{IMAGES}/` the uploaded files as uploaded."
        loading = f'load_dataset("{repo_id}")'
    text = f"""---
{data.to_yaml()}
---

# {data.pretty_name}

Pictures that users of the vision demos app flagged as answered wrongly, each with the model's
answer, the user's correction and comment: {count(total)}. An `imagefolder` dataset. {layout}

| task | flags | with a right answer |
|---|---|---|
{per_task}

## The right answers given

A label (single-label tabs), each label of a list (multi-label tabs), face 1's gender (age & gender).

| task | right answer | flags |
|---|---|---|
{given}

## Columns

| column | meaning |
|---|---|
| `file_name` | the picture, `{IMAGES}/<id>.<ext>` (the extension of its decoded format) |
| `task` | the app's task |
| `answer` | the model's answer as the page showed it |
| `correction` | the right answer the user gave (a label, a list of labels, or `{{"gender", "age"}}`); null when none |
| `comment` | the user's words |
| `origin` | the model that answered: `repo@commit`, `local bundle <task>` or `demo bundle <task>` |
| `time` | when, ISO 8601 in UTC |

## Use

```python
from datasets import load_dataset
flags = {loading}
```

A recipe trains on the corrections of a commit of this repo (the training split only):
`python -m training.{tasks[0]} --data ... --out ... --extra-data hf://datasets/{repo_id}@COMMIT`.

## Terms

Licence: none granted. The pictures are uploads by the app's visitors, kept to check and retrain
its models, as the page says next to the Flag button; the rights in them stay with whoever made
them, and faces are among them. Keep this repository private, and do not publish or reuse the
pictures without their owners' permission.
"""
    return str(DatasetCard(text))


def picture_name(record: dict) -> str | None:
    """A flag's `file_name` when it is a picture under images/ (as the app writes it), else None."""
    name = record.get("file_name")
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    return name if len(parts) == 2 and parts[0] == IMAGES and parts[1] not in (".", "..") else None


def push(folder, repo_id: str, private: bool = True, api: HfApi | None = None) -> tuple[str, int]:
    """Upload one task's flags (card, metadata.jsonl, the pictures it names) as the dataset repo
    `repo_id`; returns the commit and the number of flags in the repo. Lines of an earlier push
    that the folder no longer has (it was cleared since) are kept, before the folder's."""
    folder = Path(folder)
    table = folder / METADATA
    if not table.is_file():
        raise FlagError(f"No flags in {folder}: it has no {METADATA}.")
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    local = table.read_bytes()
    if local and not local.endswith(b"\n"):
        local += b"\n"
    kept = set(local.splitlines())
    merged = b"".join(line for line in pushed_lines(api, repo_id) if line.rstrip(b"\n") not in kept) + local
    records = parse(merged)
    if not records:
        raise FlagError(f"No flags in {folder}: its {METADATA} is empty.")
    task = records[-1].get("task") or folder.resolve().name
    names = {name for name in map(picture_name, parse(local)) if name and (folder / name).is_file()}
    operations = [CommitOperationAdd(path_in_repo="README.md",
                                     path_or_fileobj=dataset_card({task: records}, repo_id, by_task=False).encode()),
                  CommitOperationAdd(path_in_repo=METADATA, path_or_fileobj=merged),
                  *(CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in sorted(names))]
    commit = api.create_commit(repo_id, operations, repo_type="dataset",
                               commit_message=f"{count(len(records))} of the {task} tab")
    return commit.oid, len(records)


def pushed_lines(api: HfApi, repo_id: str) -> list[bytes]:
    """The lines of the repo's metadata.jsonl as last pushed (none in a new repo)."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = api.hf_hub_download(repo_id, METADATA, repo_type="dataset", local_dir=scratch)
        except EntryNotFoundError:
            return []
        return [line + b"\n" for line in Path(path).read_bytes().splitlines() if line.strip()]

