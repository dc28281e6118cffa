"""training.open_images' downloads against loopback servers: one pooled client whose connections
are reused, Retry-After obeyed, a body cut off fetched again, and the circuit breaker (a source
that refuses, one that never answers, one that fails half the requests, one that mostly fails);
an empty build never exits 0."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from support.loopback import refusing_url
from support.open_images_server import FakeFlickr, box_row, image_row, jpeg, write_meta

from training import open_images
from training.open_images.breaker import ADVICE, FIRST, WINDOW

HAMBURGER = "/m/0cdn1"
PHOTO = jpeg(rects=[((8, 8, 32, 32), (230, 20, 20))])
QUICK = ["--workers", "4", "--rate", "1000", "--backoff", "0.01", "--quiet"]


def ids(count: int) -> list[str]:
    return [f"{n:016x}" for n in range(count)]  # ImageIDs as Open Images writes them


def photos(root, count: int, server=None, plan=(PHOTO,)):
    """Metadata for `count` train images with a Hamburger box each, served by `server` (a
    stand-in for the CVDF mirror, at /train/<ImageID>.jpg) as `plan` says; returns the folder."""
    for image in ids(count):
        if server:
            server.serve(f"/train/{image}.jpg", *plan)
    boxes = [box_row(image, HAMBURGER, (8, 8, 32, 32)) for image in ids(count)]
    images = [image_row(image, f"https://farm1.staticflickr.invalid/{image}.jpg") for image in ids(count)]
    return write_meta(root / "meta", {HAMBURGER: "Hamburger"}, {"train-annotations-bbox.csv": boxes},
                      {"train-images-boxable-with-rotation.csv": images})


def build(meta, out, mirror_url, *options):
    return open_images.main(["--classes", "Hamburger", "--meta", str(meta), "--out", str(out), "--mirror-url", mirror_url,
                             *QUICK, *options])


def test_one_pooled_client_keeps_its_connections_alive_across_images(tmp_path):
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, 24, mirror)
        assert build(meta, tmp_path / "out", mirror.url)["counts"] == {"hamburger": 24}
        assert sum(mirror.requests.values()) == 24
        assert 1 <= mirror.connections <= 4, f"{mirror.connections} TCP connections for 24 images and 4 workers: not reused"


def test_a_429_with_retry_after_is_waited_for_as_long_as_it_asks(tmp_path):
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, 3, mirror, plan=((429, {"Retry-After": "1"}), PHOTO))
        assert build(meta, tmp_path / "out", mirror.url)["counts"] == {"hamburger": 3}
        for path, times in mirror.times.items():  # --backoff alone would have waited 0.01 s
            assert len(times) == 2 and times[1] - times[0] >= 1.0, f"{path} asked again {times[1] - times[0]:.3f} s after a Retry-After: 1"


def test_a_body_cut_off_mid_stream_is_fetched_again_within_the_retries(tmp_path):
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, 2, mirror, plan=(("cut", 100), PHOTO))
        assert build(meta, tmp_path / "out", mirror.url)["counts"] == {"hamburger": 2}
        assert all((tmp_path / f"out/images/{image}.jpg").read_bytes() == PHOTO for image in ids(2))
        assert set(mirror.requests.values()) == {2}

        mirror.reset_counts()  # no retry left: failed for now, nothing half written kept
        with pytest.raises(SystemExit, match=re.escape("2 images were skipped, most of them: download failed after 1 attempt: "
                                                       "body cut off (connection broken) (2)")):
            build(meta, tmp_path / "cut", mirror.url, "--retries", "0")
        assert not list((tmp_path / "cut/images").iterdir())
        assert json.loads((tmp_path / "cut/download_failures.json").read_text()) == {}  # tried again next run


def run(*args):
    return subprocess.run([sys.executable, "-m", "training.open_images", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=os.environ)


def test_a_source_refusing_connections_stops_the_build_and_a_later_run_completes_it(tmp_path):
    count = FIRST + 20
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, count, mirror)
        common = ["--classes", "Hamburger", "--meta", str(meta), "--out", str(tmp_path / "out"), *QUICK, "--retries", "1"]
        done = run(*common, "--mirror-url", mirror.url, "--max-per-class", "10")
        assert done.returncode == 0, done.stderr
        with refusing_url() as down:
            done = run(*common, "--mirror-url", down)
        # Only the last line, no line per image; the 10 finished images stay for the next run.
        assert done.returncode != 0, "a build whose source refuses every connection exited 0"
        assert done.stderr.splitlines() == [f"cannot reach {down}: connection refused; 0 of {FIRST} images downloaded; {ADVICE}"]
        assert len(list((tmp_path / "out/images").glob("*.jpg"))) == 10

        mirror.reset_counts()
        done = run(*common, "--mirror-url", mirror.url)
        assert done.returncode == 0, done.stderr
        assert sum(mirror.requests.values()) == count - 10  # only what was missing
        assert json.loads((tmp_path / "out/manifest.json").read_text())["counts"] == {"hamburger": count}


def test_a_source_that_never_answers_stops_the_build_after_the_first_downloads(tmp_path):
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, FIRST + 20, mirror, plan=("hang",))
        with pytest.raises(SystemExit, match=re.escape(f"cannot reach {mirror.url}: timed out; 0 of {FIRST} images downloaded")):
            build(meta, tmp_path / "out", mirror.url, "--timeout", "0.2", "--retries", "0")
        assert sum(mirror.requests.values()) <= FIRST + 4  # it stopped: only the 4 workers' downloads under way went on


def test_a_source_failing_half_the_requests_is_retried_to_the_end_without_the_breaker(tmp_path):
    count = WINDOW + 10  # enough for the breaker's window to fill
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, count, mirror, plan=(503, PHOTO))
        assert build(meta, tmp_path / "out", mirror.url)["counts"] == {"hamburger": count}
        assert sum(mirror.requests.values()) == 2 * count


def test_a_source_failing_most_downloads_stops_the_build_when_its_window_fills(tmp_path):
    count = WINDOW + 5
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, count, mirror, plan=(503,))
        for image in ids(count)[::11]:  # 5 of them download
            mirror.serve(f"/train/{image}.jpg", PHOTO)
        with pytest.raises(SystemExit, match=rf"^{re.escape(mirror.url)} keeps failing: (4[5-9]|50) of its last {WINDOW} downloads "
                                             rf"failed \(the last: HTTP 503\); [0-5] of {WINDOW} images downloaded; {ADVICE}$"):
            build(meta, tmp_path / "out", mirror.url, "--retries", "0")


def test_an_empty_dataset_is_never_a_success(tmp_path):
    with FakeFlickr() as mirror:
        meta = photos(tmp_path, 3, mirror, plan=(404,))
        with pytest.raises(SystemExit, match=re.escape("The dataset is empty: no box of Hamburger was cropped. 3 images were "
                                                       "skipped, most of them: not found (HTTP 404) (3); every reason is in ")):
            build(meta, tmp_path / "out", mirror.url)
        assert json.loads((tmp_path / "out/manifest.json").read_text())["counts"] == {"hamburger": 0}


def test_the_breaker_names_the_last_failure_when_a_download_that_worked_fills_its_window():
    """The window can fill on a download that worked; the message still names the error that made it
    trip (it once said 'the last: None')."""
    from training.open_images.breaker import CircuitBreaker, Outcome

    breaker = CircuitBreaker(first=20, window=5, share=0.8)
    url = "http://127.0.0.1:8000/train/x.jpg"
    for _ in range(4):
        assert breaker.record(url, Outcome(reason="server error", error="HTTP 503")) is None
    stop = breaker.record(url, Outcome())
    assert stop.startswith("http://127.0.0.1:8000 keeps failing: 4 of its last 5 downloads failed (the last: HTTP 503)")
