"""Downloading the chosen images: concurrent over one pooled client (http_client), rate-limited,
retried on passing failures, each file checked (MD5, Flickr's placeholder, decoding) before it
is renamed into place; failures for good are remembered in download_failures.json so a resumed
run does not ask again, and a source that does not answer stops the build (breaker)."""

from __future__ import annotations

import base64
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import urllib3
from PIL import Image
from tqdm import tqdm

from core.atomic import atomic_file, write_atomic
from training.open_images.breaker import CircuitBreaker, Outcome
from training.open_images.classes import Class
from training.open_images.http_client import Failed, RateLimit, Skip, attempts, fetch, pooled_client
from training.open_images.report import Report
from training.open_images.selection import Box, assign, pixel_box

# SHA-256 of images served in place of a removed photo without a telling redirect.
PLACEHOLDER_SHA256: frozenset[str] = frozenset()
PLACEHOLDER = "placeholder: photo no longer available"


@dataclass(frozen=True)
class DownloadSettings:
    """--workers, --retries, --backoff, --rate, --timeout, --retry-failed (their help says what each does)."""
    workers: int
    retries: int
    backoff: float
    rate: float
    timeout: float
    retry_failed: bool


def download(image: str, info: dict, folder: Path, settings: DownloadSettings, client: urllib3.PoolManager,
             limit: RateLimit) -> Outcome:
    """Fetch one image to folder/<ImageID>.jpg; only a checked file is renamed into place.
    --retries bounds the failed tries of every kind together: urllib3 retries requests, and
    this loop a body cut off mid-stream with what is left."""
    failed = 0
    try:
        with atomic_file(folder / f"{image}.jpg") as part:
            while True:
                limit.wait()
                try:
                    final_url, md5, sha = fetch(client, info["url"], part, attempts(settings.retries - failed, settings.backoff, limit))
                    break
                except Failed as error:
                    failed += error.tries
                    if failed > settings.retries:
                        raise
                    time.sleep(settings.backoff * 2 ** (failed - 1))
            if "photo_unavailable" in final_url or sha in PLACEHOLDER_SHA256:
                raise Skip(PLACEHOLDER)  # Flickr redirects removed photos to a placeholder image
            if info["md5"] and base64.b64encode(md5).decode() != info["md5"]:
                raise Skip("MD5 mismatch")  # OriginalMD5 is base64 of the raw digest
            try:
                with Image.open(part) as decoded:
                    decoded.load()
            except Exception as error:  # Pillow raises many kinds; the class name keeps the reason path-free
                raise Skip(f"undecodable image ({type(error).__name__})") from None
        return Outcome()
    except Skip as error:
        return Outcome(str(error), for_good=True, refused=error.refused)
    except Failed as error:
        attempts_made = f"{failed} attempt" + ("s" if failed > 1 else "")
        return Outcome(f"download failed after {attempts_made}: {error}", unreachable=error.unreachable, error=str(error))


def download_all(wanted: list[str], images: dict, out: Path, settings: DownloadSettings, report: Report, progress: bool,
                 client: urllib3.PoolManager, limit: RateLimit, breaker: CircuitBreaker) -> int:
    """Download those of `wanted` that are missing, concurrently; returns how many images were fetched.
    Stops the build (SystemExit, naming the source and its error) when the breaker trips."""
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

    fetched = 0
    pool = ThreadPoolExecutor(settings.workers)
    try:
        futures = {pool.submit(download, image, images[image], folder, settings, client, limit): image for image in todo}
        with tqdm(total=len(futures), desc="downloading", unit="img", file=sys.stderr, disable=not progress) as bar:
            for future in as_completed(futures):
                image = futures[future]
                outcome = future.result()
                bar.update()
                if outcome.reason is None:
                    fetched += 1
                    failures.pop(image, None)
                elif outcome.refused:  # not remembered: counted as refused again in the next run's manifest
                    report.refuse_image(image, outcome.refused, outcome.reason)
                else:
                    report.skip_image(image, outcome.reason)
                    if outcome.for_good:
                        failures[image] = {"url": images[image]["url"], "reason": outcome.reason}
                stop = breaker.record(images[image]["url"], outcome)
                if stop:
                    pool.shutdown(cancel_futures=True)  # before the bar closes, so its line is not the last
                    raise SystemExit(stop)
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C or a tripped breaker, start nothing new
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
    client, limit, breaker = pooled_client(settings.workers, settings.timeout), RateLimit(settings.rate), CircuitBreaker()
    try:
        while True:
            chosen, wanted = assign(candidates, targets, cap, sizes)
            if not wanted:
                break
            fetched += download_all(wanted, images, out, settings, report, progress, client, limit, breaker)
            sizes.update({image: stored_size(out, image, report) for image in wanted})
    finally:
        client.clear()  # close the kept-alive connections
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
