"""Downloading the chosen images: concurrent, rate-limited, retried on passing failures, each
file checked (MD5, Flickr's placeholder, decoding) before it is renamed into place; failures
for good are remembered in download_failures.json so a resumed run does not ask again."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from training.open_images.atomic import write_atomic
from training.open_images.classes import Class
from training.open_images.manifest import Report
from training.open_images.selection import Box, assign, pixel_box

# SHA-256 of images served in place of a removed photo without a telling redirect.
PLACEHOLDER_SHA256: frozenset[str] = frozenset()
PLACEHOLDER = "placeholder: photo no longer available"
USER_AGENT = "open-images-crops/1.0 (Python urllib)"


@dataclass(frozen=True)
class DownloadSettings:
    """--workers, --retries, --backoff, --rate, --timeout, --retry-failed (their help says what each does)."""
    workers: int
    retries: int
    backoff: float
    rate: float
    timeout: float
    retry_failed: bool


class RateLimit:
    """At most `rate` requests a second over all threads: each request takes the next free slot."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self):
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        time.sleep(slot - now)


class Retry(Exception):
    """Worth another try: connection trouble, a timeout, HTTP 429 or 5xx."""


class Skip(Exception):
    """Skipped for good, with this reason."""


def fetch(url: str, part: Path, timeout: float):
    """GET url into part (redirects followed); returns (final URL, MD5 digest, SHA-256 hex)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            while chunk := response.read(1 << 16):  # a body cut short raises IncompleteRead
                out.write(chunk)
                md5.update(chunk)
                sha.update(chunk)
            return response.geturl(), md5.digest(), sha.hexdigest()
    except urllib.error.HTTPError as error:
        error.close()  # its body is not needed
        if error.code == 429 or error.code >= 500:
            raise Retry(f"HTTP {error.code}") from None
        if error.code in (403, 404, 410):
            raise Skip(f"not found (HTTP {error.code})") from None
        raise Skip(f"HTTP {error.code}") from None
    except (urllib.error.URLError, HTTPException, OSError) as error:  # refused, reset, timed out
        raise Retry(f"{type(error).__name__}: {getattr(error, 'reason', error)}") from None


def download(image: str, info: dict, folder: Path, settings: DownloadSettings, limit: RateLimit) -> tuple[str | None, bool]:
    """Fetch one image to folder/<ImageID>.jpg. Returns (None, _) when kept, else (reason,
    whether the failure is for good). Only a checked file is renamed into place."""
    part = folder / f"{image}.jpg.part"
    try:
        for attempt in range(settings.retries + 1):
            if attempt:
                time.sleep(settings.backoff * 2 ** (attempt - 1))
            limit.wait()
            try:
                final_url, md5, sha = fetch(info["url"], part, settings.timeout)
                break
            except Retry as error:
                last = error
        else:
            return f"download failed after {settings.retries + 1} attempts: {last}", False
        if "photo_unavailable" in final_url or sha in PLACEHOLDER_SHA256:
            raise Skip(PLACEHOLDER)  # Flickr redirects removed photos to a placeholder image
        if info["md5"] and base64.b64encode(md5).decode() != info["md5"]:
            raise Skip("MD5 mismatch")  # OriginalMD5 is base64 of the raw digest
        try:
            with Image.open(part) as decoded:
                decoded.load()
        except Exception as error:  # Pillow raises many kinds; the class name keeps the reason path-free
            raise Skip(f"undecodable image ({type(error).__name__})") from None
        os.replace(part, folder / f"{image}.jpg")
        return None, False
    except Skip as error:
        return str(error), True
    finally:
        part.unlink(missing_ok=True)


def download_all(wanted: list[str], images: dict, out: Path, settings: DownloadSettings, report: Report, progress: bool) -> int:
    """Download those of `wanted` that are missing, concurrently; returns how many images were fetched."""
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for part in folder.glob("*.part"):
        part.unlink()  # left by a run that was cut off
    failures_file = out / "download_failures.json"
    failures = json.loads(failures_file.read_text()) if failures_file.is_file() else {}
    todo = []
    for image in sorted(wanted):
        known = failures.get(image)
        if (folder / f"{image}.jpg").is_file():
            continue  # fetched and checked by an earlier run
        if known and known["url"] == images[image]["url"] and not settings.retry_failed:
            report.skip_image(image, known["reason"])
        else:
            todo.append(image)

    fetched, limit = 0, RateLimit(settings.rate)
    pool = ThreadPoolExecutor(settings.workers)
    try:
        futures = {pool.submit(download, image, images[image], folder, settings, limit): image for image in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="downloading", unit="img",
                           file=sys.stderr, disable=not progress):
            image = futures[future]
            reason, for_good = future.result()
            if reason is None:
                fetched += 1
                failures.pop(image, None)
            else:
                report.skip_image(image, reason)
                if for_good:
                    failures[image] = {"url": images[image]["url"], "reason": reason}
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, start nothing new
        write_atomic(failures_file, json.dumps(failures, indent=1, sort_keys=True).encode())
    return fetched


def stored_size(out: Path, image: str, report: Report) -> tuple[int, int] | None:
    """The size of a downloaded image as stored (no EXIF orientation), or None when there is none."""
    path = out / "images" / f"{image}.jpg"
    if not path.is_file():
        return None  # failed: reported while downloading
    try:
        with Image.open(path) as stored:
            return stored.size
    except Exception as error:  # Pillow raises many kinds; the class name keeps the reason path-free
        report.skip_image(image, f"undecodable image ({type(error).__name__})")
        return None


def gather(candidates: dict[str, list[Box]], images: dict, targets: dict[str, Class], cap: int, out: Path,
           settings: DownloadSettings, report: Report, progress: bool) -> tuple[dict[str, list[Box]], int]:
    """Download in ImageID order until every class has `cap` croppable boxes (0: all of them);
    returns (ImageID -> boxes to crop, images fetched). An image that fails makes room for the
    next, so a class falls short only when its candidates run out; what is taken is the first
    `cap` croppable boxes per class by (ImageID, k), however the downloads finish."""
    sizes = {image: stored_size(out, image, report) for image in candidates if (out / "images" / f"{image}.jpg").is_file()}
    fetched = 0
    while True:
        chosen, wanted = assign(candidates, targets, cap, sizes)
        if not wanted:
            break
        fetched += download_all(wanted, images, out, settings, report, progress)
        sizes.update({image: stored_size(out, image, report) for image in wanted})
    for image in sorted(candidates):  # what was left out, and why
        kept = chosen.get(image, [])
        for box in candidates[image]:
            folder = targets[box.label].folder
            if image in sizes and sizes[image] is None:
                continue  # the image failed: reported as a skipped image
            if image in sizes and pixel_box(box, *sizes[image]) is None:
                report.skip_box(box, folder, "tiny box")
            elif box not in kept:
                report.dropped["over --max-per-class"][folder] += 1
    return chosen, fetched
