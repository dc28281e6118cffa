"""Flags on the Hugging Face Hub: the dataset card, one task's folder pushed once, and a running
app's flags pushed every few minutes.

A Space's disk is wiped at every restart and rebuild, so flags kept there alone are lost. With a
flags repo set (`--flag-repo OWNER/NAME` or FLAG_REPO), the app pushes its flag directory to that
dataset repo with huggingface_hub's CommitScheduler, every FLAG_PUSH_MINUTES minutes (5) and once
more when it stops:

    README.md                          the dataset card, made again at every push
    <task>/<store>/metadata.jsonl      one task's flags file, as the app keeps it
    <task>/<store>/images/<id>.<ext>   the pictures its lines name

`<store>` names one flags file by its first line (that flag's date and a digest of the line): a
restarted Space starts a new file, which goes to a folder of its own instead of replacing the
lines pushed before; a file that keeps growing (a disk that outlives restarts) keeps its folder.
Each task is a config of the dataset (`load_dataset(REPO, "dog_breed")`), and a recipe trains on
a commit of it with `--flags hf://datasets/OWNER/NAME@COMMIT`.

`python -m core.flags push FOLDER --repo R` pushes one task's folder as the repo itself
(`metadata.jsonl`, `images/`), keeping the lines of an earlier push the folder no longer has.

Repos are created private; one the owner made public stays public. huggingface_hub reads HF_TOKEN
and HF_ENDPOINT as usual.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

from huggingface_hub import CommitOperationAdd, CommitScheduler, DatasetCard, DatasetCardData, HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from core import flags
from core.errors import InputError
from core.flags import IMAGES, METADATA, FlagError
from core.source import hub_unreachable

PUSH_MINUTES = 5.0
FINAL_PUSH_SECONDS = 60  # a stopping Space is killed soon after: wait no longer for the last push
# The Hub's size categories by their upper bound: a card's front matter names the one it is in.
SIZE_CATEGORIES = ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                   (1e7, "1M<n<10M"), (float("inf"), "n>10M"))
DATE = re.compile(r"\d{4}-\d\d-\d\d")
KEPT_UNTIL_RESTART = "**On this Space they are kept only until it restarts**"

log = logging.getLogger("app")


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
`python -m training.{tasks[0]} --data ... --out ... --flags hf://datasets/{repo_id}@COMMIT`.

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


def store_name(table: bytes) -> str:
    """The repo folder of one flags file: its first flag's date and a digest of its first line."""
    first = table.split(b"\n", 1)[0]
    records = parse(first)
    date = str(records[0].get("time", ""))[:10] if records else ""
    date = date if DATE.fullmatch(date) else "undated"
    return f"{date}-{hashlib.sha256(first).hexdigest()[:12]}"


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


