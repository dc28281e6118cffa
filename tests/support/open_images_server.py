"""Open Images for tests: a stand-in for Flickr on loopback (a second one stands in for the
CVDF's mirror, which serves /{subset}/{ImageID}.jpg), and metadata CSVs in the real layouts.

Each path of the server answers a planned sequence of responses, the last one
repeating: image bytes (200), a status code, (status code, {header: value}),
("redirect", path or absolute URL), ("cut", n) (the first n bytes of the plan's image, with
the whole one's Content-Length, then the connection closed), "drop" (close the connection
without answering) or "hang" (read the request, never answer). Requests are counted per path
and timed; TCP connections are counted (a kept-alive one serves many requests). `latency`
delays every answer, `connect_latency` the first on each connection (a TLS handshake's round
trips, which loopback does not have).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from PIL import Image, ImageDraw

from support.loopback import LoopbackServer

BOX_HEADER = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
              "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]
IMAGE_HEADER = ["ImageID", "Subset", "OriginalURL", "OriginalLandingURL", "License", "AuthorProfileURL",
                "Author", "Title", "OriginalSize", "OriginalMD5", "Thumbnail300KURL", "Rotation"]


class FakeFlickr(LoopbackServer):
    def __init__(self, latency: float = 0.0, connect_latency: float = 0.0):
        self.plans: dict[str, list] = {}
        self.requests: Counter = Counter()
        self.times: dict[str, list[float]] = {}  # path -> time.monotonic() of each request
        self.connections = 0
        self.latency, self.connect_latency = latency, connect_latency
        self.lock = threading.Lock()
        self.closing = threading.Event()  # releases "hang" answers when the server stops
        super().__init__(self._handler())

    def __exit__(self, *exc):
        self.closing.set()
        super().__exit__(*exc)

    def serve(self, path: str, *responses) -> str:
        """Plan the answers to GET path; returns its URL."""
        self.plans[path] = list(responses)
        return self.url + path

    def reset_counts(self):
        with self.lock:
            self.requests.clear()
            self.times.clear()
            self.connections = 0

    def _handler(self):
        flickr = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):  # once per TCP connection
                super().setup()
                with flickr.lock:
                    flickr.connections += 1
                self.first = True

            def do_GET(self):
                with flickr.lock:
                    flickr.requests[self.path] += 1
                    flickr.times.setdefault(self.path, []).append(time.monotonic())
                    plan = flickr.plans.get(self.path, [404])
                    answer = plan[min(flickr.requests[self.path], len(plan)) - 1]
                time.sleep(flickr.latency + (flickr.connect_latency if self.first else 0.0))
                self.first = False
                if answer == "drop":
                    self.close_connection = True
                    return
                if answer == "hang":
                    flickr.closing.wait()
                    self.close_connection = True
                    return
                headers = {}
                if isinstance(answer, tuple) and answer[0] == "redirect":
                    location = answer[1] if "://" in answer[1] else flickr.url + answer[1]
                    answer, headers = 302, {"Location": location}
                elif isinstance(answer, tuple) and answer[0] == "cut":
                    whole = next(p for p in plan if isinstance(p, bytes))
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(whole)))
                    self.end_headers()
                    self.wfile.write(whole[:answer[1]])
                    self.close_connection = True
                    return
                elif isinstance(answer, tuple):
                    answer, headers = answer
                body = answer if isinstance(answer, bytes) else b""
                self.send_response(200 if isinstance(answer, bytes) else answer)
                self.send_header("Content-Type", "image/jpeg" if body[:2] == b"\xff\xd8" else "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler


def jpeg(size=(64, 48), rects=(), background=(128, 128, 128), exif_orientation=None) -> bytes:
    """A JPEG of `size` with filled rectangles [(left, top, right, bottom), colour] (right/bottom exclusive)."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    for (left, top, right, bottom), colour in rects:
        draw.rectangle((left, top, right - 1, bottom - 1), fill=colour)
    buffer = io.BytesIO()
    extra = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        extra["exif"] = exif
    image.save(buffer, "JPEG", quality=95, **extra)
    return buffer.getvalue()


def png(size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 200, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def md5_base64(data: bytes) -> str:
    """OriginalMD5 as Open Images writes it: base64 of the raw 16-byte digest."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def box_row(image_id, label, pixels, size=(64, 48), group_of=0, depiction=0) -> list[str]:
    """An annotation row for a box given in pixels (left, top, right, bottom) of an image of `size`."""
    (left, top, right, bottom), (width, height) = pixels, size
    return [image_id, "xclick", label, "1", repr(left / width), repr(right / width), repr(top / height), repr(bottom / height),
            "0", "0", str(group_of), str(depiction), "0"]


def image_row(image_id, url, md5="", rotation="0.0", subset="train") -> list[str]:
    return [image_id, subset, url, f"https://www.flickr.com/photos/someone/{image_id}", "https://creativecommons.org/licenses/by/2.0/",
            "https://www.flickr.com/people/someone/", "Some One", f"Photo {image_id}, with a comma", "12345", md5,
            url.replace(".jpg", "_z.jpg"), rotation]


def write_meta(folder: Path, classes: dict[str, str], annotations: dict[str, list], image_lists: dict[str, list]) -> Path:
    """class-descriptions-boxable.csv (no header) and the given annotation / image-list files (with headers).
    Rows are lists of strings written as they are, so a test can plant malformed ones."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "class-descriptions-boxable.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(classes.items())
    for files, header in ((annotations, BOX_HEADER), (image_lists, IMAGE_HEADER)):
        for name, rows in files.items():
            with (folder / name).open("w", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    return folder


def write_hierarchy(folder: Path, tree: dict) -> Path:
    """bbox_labels_600_hierarchy.json as distributed: the nested tree, indented by four spaces."""
    path = folder / "bbox_labels_600_hierarchy.json"
    path.write_text(json.dumps(tree, indent=4))
    return path


# --- ImageIDs with names ----------------------------------------------------------------------
# Open Images' ImageIDs are 16 hex digits, and the builder refuses anything else. A test names its
# images for what they are ("30flaky"); image_id turns such a name into an ImageID that sorts as
# the name does (the builder walks images in ImageID order), and readable turns the ImageIDs in
# what the builder wrote back into names, so that assertions read as names.

NAME_SYMBOLS = "0123456789_abcdefghijklmnopqrstuvwxyz"  # in ASCII order; a name is up to 12 of them
_names: dict[str, str] = {}  # ImageID -> name, of those image_id made


def image_id(name: str) -> str:
    """'30flaky' -> 16 hex digits: the name as a base-38 number (0 pads it to 12 symbols, so a
    shorter name sorts first, as in strings), written in hex."""
    assert len(name) <= 12 and all(symbol in NAME_SYMBOLS for symbol in name), name
    number = 0
    for symbol in name.ljust(12, "\0"):
        number = number * 38 + (0 if symbol == "\0" else NAME_SYMBOLS.index(symbol) + 1)
    image = f"{number:016x}"
    _names[image] = name
    return image


def readable(value):
    """`value` (a string, or JSON-like lists and dicts of them) with every ImageID that image_id made
    replaced by its name: 'sandwich/<16 hex>_0.jpg' -> 'sandwich/60goodmd5_0.jpg'."""
    if isinstance(value, str):
        return re.sub(r"(?<![0-9a-f])[0-9a-f]{16}(?![0-9a-f])", lambda m: _names.get(m.group(), m.group()), value)
    if isinstance(value, dict):
        return {readable(key): readable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(readable(item) for item in value)
    return value
