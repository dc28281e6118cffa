"""Provenance, the model card, writing the bundle, and publishing it to the Hub."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable

from core.bundle import save_bundle
from core.preprocess import PREPROCESSING
from training import cluster

ROOT = Path(__file__).resolve().parent.parent


PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pillow", "scipy", "huggingface-hub")


def provenance(command: str) -> dict:
    """What rebuilds the model besides the data: the code revision, the package versions, and the
    command that ran (as `options.command` spells it, so it runs again as it is)."""

    def git(*args):
        try:
            result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return result.stdout.strip() if result.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            return ""

    revision = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            pass
    return {"code_revision": revision + ("-dirty" if dirty else ""), "packages": versions, "command": command}


@dataclass
class Card:
    """What a task's model card says besides the figures."""

    title: str
    summary: str  # may name {classes} or {labels} (their count), {backbone}, {loss}
    tags: list[str]
    datasets: list[str]
    label_name: str = "class"
    report_section: Callable[[dict], str] | None = None  # the dataset's own data report, from task.json's


# The terms of each dataset a model is trained on, which its card's `license` follows: (license
# id on the Hub, or "other" with a name; the dataset's page; what the terms say). A model trained on
# a dataset not listed (your own radiographs) carries the data owner's terms, which the bundle's
# LICENSE.md states (the card links it).
TERMS = {
    "stanford-dogs": ("other", "imagenet-terms", "http://vision.stanford.edu/aditya86/ImageNetDogs/",
                      "Stanford Dogs' images come from ImageNet: non-commercial research and education only."),
    "harrison": ("other", "harrison-research", "https://github.com/minstone/HARRISON-Dataset",
                 "HARRISON's images are Instagram posts collected for research; no licence for other uses."),
    "movie-posters": ("other", "movie-posters-copyright", "https://www.kaggle.com/datasets/neha1703/movie-genre-from-its-poster",
                      "The posters are the studios' copyright, collected for research."),
    "imdb-wiki": ("other", "imdb-wiki-research-only", "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/",
                  "IMDB-WIKI is for non-commercial research purposes only."),
    "utkface": ("other", "utkface-research-only", "https://susanqq.github.io/UTKFace/",
                "UTKFace is for non-commercial research purposes only."),
    "open-images": ("cc-by-4.0", None, "https://storage.googleapis.com/openimages/web/factsfigures_v7.html",
                    "Open Images' annotations are CC BY 4.0; its images are listed as CC BY 2.0, each with its "
                    "author (attribution required)."),
}
OWNER_TERMS = ("other", "data-owner-terms", None, "Trained on data whose terms its owner sets: state them in LICENSE.md.")
LICENSE_FILE = "LICENSE.md"
# What the card's table calls a metric -> its id among the Hub's metrics (huggingface.co/metrics) and
# the arguments that say which variant it is. Rows not listed (Dice, precision@k) stay in the table only.
HUB_METRICS = {
    "top-1 accuracy": ("accuracy", None), "accuracy": ("accuracy", None),
    "top-5 accuracy": ("accuracy", {"top_k": 5}),
    "precision (macro)": ("precision", {"average": "macro"}), "recall (macro)": ("recall", {"average": "macro"}),
    "F1 (macro)": ("f1", {"average": "macro"}), "F1 (micro)": ("f1", {"average": "micro"}),
    "IoU (mean over classes)": ("mean_iou", None), "gender accuracy": ("accuracy", None),
    "age MAE (years)": ("mae", None), "age RMSE (years)": ("mse", {"squared": False}),
    "rotation MAE (degrees)": ("mae", None),
}


@dataclass(frozen=True)
class Licence:
    """A model's licence as its card declares it (always usable on the Hub: a known id, or "other"
    with a name and a link), and the sentence that explains it."""

    id: str
    name: str | None
    link: str | None
    terms: str

    def fields(self) -> dict:
        if self.id != "other":
            return {"license": self.id}
        return {"license": "other", "license_name": self.name, "license_link": self.link or LICENSE_FILE}


