"""Where a tab's model comes from.

In order: a local bundle (`<models_dir>/<task>/`), else the task's Hub repo at
the commit pinned in `models/hub.json`, else the synthetic demo bundle
(`<models_dir>/demo/<task>/`, built by `python -m training.demo`). Nothing here
raises: a missing or broken model becomes notices that say what is wrong and
how to fix it, and the tab shows them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.bundle import Bundle, BundleError, load_bundle
from core.schema import TaskMetadata

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = ROOT / "models"
DEFAULT_HUB_CONFIG = ROOT / "models" / "hub.json"
DEMO_COMMAND = "python -m training.demo"
COMMIT = re.compile(r"[0-9a-f]{40}")
# What a bundle holds that serving does not read: its training history (TensorBoard files can be
# the largest part of a repo). Downloads and a Space's preload leave these out.
NOT_SERVED = ("logs/*", ".gitattributes")


@dataclass
class HubPin:
    repo_id: str
    revision: str


@dataclass
class Resolved:
    """The outcome for one task: a bundle (or None), where it came from, and notices.

    `origin` is the full path or `repo@commit` (for the log); `described` says it for people,
    without the server's own paths."""

    bundle: Bundle | None
    origin: str = ""
    notices: list[str] = field(default_factory=list)
    described: str = ""


def models_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("MODELS_DIR") or DEFAULT_MODELS_DIR)


def read_hub_config(path=None) -> dict[str, HubPin]:
    """`{"task": {"repo_id": "...", "revision": "<commit>"}}`; tasks without a repo are left out."""
    path = Path(path or os.environ.get("HUB_CONFIG") or DEFAULT_HUB_CONFIG)
    if not path.is_file():
        return {}
    entries = json.loads(path.read_text())
    return {
        task: HubPin(entry["repo_id"], str(entry.get("revision") or ""))
        for task, entry in entries.items()
        if isinstance(entry, dict) and entry.get("repo_id")
    }


def on_a_space() -> bool:
    """Running as a Hugging Face Space (the Hub sets SPACE_ID): notices then speak to its owner."""
    return bool(os.environ.get("SPACE_ID"))


def hub_unreachable(endpoint: str | None = None, timeout: float = 5.0) -> str | None:
    """Why the Hub at `endpoint` (default: HF_ENDPOINT's) cannot be reached, from one connection
    attempt; None when it answers, or when a proxy is set (the connection is then the proxy's to make).

    huggingface_hub retries a refused connection five times with backoff, 23 s in all: an app
    starting with the Hub down, or a wrong HF_ENDPOINT, would wait that long per pinned tab."""
    import socket
    import urllib.request
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(key in urllib.request.getproxies() for key in ("http", "https", "all")):
        return None
    address = urlparse(endpoint or constants.ENDPOINT)
    port = address.port or (443 if address.scheme == "https" else 80)
    try:
        socket.create_connection((address.hostname, port), timeout=timeout).close()
    except OSError as error:
        return f"cannot connect to {address.hostname}:{port}: {error.strerror or error}"
    return None


def snapshot(repo_id: str, revision: str, repo_type: str, **patterns) -> Path:
    """A repo snapshot at `revision`, downloaded or from huggingface_hub's cache. `snapshot_download`
    honours HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE; with the Hub unreachable, only the cache is
    read, at once (`hub_unreachable`)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    unreachable = None if constants.HF_HUB_OFFLINE else hub_unreachable()
    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, repo_type=repo_type,
                                      local_files_only=bool(unreachable), **patterns))
    except LocalEntryNotFoundError:
        if unreachable:
            raise ConnectionError(f"{unreachable}, and no copy of {repo_id}@{revision} is cached here") from None
        raise


def download_pinned(pin: HubPin) -> Path:
    """Download (or reuse from the local cache) a repo snapshot at its pinned revision."""
    return snapshot(pin.repo_id, pin.revision, "model", ignore_patterns=list(NOT_SERVED))


def served(name: str) -> bool:
    """Whether serving reads the repo file `name` (NOT_SERVED leaves the rest out)."""
    from fnmatch import fnmatch

    return not any(fnmatch(name, pattern) for pattern in NOT_SERVED)


def resolve(task: str, train_command: str, local_root: Path, hub: dict[str, HubPin],
            metadata_schema: type[TaskMetadata] = TaskMetadata) -> Resolved:
    """The task's model from the first source that has a usable one; `metadata_schema` is what its
    tab reads in task.json (core/schema.py), checked at load."""
    notices: list[str] = []
    local = local_root / task
    if local.exists():
        try:
            return Resolved(load_bundle(local, task, metadata_schema), origin=str(local), notices=notices,
                            described=f"local bundle `{local_root.name}/{task}`")
        except BundleError as error:
            notices.append(f"The local model is broken: {error}. Retrain it with `{train_command}`.")

    pin = hub.get(task)
    if pin is not None and not COMMIT.fullmatch(pin.revision):
        notices.append(
            f"models/hub.json names {pin.repo_id} for '{task}' " +
            (f"at '{pin.revision}', which is not a commit" if pin.revision else "without a revision") +
            ": a branch moves, so it is not used. Pin the 40-character commit id that the push printed "
            "(or one from the repo's history): \"revision\": \"<commit>\".")
    elif pin is not None:
        try:
            snapshot = download_pinned(pin)
            bundle = load_bundle(snapshot, task, metadata_schema)
            return Resolved(bundle, origin=f"{pin.repo_id}@{pin.revision}", notices=notices,
                            described=f"`{pin.repo_id}@{pin.revision}` (Hugging Face Hub)")
        except BundleError as error:
            notices.append(f"The Hub model {pin.repo_id}@{pin.revision} is broken: {error}.")
        except Exception as error:  # network, auth, missing revision, offline without cache
            notices.append(
                f"Could not download {pin.repo_id}@{pin.revision} from the Hub "
                f"({type(error).__name__}: {_first_line(error)}). Check the network and HF_TOKEN for a "
                f"private repo; on a machine without network set HF_HUB_OFFLINE=1 to skip the Hub "
                f"(cached snapshots still load). The pin lives in models/hub.json."
            )

    demo = local_root / "demo" / task
    if demo.exists():
        try:
            bundle = load_bundle(demo, task, metadata_schema)
            kind = "pretrained" if bundle.kind == "pretrained" else "demo"
            return Resolved(bundle, origin=str(demo), notices=notices,
                            described=f"{kind} bundle `{local_root.name}/demo/{task}`")
        except BundleError as error:
            notices.append(f"The demo model is broken: {error}. Rebuild it with `{DEMO_COMMAND}`.")

    if on_a_space():
        notices.append(
            f"No model for this tab yet. To the owner of this Space: pin a trained model's Hub repo for "
            f"'{task}' in models/hub.json (and run `python space.py` to preload it), or set the Space "
            f"variable BUILD_DEMOS=1 to build a demo model when the Space starts.")
    else:
        notices.append(
            f"No model for this tab. Train one with `{train_command}`, build the demo models with "
            f"`{DEMO_COMMAND}` (or start the app with --build-demos), or pin a Hub repo for '{task}' in "
            f"models/hub.json.")
    return Resolved(None, notices=notices)


# An absolute path in a library's message (a cache folder, a file): not for the page, which anyone sees.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s'\"`:,()]+/)+[^\s'\"`:,()]*")


def _first_line(error: Exception) -> str:
    """The error's first line, without paths of this server."""
    text = str(error).strip().splitlines()
    return _ABSOLUTE_PATH.sub("<path>", text[0][:300]) if text else ""
