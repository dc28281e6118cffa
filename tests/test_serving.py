"""Serving under load: concurrent calls run side by side or share forward passes; a full queue
refuses at once and the server goes on serving; old uploads leave the disk."""

import json
import threading
import time

import numpy as np
import pytest
from conftest import running_app
from PIL import Image

from bench.serve import event_result
from core.bundle import CompiledNetwork


@pytest.fixture(scope="module")
def network():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu")(inputs))
    model = keras.Model(inputs, {"a": layers.Dense(3)(x), "b": layers.Dense(1)(x)})
    return model


def hold_passes(compiled: CompiledNetwork, count: int):
    """Route the network's real traced call through a wrapper whose first `count` passes wait for
    `release`. Returns (each pass's batch size, a semaphore released as each held pass starts,
    release)."""
    sizes, started, release = [], threading.Semaphore(0), threading.Event()
    traced = compiled._call

    def holding(x):
        sizes.append(len(x))
        if len(sizes) <= count:
            started.release()
            release.wait(10)
        return traced(x)

    compiled._call = holding
    return sizes, started, release


def callers(compiled: CompiledNetwork, count: int, seed: int):
    """`count` threads (not started), each calling the network on its own picture: (threads,
    pictures, results filled in as they finish)."""
    rng = np.random.default_rng(seed)
    pictures = [rng.uniform(0, 255, (1, 8, 8, 3)).astype(np.float32) for _ in range(count)]
    results = [None] * count
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, compiled(pictures[i])))
               for i in range(count)]
    return threads, pictures, results


def test_concurrent_calls_share_forward_passes_and_each_gets_its_own_result(network):
    compiled = CompiledNetwork(network, max_batch=4, passes=1)
    sizes, started, release = hold_passes(compiled, 1)
    threads, pictures, results = callers(compiled, 7, seed=0)
    threads[0].start()
    assert started.acquire(timeout=10)
    for thread in threads[1:]:
        thread.start()
    while len(compiled._waiting) < 6:  # the six others queue behind the running pass
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)

    assert sizes[0] == 1 and sum(sizes) == 7 and max(sizes) <= 4 and len(sizes) <= 3, sizes
    for picture, result in zip(pictures, results):
        alone = network(picture, training=False)
        for key in ("a", "b"):
            assert result[key].shape == (1, *alone[key].shape[1:])
            np.testing.assert_allclose(result[key], alone[key].numpy(), rtol=1e-4, atol=1e-5)


def test_two_passes_run_side_by_side_and_the_calls_beyond_them_share_the_next(network):
    compiled = CompiledNetwork(network, max_batch=8, passes=2)
    sizes, started, release = hold_passes(compiled, 2)
    threads, pictures, results = callers(compiled, 6, seed=1)
    for thread in threads[:2]:
        thread.start()
    assert started.acquire(timeout=10) and started.acquire(timeout=10)  # both in a pass at once
    for thread in threads[2:]:
        thread.start()
    while len(compiled._waiting) < 4:
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)

    assert sizes[:2] == [1, 1] and sum(sizes) == 6 and len(sizes) <= 4, sizes
    for picture, result in zip(pictures, results):
        np.testing.assert_allclose(result["a"], network(picture, training=False)["a"].numpy(), rtol=1e-4, atol=1e-5)


def test_a_bad_input_fails_only_its_own_call(network):
    compiled = CompiledNetwork(network, passes=1)
    good = np.zeros((2, 8, 8, 3), np.float32)
    inputs = {"good": good, "bad": np.zeros((1, 9, 9, 3), np.float32)}
    outcome = {}
    compiled._running = 1  # a pass is running: both calls wait and will share the next one

    def call(name):
        try:
            outcome[name] = compiled(inputs[name])
        except Exception as error:
            outcome[name] = error

    threads = [threading.Thread(target=call, args=(name,)) for name in inputs]
    for thread in threads:
        thread.start()
    while len(compiled._waiting) < 2:
        threading.Event().wait(0.01)
    with compiled._turn:
        compiled._running = 0
        compiled._turn.notify_all()
    for thread in threads:
        thread.join(10)
    assert isinstance(outcome["bad"], Exception)
    assert outcome["good"]["a"].shape == (2, 3)