def license_of(datasets: list[str]) -> Licence:
    """The licence the data's terms give the model: the datasets' own when they share one, else
    "other" naming the most restrictive (the first listed)."""
    terms = [TERMS.get(name, OWNER_TERMS) for name in datasets] or [OWNER_TERMS]
    kinds = {licence for licence, *_ in terms}
    licence, name, link, _ = terms[0]
    sentence = " ".join(sentence for *_, sentence in terms)
    if len(kinds) == 1 and licence != "other":
        return Licence(licence, None, None, sentence)
    return Licence("other", name or licence, link, sentence)


@dataclass(frozen=True)
class WrittenCard:
    """A model card's text (README.md) and the files it links (LICENSE.md)."""

    text: str
    files: dict


def model_card(title: str, summary: str, metadata: dict, tags: list[str], datasets: list[str],
               metric_rows: list[tuple[str, float]], usage: str, body: str = "", baseline_rows=(),
               pipeline_tag: str = "image-classification", licence: Licence | None = None) -> WrittenCard:
    """A Hub model card: front matter from huggingface_hub's ModelCardData, whose `eval_results`
    (the model's held-out results under the Hub's metric ids; baselines are not the model's) the
    Hub shows as the evaluation widget; how to use it (`usage`, the snippet the card runs, from
    `usage_snippet`); then the evaluation table with the baselines beside the results.

    `datasets` are the training data's names in TERMS. The front matter's `datasets` lists Hub ids
    only: the dataset repo when the data came from the Hub, else none (its name and page are in
    the evaluation results)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    dataset = metadata["dataset"]
    slug = (datasets or [metadata["task"]])[0]
    from_hub = dataset.get("repo")
    page = TERMS.get(slug, OWNER_TERMS)[2]
    results = [EvalResult(task_type=pipeline_tag, dataset_type=from_hub or slug, dataset_name=dataset["name"],
                          dataset_split="test", dataset_revision=dataset.get("commit") if from_hub else None,
                          metric_type=HUB_METRICS[name][0], metric_args=HUB_METRICS[name][1], metric_name=name,
                          metric_value=round(float(value), 6),
                          source_name=None if from_hub or not page else dataset["name"],
                          source_url=None if from_hub else page)
               for name, value in metric_rows if name in HUB_METRICS]
    licence = licence or license_of(datasets)
    data = ModelCardData(
        model_name=title,
        **licence.fields(),
        library_name="keras",
        pipeline_tag=pipeline_tag,
        tags=["keras", "tensorboard", pipeline_tag, *tags],
        datasets=[from_hub] if from_hub else None,
        metrics=sorted({result.metric_type for result in results}) or None,
        eval_results=results or None,
    )
    metric_rows = [*metric_rows, *baseline_rows]
    table = "\n".join(f"| {name} | {value:.4f} |" for name, value in metric_rows)
    prov = metadata["provenance"]
    demo = "\n> **Demo model trained on synthetic data — its predictions mean nothing.**\n" if metadata.get("demo") else ""
    text = f"""---
{data.to_yaml()}
---

# {title}
{demo}
{summary}

## How to use

With `keras` and `huggingface_hub` installed (and Pillow), nothing else:

```python
{usage.strip()}
```

The network takes RGB pixels in 0..255 at the input size in `task.json` (normalisation is inside
it); `task.json` also holds the labels in output order and the tuned thresholds.

## Evaluation (held-out test split)

| metric | value |
|---|---|
{table}

## Training data

{dataset['name']} — {dataset.get('images', '?')} images, split: {dataset.get('split', '?')}.
Content hash (SHA-256 of paths and bytes): `{dataset.get('sha256', '?')}`.{hub_source(dataset)}{extra_data_line(dataset)}

Terms: {licence.terms} The model's licence above follows them ({LICENSE_FILE}).

## Reproduce

```
{prov['command']}
```

Code revision `{prov['code_revision']}`; packages: {', '.join(f'{k} {v}' for k, v in prov['packages'].items())}.
{body}
"""
    return WrittenCard(str(ModelCard(text)), licence_file(licence))


# The lines that load a bundle from the Hub and read its task.json; each kind then turns a photo into
# the network's input and the output into labels (the card's "How to use", run verbatim by a test).
_LOAD = """import json

