"""Provenance, the model card, writing the bundle, and publishing it to the Hub."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

from core.bundle import save_bundle
from core.preprocess import PREPROCESSING

ROOT = Path(__file__).resolve().parent.parent


PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pillow", "scipy", "huggingface-hub")


def provenance() -> dict:
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
    return {
        "code_revision": revision + ("-dirty" if dirty else ""),
        "packages": versions,
        "command": " ".join(["python -m " + Path(sys.argv[0]).with_suffix("").name, *sys.argv[1:]]),
    }


def model_card(title: str, summary: str, metadata: dict, tags: list[str], datasets: list[str],
               metric_rows: list[tuple[str, float]], body: str = "",
               pipeline_tag: str = "image-classification", networks=("classifier",)) -> str:
    """A Hub model card: front matter from huggingface_hub's ModelCardData, then the evaluation table."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="keras",
        pipeline_tag=pipeline_tag,
        tags=["keras", pipeline_tag, *tags],
        datasets=datasets,
        metrics=sorted({name.split(" ")[0].lower() for name, _ in metric_rows}),
    )
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
Content hash (SHA-256 of paths and bytes): `{dataset.get('sha256', '?')}`.

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


def base_metadata(task: str, labels: list[str], size: int, metrics: dict, dataset: dict, demo: bool = False,
                  **extra) -> dict:
    return {
        "task": task,
        "labels": labels,
        "input": {"size": [size, size], "channels": 3},
        "preprocessing": PREPROCESSING,
        "thresholds": {},
        "metrics": metrics,
        "dataset": dataset,
        "provenance": provenance(),
        "demo": demo,
        **extra,
    }


def write_bundle(out: Path, networks: dict, metadata: dict, card: str, extra_files=None) -> Path:
    path = save_bundle(out, networks, metadata, card, extra_files)
    print(f"Model bundle written to {path}")
    return path


def push_to_hub(folder: Path, repo_id: str, task: str) -> str:
    """Create the repo if needed and upload the bundle folder; returns the commit to pin."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message=f"Upload {folder.name} model bundle")
    commit = info.oid
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
