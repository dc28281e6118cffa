"""What a stranger can reach through the page and a downloaded bundle, tried against the running app
as a client would: raw HTTP, no gradio_client shortcuts (docs/security.md says what holds and why)."""

import base64
import json
import math
import shutil
import struct
import time
import urllib.error
import urllib.request
import zlib

import pytest
from conftest import page_text, running_app
from gradio_client import Client, handle_file


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG that declares width x height grey pixels, all black: a few hundred kB on the wire,
    width * height bytes once decoded (400 MB here). Written chunk by chunk, never held decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    squeeze = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte, then the row
    body = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def upload(url: str, path) -> str:
    """Upload a file as the page does (multipart to /gradio_api/upload); the server's path of it."""
    boundary = "----hardening"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}gradio_api/upload", body,
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.load(urllib.request.urlopen(request, timeout=30))[0]


def call(url: str, api_name: str, data: list, timeout: float = 30) -> tuple[str, str]:
    """POST a call to the app's API and read its answer stream: (event, data) of the last event.
    Python's json writes NaN as NaN, as a careless or hostile client may."""
    body = json.dumps({"data": data}).encode()
    request = urllib.request.Request(f"{url}gradio_api/call/{api_name}", body, {"Content-Type": "application/json"})
    event_id = json.load(urllib.request.urlopen(request, timeout=timeout))["event_id"]
    event = text = ""
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=timeout) as stream:
        for line in stream.read().decode().splitlines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                text = line.split(":", 1)[1].strip()
    return event, text


@pytest.fixture(scope="module")
def app(dog_bundle, hashtag_bundle, tmp_path_factory):
    """The app with a dog-breed bundle whose examples/ hold a page and a script as well as photos,
    a hashtags bundle, and two bundles whose task.json lies."""
    root = tmp_path_factory.mktemp("hardening") / "models"
    shutil.copytree(dog_bundle, root / "dog_breed")
    (root / "dog_breed" / "examples" / "evil.html").write_text("<script>alert(document.cookie)</script>")
    (root / "dog_breed" / "examples" / "evil.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    shutil.copytree(hashtag_bundle, root / "hashtags")
    # A wrong type: "format_version" as text. A network outside its folder.
    shutil.copytree(hashtag_bundle, root / "movie_genres")
    metadata = json.loads((hashtag_bundle / "task.json").read_text())
    (root / "movie_genres" / "task.json").write_text(json.dumps({**metadata, "task": "movie_genres",
                                                                 "format_version": "1"}))
    shutil.copytree(dog_bundle, root / "sandwich")
    metadata = json.loads((dog_bundle / "task.json").read_text())
    (root / "sandwich" / "task.json").write_text(json.dumps({**metadata, "task": "sandwich",
                                                             "networks": {"classifier": "../dog_breed"}}))
    with running_app(root) as url:
        yield url, root


def test_a_data_url_bomb_is_refused_at_once_and_costs_the_server_no_memory(app):
    url, _ = app
    bomb = "data:image/png;base64," + base64.b64encode(huge_png()).decode()
    assert len(bomb) < 1_000_000
    before = peak_memory_mb(url.pid)
    started = time.monotonic()
    event, text = call(url, "dog_breed", [{"url": bomb, "meta": {"_type": "gradio.FileData"}}])
    seconds = time.monotonic() - started
    assert event == "error" and "uploaded file" in text, (event, text)
    assert seconds < 1.0, seconds
    assert peak_memory_mb(url.pid) - before < 200


def test_a_data_url_over_the_body_limit_is_refused_before_it_is_read(app):
    """The request announces a 3 MB data: URL and the server answers 413 before a byte of it is
    sent. (Sending the body too races the refusal: the server closes the connection while the
    client is still writing, and the client sees a broken pipe instead of the answer.)"""
    import http.client
    from urllib.parse import urlparse

    url, _ = app
    body = json.dumps({"data": [{"url": "data:image/png;base64," + "A" * 3_000_000,
                                 "meta": {"_type": "gradio.FileData"}}]}).encode()
    address = urlparse(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.putrequest("POST", "/gradio_api/call/dog_breed")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    response = connection.getresponse()  # a server that waited for the body would time out here
    assert response.status == 413, (response.status, response.read()[:300])
    connection.close()


def test_a_bundle_cannot_put_a_page_on_the_apps_address(app):
    url, root = app
    for name in ("evil.html", "evil.svg"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={root / 'dog_breed' / 'examples' / name}", timeout=10)
        assert refused.value.code in (403, 404)
    # The examples the page shows are pictures we wrote ourselves, not the bundle's bytes.
    config = urllib.request.urlopen(url + "config", timeout=10).read().decode()
    assert "evil" not in config and str(root / "dog_breed" / "examples") not in config
    shown = [c for c in json.loads(config)["components"] if c.get("type") == "dataset"]
    names = [v["orig_name"] for c in shown for sample in c["props"]["samples"] for v in sample if isinstance(v, dict)]
    assert names and all(name.endswith((".jpg", ".png")) for name in names), names


def test_a_lying_task_json_leaves_the_app_up_with_a_notice_and_no_server_path(app):
    url, root = app
    text = page_text(url)
    assert "format_version: input should be a valid integer (got '1')" in text
    assert "networks.classifier: must name a file or folder inside the bundle" in text
    config = urllib.request.urlopen(url + "config", timeout=10).read().decode()
    assert str(root) not in config and str(root.parent) not in config
    # The rest of the app serves.
    photo = next((root / "dog_breed" / "examples").glob("*.jpg"))
    assert Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/dog_breed")["label"]


def test_a_threshold_that_is_not_a_number_gets_a_clear_error(app):
    url, root = app
    photo = next((root / "hashtags" / "examples").iterdir())
    picture = {"path": upload(url, photo), "meta": {"_type": "gradio.FileData"}}
    # Gradio's slider refuses what is out of its range, but every comparison with NaN is false.
    event, text = call(url, "hashtags", [picture, math.nan])
    assert event == "error" and "threshold must be a number from 0 to 1, not nan" in text, (event, text)
    event, text = call(url, "hashtags", [picture, 1.5])
    assert event == "error" and "greater than maximum" in text, (event, text)
    event, text = call(url, "hashtags", [picture, 0.5])
    assert event == "complete" and json.loads(text)[0]["confidences"], (event, text)