import keras
import numpy as np
from huggingface_hub import hf_hub_download
from PIL import Image

model = keras.saving.load_model("hf://{repo}")
task = json.load(open(hf_hub_download("{repo}", "task.json")))
height, width = task["input"]["size"]
"""
_PHOTO = """pixels = np.asarray(Image.open("{photo}").convert("RGB").resize((width, height), Image.BILINEAR), "float32")
"""
USAGE = {
    # One softmax over the labels (a dict output adds named extras, e.g. the dog probability).
    "single-label": _LOAD + _PHOTO + """outputs = model.predict(pixels[None], verbose=0)
scores = outputs["class"][0] if isinstance(outputs, dict) else outputs[0]
print(sorted(zip(task["labels"], scores.tolist()), key=lambda pair: -pair[1])[:5])
""",
    # One sigmoid per label, each with its threshold tuned on validation.
    "multi-label": _LOAD + _PHOTO + """scores = model.predict(pixels[None], verbose=0)[0]
thresholds = task["thresholds"]["per_label"]
print({label: round(score, 3) for label, score in zip(task["labels"], scores.tolist()) if score >= thresholds[label]})
""",
    # The radiograph letterboxed (aspect kept, centred on black), one probability map per channel.
    "segmentation": _LOAD + """image = Image.open("{photo}").convert("RGB")
scale = width / max(image.size)
inner = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
canvas = Image.new("RGB", (width, height))
canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
probabilities = model.predict(np.asarray(canvas, "float32")[None], verbose=0)[0]
lesions = probabilities[..., 1:] if task["activation"] == "softmax" else probabilities  # channel 0: background
print({label: float((lesions[..., k] >= task["thresholds"]["global"]).mean()) for k, label in enumerate(task["labels"])})
""",
    # A face, eyes level, cropped around it (task.json's "face" block says how the app crops).
    "age-gender": _LOAD + _PHOTO.replace("{photo}", "{face}") + """outputs = model.predict(pixels[None], verbose=0)
print(dict(zip(task["labels"], outputs["gender"][0].tolist())), "age", float(outputs["age"][0, 0]))
""",
}
# The repo a card's snippet names until the bundle is pushed (push_to_hub names the real one).
PLACEHOLDER_REPO = "your-name/your-model"
EXAMPLE_PHOTO = {"single-label": "photo.jpg", "multi-label": "photo.jpg", "segmentation": "radiograph.png",
                 "age-gender": "face.jpg"}


def usage_snippet(kind: str, repo: str | None) -> str:
    """The card's "How to use" code for a bundle of `kind` pushed to `repo` (a placeholder without one)."""
    photo = EXAMPLE_PHOTO[kind]
    return USAGE[kind].replace("{repo}", repo or PLACEHOLDER_REPO).replace("{photo}", photo).replace("{face}", photo)


def licence_file(licence: Licence) -> dict:
    """The bundle's LICENSE.md, which an "other" licence links: what the terms are and why."""
    named = licence.id if licence.id != "other" else licence.name
    page = f"\n\nThe data's own terms: {licence.link}" if licence.link else ""
    return {LICENSE_FILE: f"# Licence: {named}\n\n{licence.terms}{page}\n".encode()}


def hub_source(dataset: dict) -> str:
    """The card's line naming a dataset that came from the Hub, pinned; "" for a local one."""
    if "repo" not in dataset:
        return ""
    return f"\nFrom the Hub: [`{dataset['repo']}`](https://huggingface.co/datasets/{dataset['repo']}) at commit `{dataset['commit']}`."


def extra_data_line(dataset: dict) -> str:
    """The card's line on the --flags folder trained on, if any; "" without one."""
    extra = dataset.get("report", {}).get("extra_data")
    if not extra:
        return ""
    dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in extra.get("dropped", {}).items())
    # A Hub dataset of flags by its repo and commit; a local folder by its name (not the trainer's path).
    named = f"{extra['repo']}@{extra['commit']}" if "repo" in extra else Path(extra["folder"]).name
    return (f"\nThe training split also holds {extra['extra_examples']} extra examples from `{named}` "
            f"(--flags; never in validation or test){f'; left out: {dropped}' if dropped else ''}.")