def pushed_tables(api: HfApi, repo_id: str) -> dict[str, list[dict]]:
    """The flags files a running app pushed to the repo before (`<task>/<store>/metadata.jsonl`
    -> its flags; none when there is no repo yet)."""
    try:
        names = api.list_repo_files(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return {}
    tables = [name for name in names if len(PurePosixPath(name).parts) == 3 and name.endswith(f"/{METADATA}")]
    with tempfile.TemporaryDirectory() as scratch:
        return {name: parse(Path(api.hf_hub_download(repo_id, name, repo_type="dataset", local_dir=scratch)).read_bytes())
                for name in tables}


class FlagScheduler(CommitScheduler):
    """huggingface_hub's CommitScheduler over the flag directory: every `every` minutes, and at
    `close`, one commit of what changed since the last, laid out as the module says, with the card
    made again over every flags file in the repo. A push that failed (the Hub unreachable) is
    retried in full at the next."""

    def __init__(self, root, repo_id: str, every: float = PUSH_MINUTES, api: HfApi | None = None):
        api = api or HfApi()
        self.pushed: dict[str, str] = {}  # path in the repo -> SHA-256 of the bytes pushed there
        # What earlier runs pushed (a restarted Space's own file holds only what it saw): the card counts it too.
        self.earlier = pushed_tables(api, repo_id)
        # Private when created here (the pictures are users' uploads); an existing repo keeps its visibility.
        super().__init__(repo_id=repo_id, folder_path=root, every=every, repo_type="dataset", private=True,
                         hf_api=api)

    def push_to_hub(self):
        with self.lock:  # the timer's pushes and the one at exit take turns
            return self._push()

    def _push(self):
        tables = flags.snapshot(self.folder_path)
        records = {task: parse(table) for task, table in tables.items()}
        stores = {task: f"{task}/{store_name(table)}" for task, table in tables.items() if records[task]}
        operations, pushing = [], {}

        def add(path: str, data: bytes | Path, digest: str):
            if self.pushed.get(path) != digest:
                operations.append(CommitOperationAdd(path_in_repo=path, path_or_fileobj=data))
                pushing[path] = digest

        for task, store in stores.items():
            table = tables[task]
            add(f"{store}/{METADATA}", table, hashlib.sha256(table).hexdigest())
            for name in filter(None, map(picture_name, records[task])):
                picture = self.folder_path / task / name
                if picture.is_file():  # pictures never change: pushed once
                    add(f"{store}/{name}", picture, "pushed")
        if not operations:
            return None
        everything = {task: list(records[task]) for task in stores}
        own = {f"{store}/{METADATA}" for store in stores.values()}
        for name, earlier in self.earlier.items():
            if name not in own:  # a disk that outlived a restart: its file is already counted
                everything.setdefault(name.split("/")[0], []).extend(earlier)
        card = dataset_card(everything, self.repo_id, by_task=True).encode()
        add("README.md", card, hashlib.sha256(card).hexdigest())
        total = sum(map(len, everything.values()))
        commit = self.api.create_commit(repo_id=self.repo_id, repo_type="dataset", operations=operations,
                                        revision=self.revision, commit_message=f"Flags from the app: {count(total)}")
        self.pushed.update(pushing)
        log.info("flags: pushed %d file(s) to datasets/%s at commit %s (%s in all)", len(operations), self.repo_id,
                 commit.oid, count(total))
        return commit

    def close(self, timeout: float = FINAL_PUSH_SECONDS) -> None:
        """Push what is left, then stop (a stopped scheduler pushes nothing more, at exit neither)."""
        try:
            self.trigger().result(timeout)
        except Exception as error:
            log.error("flags: the last push to datasets/%s failed: %s", self.repo_id, _first_line(error))
        finally:
            self.stop()


def keep_flags(root, repo_id: str | None, every: float, on_space: bool,
               api: HfApi | None = None) -> tuple[FlagScheduler | None, str]:
    """Start pushing the flag directory `root` to the dataset repo `repo_id` (None: none set) every
    `every` minutes. Returns the scheduler (None when not pushing) and what the page says next to
    the Flag button, which on a Space (`on_space`) without a working repo is that flags last only
    until it restarts. Never raises: a repo that cannot be used is logged and said."""
    if not repo_id:
        if on_space:
            return None, (f"{flags.NOTICE} {KEPT_UNTIL_RESTART}: its owner has set no Hub dataset to keep them in "
                          f"(FLAG_REPO).")
        return None, flags.NOTICE
    try:
        if "/" not in repo_id:
            raise ValueError(f"{repo_id!r} is not OWNER/NAME")
        if unreachable := hub_unreachable(api.endpoint if api else None):
            raise ConnectionError(unreachable)  # said at once, not after huggingface_hub's 23 s of retries
        scheduler = FlagScheduler(root, repo_id, every, api)
    except Exception as error:  # a bad setting, the network, the token: the app goes on without pushing
        reason = f"{type(error).__name__}: {_first_line(error)}"
        log.error("flags: not pushed to datasets/%s (%s); check FLAG_REPO, HF_TOKEN (it must be able to write "
                  "there) and the network, then restart", repo_id, reason)
        where = KEPT_UNTIL_RESTART if on_space else "They stay on this server only"
        return None, f"{flags.NOTICE} {where}: they cannot be sent to the Hub dataset `{repo_id}` ({reason})."
    log.info("flags: pushed to datasets/%s every %g minute(s) and when the app stops", repo_id, every)
    return scheduler, ("Flagging stores this picture, the model's answer and your correction **on this server**, "
                       f"and every {every:g} minutes in the owner's Hub dataset `{repo_id}`, to check and retrain "
                       f"the model.")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


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
        commit, pushed = push(args.folder, args.repo, private=not args.public)
    except InputError as error:
        parser.exit(2, f"{error}\n")
    print(f"Pushed {count(pushed)} to datasets/{args.repo} at commit {commit}")
    return commit


if __name__ == "__main__":
    main()