def test_a_full_queue_refuses_at_once_and_the_server_keeps_serving(dog_bundle, models_with, tmp_path):
    import httpx

    # A large photo: each request spends a while decoding it, so 40 calls made at once overrun
    # the 8 that run and the 2 that may wait.
    noise = np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    photo = tmp_path / "large.jpg"
    Image.fromarray(noise).save(photo, quality=95)
    root = models_with(dog_breed=dog_bundle)
    with running_app(root, env={"APP_QUEUE_SIZE": "2"}) as url, httpx.Client(timeout=120) as http:
        base = url + "gradio_api"
        with open(photo, "rb") as handle:
            path = http.post(f"{base}/upload", files={"files": ("large.jpg", handle, "image/jpeg")}).json()[0]
        data = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}
        answers = [http.post(f"{base}/call/dog_breed", json=data) for _ in range(40)]
        refused = [a for a in answers if a.status_code == 503]
        accepted = [a for a in answers if a.status_code == 200]
        assert refused and accepted, [a.status_code for a in answers]
        assert all("Queue is full" in a.text for a in refused), refused[0].text
        for answer in accepted:  # what was accepted is answered
            assert event_result(http, base, "dog_breed", answer.json()["event_id"]) is not None
        # Afterwards the server serves as before.
        again = http.post(f"{base}/call/dog_breed", json=data)
        assert again.status_code == 200
        label = event_result(http, base, "dog_breed", again.json()["event_id"])[0]
        assert label["label"] in json.loads((dog_bundle / "task.json").read_text())["labels"]


def test_old_uploads_leave_the_disk_and_the_server_keeps_serving(dog_bundle, models_with, tmp_path):
    """A demo that runs for weeks: each visitor's upload is a file in Gradio's cache. Past
    APP_CACHE_MAX_AGE seconds (a day by default) they are deleted; 2 s here."""
    import httpx
    from gradio_client import Client, handle_file
    from skimage import data

    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(photo, quality=90)
    cache = tmp_path / "gradio-cache"
    root = models_with(dog_breed=dog_bundle)
    with running_app(root, env={"GRADIO_TEMP_DIR": str(cache), "APP_CACHE_MAX_AGE": "2"}) as url:
        client = Client(url, verbose=False)
        labels = json.loads((dog_bundle / "task.json").read_text())["labels"]
        assert client.predict(handle_file(str(photo)), api_name="/dog_breed")["label"] in labels
        uploads = list(cache.rglob("chelsea.jpg"))
        assert uploads, sorted(cache.rglob("*"))
        deadline = time.monotonic() + 20
        while any(path.exists() for path in uploads) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(path.exists() for path in uploads)
        assert client.predict(handle_file(str(photo)), api_name="/dog_breed")["label"] in labels
        # The examples the page shows stay (Gradio keeps them in its cache for good).
        config = httpx.get(url + "config", timeout=10).json()
        examples = [sample[0]["url"] for c in config["components"] if c.get("type") == "dataset"
                    for sample in c["props"]["samples"]]
        assert examples and all(httpx.get(example, timeout=10).status_code == 200 for example in examples)


def test_the_queue_rebuilds_its_analytics_every_hundred_events_unless_told_otherwise(monkeypatch):
    """Gradio reads GRADIO_ANALYTICS_CACHE_FREQUENCY when the queue is made (its attribute keeps
    Gradio's spelling); this fails if a Gradio upgrade stops reading it, and the
    workaround docs/serving.md describes ("Under load") with it."""
    import gradio as gr

    from core import ui

    def page():
        with gr.Blocks() as demo:
            gr.Button().click(lambda: None)
        return demo

    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    assert ui.queue(page())._queue.ANAYLTICS_CACHE_FREQUENCY == ui.ANALYTICS_EVERY == 100
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "7")
    assert ui.queue(page())._queue.ANAYLTICS_CACHE_FREQUENCY == 7