def base_metadata(task: str, labels: list[str], size: int, metrics: dict, dataset: dict, command: str,
                  demo: bool = False, **extra) -> dict:
    return {
        "task": task,
        "labels": labels,
        "input": {"size": [size, size], "channels": 3},
        "preprocessing": PREPROCESSING,
        "thresholds": {},
        "metrics": metrics,
        "dataset": dataset,
        "provenance": provenance(command),
        "demo": demo,
        **extra,
    }


def write_bundle(out: Path, networks: dict, metadata: dict, card: str, extra_files=None) -> Path:
    """Save the bundle: the first network at its root, plain (float32, uncompiled: core.bundle).
    In a cluster only the chief writes it (training/cluster.py)."""
    if not cluster.writes():
        return Path(out)
    path = save_bundle(out, networks, metadata, card, extra_files)
    print(f"Model bundle written to {path}")
    return path


def release(run, out: Path, networks: dict, metadata: dict, card: WrittenCard, files: dict, repo: str | None,
            private: bool = False) -> Path:
    """The end of every recipe: the bundle written with its card and the run's training history in
    logs/, the run's work folder closed, and the bundle pushed to the Hub `repo` if one is given.

    In a cluster the chief alone writes and pushes; the other workers delete their scratch folders
    and wait for it, so that no worker leaves the cluster while the chief still needs it, and the
    run ends everywhere at once."""
    path = Path(out)
    if run.writes:
        path = write_bundle(out, networks, metadata, card.text, {**files, **card.files, **run.logs()})
    run.finish()
    if repo:
        push_to_hub(path, repo, metadata["task"], private)
    team = cluster.team()
    if team is not None:
        try:
            written = team.from_chief(str(path))
        except Exception as error:  # noqa: BLE001  TensorFlow's errors of a peer gone have many types
            if not run.writes:
                raise
            print(f"The bundle is complete, but a worker left before the end ({type(error).__name__})")
        else:
            if not run.writes:
                print(f"{team.cluster.name}: done; the chief wrote the bundle ({written} on its machine)")
    return path


def push(repo: str, repo_type: str, files: dict, private: bool, message: str) -> str:
    """Create the repo if needed and commit exactly `files` (path in repo -> a file or its bytes):
    files of an earlier push that this one lacks are deleted in the same commit, so the commit
    holds this bundle or dataset and nothing left over. Returns the commit id to pin."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi()
    api.create_repo(repo, repo_type=repo_type, private=private, exist_ok=True)
    stale = set(api.list_repo_files(repo, repo_type=repo_type)) - set(files) - {".gitattributes"}
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(data) if isinstance(data, Path) else data)
                  for path, data in sorted(files.items())]
    operations += [CommitOperationDelete(path_in_repo=path) for path in sorted(stale)]
    return api.create_commit(repo, operations, commit_message=message, repo_type=repo_type).oid


def push_to_hub(folder: Path, repo_id: str, task: str, private: bool = False) -> str | None:
    """Upload the bundle folder to a model repo (private if asked), its card's snippet naming that
    repo; returns the commit to pin. In a cluster only the chief pushes (None elsewhere)."""
    if not cluster.writes():
        return None
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    card = folder / "README.md"
    if card.is_file():
        files["README.md"] = card.read_text(encoding="utf-8").replace(PLACEHOLDER_REPO, repo_id).encode()
    commit = push(repo_id, "model", files, private, f"Upload {folder.name} model bundle")
    print(f"Pushed to {repo_id} at commit {commit}. To serve it, pin it in models/hub.json:")
    print(f'  "{task}": {{"repo_id": "{repo_id}", "revision": "{commit}"}}')
    return commit


def examples_per_class(samples, count: int = 3) -> dict:
    """One held-out image for each of the first `count` classes, for the app's examples."""
    extra, seen = {}, set()
    for sample in samples:
        if sample.label not in seen and len(seen) < count:
            seen.add(sample.label)
            extra[f"examples/{Path(sample.path).name}"] = Path(sample.path).read_bytes()
    return extra
