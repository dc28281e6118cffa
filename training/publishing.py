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
# id on the Hub, or "other" with a name and a link; what the terms say). A model trained on a
# dataset not listed (your own radiographs) carries the data owner's terms.
TERMS = {
    "stanford-dogs": ("other", "imagenet-terms", "https://image-net.org/download.php",
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
OWNER_TERMS = ("other", "data-owner-terms", None, "Trained on data whose terms its owner sets: state them here.")


def license_of(datasets: list[str]) -> tuple[dict, str]:
    """The card's licence fields and its sentence on the data's terms: the datasets' own licence
    when they share one, else "other" naming the most restrictive (the first listed)."""
    terms = [TERMS.get(name, OWNER_TERMS) for name in datasets] or [OWNER_TERMS]
    kinds = {licence for licence, *_ in terms}
    licence, name, link, _ = terms[0]
    fields = {"license": licence} if len(kinds) == 1 and licence != "other" else \
        {"license": "other", "license_name": name or licence, **({"license_link": link} if link else {})}
    return fields, " ".join(sentence for *_, sentence in terms)


def model_card(title: str, summary: str, metadata: dict, tags: list[str], datasets: list[str],
               metric_rows: list[tuple[str, float]], body: str = "", baseline_rows=(),
               pipeline_tag: str = "image-classification", networks=("classifier",)) -> str:
    """A Hub model card: front matter from huggingface_hub's ModelCardData, whose `eval_results`
    (the model's held-out results; baselines are not the model's) the Hub shows as the evaluation
    widget, then the evaluation table with the baselines beside the results."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    dataset_name = metadata["dataset"]["name"]
    results = [EvalResult(task_type=pipeline_tag, dataset_type=(datasets or [metadata["task"]])[0],
                          dataset_name=dataset_name, dataset_split="test", metric_type=metric_type(name),
                          metric_name=name, metric_value=round(float(value), 6))
               for name, value in metric_rows]
    licence, terms = license_of(datasets)
    data = ModelCardData(
        model_name=title,
        **licence,
        library_name="keras",
        pipeline_tag=pipeline_tag,
        tags=["keras", "tensorboard", pipeline_tag, *tags],
        datasets=datasets or None,
        metrics=sorted({result.metric_type for result in results}),
        eval_results=results or None,
    )
    metric_rows = [*metric_rows, *baseline_rows]
    table = "\n".join(f"| {name} | {value:.4f} |" for name, value in metric_rows)
    dataset = metadata["dataset"]
    prov = metadata["provenance"]
    loading = " and ".join(f'`keras.saving.load_model("{name}.keras", safe_mode=True)`' for name in networks)
    demo = "\n> **Demo model trained on synthetic data — its predictions mean nothing.**\n" if metadata.get("demo") else ""
    text = f"""---
{data.to_yaml()}
---

# {title}
{demo}
{summary}

## Evaluation (held-out test split)

| metric | value |
|---|---|
{table}

## Training data

{dataset['name']} — {dataset.get('images', '?')} images, split: {dataset.get('split', '?')}.
Content hash (SHA-256 of paths and bytes): `{dataset.get('sha256', '?')}`.{hub_source(dataset)}{extra_data_line(dataset)}

Terms of the data: {terms} The model's licence above follows them.

## Inputs

RGB image resized to {metadata['input']['size'][0]} x {metadata['input']['size'][1]}, float pixels in 0..255;
normalisation is inside the network. Load with
{loading}; labels in output order are in `task.json`.

## Reproduce

```
{prov['command']}
```

Code revision `{prov['code_revision']}`; packages: {', '.join(f'{k} {v}' for k, v in prov['packages'].items())}.
{body}
"""
    return str(ModelCard(text))


def hub_source(dataset: dict) -> str:
    """The card's line naming a dataset that came from the Hub, pinned; "" for a local one."""
    if "repo" not in dataset:
        return ""
    return f"\nFrom the Hub: [`{dataset['repo']}`](https://huggingface.co/datasets/{dataset['repo']}) at commit `{dataset['commit']}`."


def extra_data_line(dataset: dict) -> str:
    """The card's line on the --extra-data folder trained on, if any; "" without one."""
    extra = dataset.get("report", {}).get("extra_data")
    if not extra:
        return ""
    dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in extra.get("dropped", {}).items())
    # A Hub dataset of flags by its repo and commit; a local folder by its name (not the trainer's path).
    named = f"{extra['repo']}@{extra['commit']}" if "repo" in extra else Path(extra["folder"]).name
    return (f"\nThe training split also holds {extra['extra_examples']} extra examples from `{named}` "
            f"(--extra-data; never in validation or test){f'; left out: {dropped}' if dropped else ''}.")


def metric_type(name: str) -> str:
    """A metric's machine name for the Hub, from its name on the card: "F1 (macro)" -> "f1_macro"."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


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
    """Save the bundle (networks in float32, whatever precision they trained in)."""
    path = save_bundle(out, {name: float32(model) for name, model in networks.items()}, metadata, card, extra_files)
    print(f"Model bundle written to {path}")
    return path


def release(run, out: Path, networks: dict, metadata: dict, card: str, files: dict, repo: str | None,
            private: bool = False) -> Path:
    """The end of every recipe: the bundle written with the run's training history in logs/, the
    run's work folder closed, and the bundle pushed to the Hub `repo` if one is given."""
    path = write_bundle(out, networks, metadata, card, {**files, **run.logs()})
    run.finish()
    if repo:
        push_to_hub(path, repo, metadata["task"], private)
    return path


def float32(model):
    """The model itself, or, if it was built under the mixed_float16 policy, the same network in
    float32 with the same weights: a bundle runs on CPUs too, where float16 is slow."""

    def policies(value):
        if isinstance(value, dict):
            if value.get("class_name") == "DTypePolicy" and value.get("config", {}).get("name") == "mixed_float16":
                return {**value, "config": {**value["config"], "name": "float32"}}
            return {key: policies(item) for key, item in value.items()}
        if isinstance(value, list):
            return [policies(item) for item in value]
        return value

    config = model.get_config()
    converted = policies(config)
    if converted == config:
        return model
    copy = model.__class__.from_config(converted)
    copy.set_weights(model.get_weights())
    return copy


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


def push_to_hub(folder: Path, repo_id: str, task: str, private: bool = False) -> str:
    """Upload the bundle folder as it is to a model repo (private if asked); returns the commit to pin."""
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
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
