"""Datasets on the Hugging Face Hub, pinned by commit: a built dataset pushed as a dataset repo,
and `--data hf://datasets/OWNER/NAME@COMMIT` fetched back for a recipe, so that the "data" of
{data, code, environment} can be handed to anyone and a model names its data by commit.

huggingface_hub reads HF_ENDPOINT and HF_TOKEN (or the saved login) as it does for models.
"""

from __future__ import annotations

import re
from pathlib import Path

PREFIX = "hf://datasets/"
COMMIT = re.compile(r"[0-9a-f]{40}")
REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def parse_reference(text: str) -> tuple[str, str]:
    """'hf://datasets/OWNER/NAME@COMMIT' -> (repo id, commit). Anything else stops with how to pin."""
    example = f"{PREFIX}OWNER/NAME@COMMIT (COMMIT: the 40-hex id the push printed, or one from the repo's history)"
    if not text.startswith(PREFIX):
        raise SystemExit(f"{text!r} is not a Hub dataset reference: use {example}")
    repo, _, commit = text[len(PREFIX):].partition("@")
    if not REPO.fullmatch(repo):
        raise SystemExit(f"{text!r}: {repo!r} is not a repo id (OWNER/NAME); use {example}")
    if not commit:
        raise SystemExit(f"{text!r} names no commit: a dataset that can change under the model is no provenance. "
                         f"Pin it: {example}")
    if not COMMIT.fullmatch(commit):
        raise SystemExit(f"{text!r}: {commit!r} is not a commit id (a branch or tag moves); use {example}")
    return repo, commit


def resolve_data(text: str, allow_patterns: list[str] | None = None) -> tuple[Path, dict]:
    """A recipe's --data: a local folder as it is, or a Hub dataset downloaded at its commit (once:
    huggingface_hub's cache keeps it; only the files matching `allow_patterns`, if given). Returns
    the folder and what task.json's dataset entry records of where it came from ({} for a local folder)."""
    if not text.startswith("hf://"):
        return Path(text), {}
    repo, commit = parse_reference(text)
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    from core.source import snapshot

    try:
        folder = snapshot(repo, commit, "dataset", allow_patterns=allow_patterns)
    except RevisionNotFoundError:
        raise SystemExit(f"The dataset repo {repo} has no commit {commit}") from None
    except RepositoryNotFoundError:
        raise SystemExit(f"No dataset repo {repo} on the Hub (a private one needs `huggingface-cli login` or HF_TOKEN)") from None
    return Path(folder), {"repo": repo, "commit": commit}


def push_dataset(repo: str, files: dict[str, Path | bytes], private: bool, message: str) -> str:
    """Commit exactly `files` to the dataset repo `repo` (publishing.push); returns the commit id."""
    from training.publishing import push

    return push(repo, "dataset", files, private, message)
