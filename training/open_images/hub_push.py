"""--push-to-hub: the build as a Hub dataset repo (the imagefolder layout, metadata.jsonl with
each crop's source and licence, the manifest and a dataset card)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from training.datasets.hub import PREFIX as HUB_DATASETS
from training.datasets.hub import push_dataset

HOMEPAGE = "https://storage.googleapis.com/openimages/web/index.html"


def hub_licence(url: str) -> str:
    """A licence URL from the image lists as the Hub's licence id: .../licenses/by/2.0/ -> cc-by-2.0."""
    match = re.search(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)", url)
    return f"cc-{match.group(1)}-{match.group(2)}" if match else "other"


def crop_metadata(manifest: dict, images: dict, names: dict[str, str]) -> list[dict]:
    """metadata.jsonl's lines, one per crop: where it comes from and under which licence."""
    classes = {c["folder"]: c["name"] for c in manifest["classes"]}
    rows = []
    for crop in manifest["crops"]:
        info = images[crop["image"]]
        rows.append({"file_name": crop["file"], "ImageID": crop["image"], "box": crop["bbox"], "rotation": crop["rotation"],
                     "class": classes[crop["file"].split("/")[0]], "source_class": names.get(crop["label"], crop["label"]),
                     "source_label": crop["label"], "Subset": info["subset"], "downloaded_from": info["source"],
                     **info["licence"]})
    return rows


def dataset_card(repo: str, manifest: dict, rows: list[dict]) -> str:
    """The dataset card: front matter from huggingface_hub's DatasetCardData naming the licences
    and the source, then what is in it, under which terms, and how it was built."""
    from huggingface_hub import DatasetCard, DatasetCardData

    image_licences = Counter(row.get("License", "") for row in rows)
    licences = ["cc-by-4.0", *sorted({hub_licence(url) for url in image_licences} - {"cc-by-4.0"})]
    names = [c["name"] for c in manifest["classes"]]
    data = DatasetCardData(
        pretty_name=f"{' or '.join(names)} (Open Images crops)",
        license=licences,
        **({"license_name": "per-image", "license_link": "metadata.jsonl"} if "other" in licences else {}),
        task_categories=["image-classification"],
        size_categories=[next(label for limit, label in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"),
                                                         (1e6, "100K<n<1M"), (float("inf"), "n>1M")) if len(rows) < limit)],
        source_datasets=["open-images"],
        tags=["open-images", "imagefolder"],
    )
    classes = "\n".join(f"| {c['name']} | `{c['label']}` | `{c['folder']}/` | {manifest['counts'][c['folder']]} | "
                        + (", ".join(s["name"] for s in c.get("subclasses", [])) or "—") + " |" for c in manifest["classes"])
    terms = "\n".join(f"| {url or '(none given)'} | {count} |" for url, count in sorted(image_licences.items()))
    sources = "\n".join(f"| `{name}` | `{entry['sha256']}` |" for name, entry in sorted(manifest["sources"].items()))
    origins = Counter(row["downloaded_from"] for row in rows)
    text = f"""---
{data.to_yaml()}
---

# {data.pretty_name}

Boxes of {", ".join(names)} cropped out of [Open Images]({HOMEPAGE}), a folder per class
(the `imagefolder` layout: `<class>/<ImageID>_<k>.jpg`), built by `python -m training.open_images`.
`metadata.jsonl` has a line per crop: its image, its box (relative to the image's sides) and
rotation, its class and the Open Images class of the box itself, and the photo's licence and author.

| class | label | folder | crops | subclasses folded in |
|---|---|---|---|---|
{classes}

## Licence

- **Annotations** (boxes and labels): by Google LLC, under CC BY 4.0.
- **Images**: each crop is part of a photo under its own licence, recorded per crop in
  `metadata.jsonl` (`License`, `Author`, `AuthorProfileURL`, `Title`, `OriginalURL`,
  `OriginalLandingURL`). Open Images lists its images as CC BY 2.0 and says: "we make no
  representations or warranties regarding the license status of each image and you should verify
  the license for each image yourself". Attribute the authors when you share crops.

| licence, as the image list gives it | crops |
|---|---|
{terms}

## Source and build

Open Images metadata files, with their SHA-256 (`manifest.json` has these, the build options,
every skipped image and box with its reason, and every crop's SHA-256):

| file | SHA-256 |
|---|---|
{sources}

Images downloaded from {", ".join(f"{where} ({count})" for where, count in sorted(origins.items())) or "nowhere"}:
`mirror` is the Common Visual Data Foundation's copy (rescaled to at most 1024 px on the longest
side), `flickr` the photo's OriginalURL.

## Use

Pin a commit, so a model names its data exactly:

```
python -m training.sandwich --data hf://datasets/{repo}@COMMIT --out models/sandwich
```
"""
    return str(DatasetCard(text))


def publish(out: Path, repo: str, private: bool, manifest: dict, images: dict, names: dict[str, str]) -> str:
    """--push-to-hub: the crops, metadata.jsonl, manifest.json and the card as a Hub dataset repo."""
    rows = crop_metadata(manifest, images, names)
    files: dict = {crop["file"]: out / "images_cropped" / crop["file"] for crop in manifest["crops"]}
    files["metadata.jsonl"] = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
    files["manifest.json"] = (out / "manifest.json").read_bytes()
    files["README.md"] = dataset_card(repo, manifest, rows).encode()
    counts = ", ".join(f"{count} {folder}" for folder, count in manifest["counts"].items())
    commit = push_dataset(repo, files, private, f"Open Images crops: {counts}")
    print(f"Pushed to datasets/{repo} at commit {commit}. Train on it, pinned:")
    print(f"  python -m training.sandwich --data {HUB_DATASETS}{repo}@{commit} --out models/sandwich")
    return commit
