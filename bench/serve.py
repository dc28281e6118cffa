"""Serving benchmark (not a test): request latency through the live server vs the work it wraps.

    python -m bench.serve [--models-dir DIR] [--full-size] [--requests 40] [--only TASK ...]
                          [--clients 1 2 4 8 [--seconds 30] [--sessions]]

For each tab with a model, starts the app in this process and sends requests
through Gradio's HTTP API (upload, /call/<api>, event stream), interleaved with
two in-process measurements on the same picture in the same run:
- handler: the task's plain `predict(bundle, picture, *defaults)` (decode,
  preprocessing, every network, post-processing: face detection for age &
  gender, mask resizing for caries);
- forward: each of the bundle's networks once on one input (age & gender: its
  two networks and the face detector's on the picture).
Prints p50/p95, request - forward (the time a request spends outside the networks:
decoding, post-processing, encoding the answer, HTTP; the target is at most 40 ms),
request/forward and request/handler (what Gradio's path adds).

With --clients 1 2 4 8 it measures throughput instead: N clients sending requests back to back
(--sessions: each keeping one Gradio session, as an open page does; by default each call is a new
session, as a script's REST calls are), and beside each figure the bare forward passes with N
threads calling at once, in this process without HTTP: the most the server could serve.

The requests go over plain HTTP rather than gradio_client, whose result
polling sleeps 50 ms per message and would measure the client, not the server.

--full-size benchmarks the real architectures with untrained weights (the same
computation as trained models) when none is at hand: dog breed EfficientNetB3,
300 px, 120 breeds; hashtags MobileNetV2, 224 px, 997 tags; movie genres
EfficientNetB0, 224 px, 25 genres; hamburger or sandwich the recipe's conv3-dense,
128 px; caries the default U-Net, 256 px, depth 4, width 32 (its recipe run for 0
epochs, so the bundle is exactly what it writes). Age & gender is the app's own
pretrained bundle (training.demo's: the ported Cydral networks, 64 px), whose
forward counts the face detector's networks too. A demo-size network would only
measure HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def full_size_bundles(root: Path, only=None) -> None:
    """Untrained networks of the real sizes, in bundles the app loads like trained ones (`only`:
    these task names; default every task)."""
    from core.bundle import save_bundle
    from core.preprocess import PREPROCESSING
    from training import classification, multilabel

    def save(task, model, labels, size, thresholds=None):
        metadata = {"task": task, "labels": labels, "input": {"size": [size, size]}, "preprocessing": PREPROCESSING,
                    "metrics": {}, "provenance": {"note": "benchmark, untrained"}, "demo": True}
        if thresholds is not None:
            metadata["thresholds"] = {"global": thresholds, "per_label": {label: thresholds for label in labels}}
        save_bundle(root / task, {"classifier": model}, metadata, "benchmark bundle\n")

    def wanted(task):
        return only is None or task in only

    if wanted("dog_breed"):
        model, _ = classification.build_classifier(120, 300, "efficientnetb3", "none", "dog_breed", dense_units=512)
        save("dog_breed", model, [f"breed {i}" for i in range(120)], 300)
    if wanted("hashtags"):
        model, _ = multilabel.build_model(997, 224, "mobilenetv2", "none", "hashtags")
        save("hashtags", model, [f"tag{i}" for i in range(997)], 224, 0.5)
    if wanted("movie_genres"):
        model, _ = multilabel.build_model(25, 224, "efficientnetb0", "none", "movie_genres")
        save("movie_genres", model, [f"genre {i}" for i in range(25)], 224, 0.5)
    if wanted("sandwich"):
        model, _ = classification.build_classifier(2, 128, "conv3-dense", "none", "sandwich")
        save("sandwich", model, ["Hamburger", "Sandwich"], 128)
    if wanted("age_gender"):  # the app's own model: the ported networks and their rotation network
        import importlib

        from tasks import age_gender
        importlib.import_module(age_gender.DEMO_RECIPE).build_demo(root / "age_gender", Path(tempfile.mkdtemp()))
    if wanted("caries"):
        recipe_bundles(root)


def recipe_bundles(root: Path) -> None:
    """Caries: its recipe's default architecture, run for 0 epochs on a few synthetic pictures, so
    metadata and network are what a real run writes (untrained)."""
    from training import caries, masks_from_annotations
    from training.synthetic.radiographs import make_caries_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    images, export = make_caries_dataset(work / "radiographs", count=20)
    masks_from_annotations.main(["--annotations", str(export), "--images", str(images), "--out", str(work / "caries")])
    caries.main(["--data", str(work / "caries"), "--out", str(root / "caries"), "--epochs", "0"])


def test_picture(task: str, folder: Path) -> Path:
    """A picture of what the tab expects: a dog (500 px), a real face tilted by 20 degrees in a
    640 x 480 photo (scikit-image's astronaut), or a 1200 x 800 radiograph."""
    from PIL import Image

    from training.synthetic.dogs import dog_examples
    from training.synthetic.radiographs import draw_radiograph

    rng = np.random.default_rng(0)
    if task == "age_gender":
        from skimage import data

        turned = Image.fromarray(data.astronaut()).rotate(20, resample=Image.Resampling.BILINEAR, expand=True)
        path = folder / "face.png"
        turned.crop((8, 0, 648, 480)).save(path)
        return path
    if task == "caries":
        pixels, _ = draw_radiograph(rng, width=1200, height=800)
        path = folder / "radiograph.png"
        Image.fromarray(pixels).save(path)
        return path
    return dog_examples(folder, count=1, size=500)[0]


def forward_inputs(task: str, bundle, photo: Path) -> list:
    """One inference's network calls, as calls without arguments: each of the bundle's networks on an
    input of the right shape, and for age & gender the face detector's networks on the picture
    (MTCNN's three: networks too, where the time of a face request goes)."""
    side = bundle.input_size[0]
    x = np.random.default_rng(0).uniform(0, 255, (1, side, side, 3)).astype(np.float32)
    calls = [lambda network=network: network(x) for network in bundle.networks.values()]
    if task == "age_gender":
        from core import faces
        from core.images import load_image

        picture = load_image(photo)
        calls.append(lambda: faces.detect_faces(picture))
    return calls


def default_options(http, base: str, api_name: str) -> list:
    """The endpoint's parameters after the image, at their defaults (from Gradio's /info)."""
    parameters = http.get(f"{base}/info").json()["named_endpoints"][f"/{api_name}"]["parameters"]
    return [p.get("parameter_default") for p in parameters[1:]]


def request(http, base: str, api_name: str, photo: Path, options: list, session: str | None = None):
    """One request: upload the file, call the endpoint, read the event stream. With `session`, the
    call joins that Gradio session, as every call from one open page does; without, each call is a
    new session, as a script's plain REST calls are."""
    with open(photo, "rb") as handle:
        path = http.post(f"{base}/upload", files={"files": (photo.name, handle, "image/jpeg")}).json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, *options]
    event = http.post(f"{base}/call/{api_name}", json={"data": data, "session_hash": session})
    return event_result(http, base, api_name, event.json()["event_id"])


def event_result(http, base: str, api_name: str, event_id: str):
    """The data of a call's "complete" message, read from its event stream; an "error" raises."""
    kind = None
    with http.stream("GET", f"{base}/call/{api_name}/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"{api_name}: {line[5:]}")
                return json.loads(line[5:])
    raise RuntimeError(f"{api_name}: the event stream ended without a result")


def percentiles(samples):
    return np.percentile(samples, 50) * 1000, np.percentile(samples, 95) * 1000


def back_to_back(make_work, count: int, seconds: float) -> tuple[float, list[float]]:
    """`count` threads, each calling its own `make_work()` back to back: calls finished per
    second over `seconds` (after a warm-up of a sixth of that, so every thread's first call is in
    flight), and every call's duration."""
    import threading

    finished, stop = [], threading.Event()

    def loop():
        work = make_work()
        while not stop.is_set():
            started = time.perf_counter()
            work()
            finished.append(time.perf_counter() - started)

    threads = [threading.Thread(target=loop) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 6)
    done_before, started = len(finished), time.perf_counter()
    time.sleep(seconds)
    rate = (len(finished) - done_before) / (time.perf_counter() - started)
    stop.set()
    for thread in threads:
        thread.join()
    return rate, finished


def throughput(base: str, api_name: str, photo: Path, options: list, forward, clients: list[int], seconds: float,
               sessions: bool = False):
    """For each N: requests per second with N clients sending back to back, and N / 1; beside it,
    the bare forward passes (`forward()`, in this process, no HTTP) with N threads calling at once:
    the most the server could serve. With `sessions`, each client keeps one Gradio session for all
    its calls (an open page)."""
    import uuid

    import httpx

    def client():  # one client: its own connection, and its own session if asked
        http, session = httpx.Client(timeout=120), uuid.uuid4().hex if sessions else None
        return lambda: request(http, base, api_name, photo, options, session)

    first = None
    print(f"{api_name}: {'clients':>7} {'requests/s':>11} {'p50 ms':>8} {'vs 1 client':>12} {'forward only/s':>15}"
          f" {'requests/forward':>17}")
    for count in clients:
        rate, durations = back_to_back(client, count, seconds)
        bare, _ = back_to_back(lambda: forward, count, seconds)
        first = first or rate
        print(f"{'':>{len(api_name) + 1}} {count:>7} {rate:>11.2f} {np.percentile(durations, 50) * 1000:>8.0f}"
              f" {rate / first:>11.2f}x {bare:>15.2f} {rate / bare:>17.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--only", nargs="*", help="task names to measure (default: all)")
    parser.add_argument("--clients", nargs="*", type=int, metavar="N",
                        help="instead of latency: throughput with N clients sending back to back (e.g. 1 2 4 8)")
    parser.add_argument("--seconds", type=float, default=30, help="with --clients: seconds per measurement")
    parser.add_argument("--sessions", action="store_true",
                        help="with --clients: each client keeps one session, as an open page does (default: a new "
                             "session per call, as plain REST calls make)")
    args = parser.parse_args()

    import httpx

    import app
    from core import ui
    from tasks import TASKS

    models_dir = args.models_dir
    if args.full_size:
        models_dir = tempfile.mkdtemp(prefix="bench-models-")
        full_size_bundles(Path(models_dir), only=args.only)
    models = app.load_models(models_dir)
    demo = app.build_app(models)
    ui.queue(demo)  # the app's own settings
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, state_session_capacity=ui.SESSIONS)
    http = httpx.Client(timeout=120)
    base = url.rstrip("/") + "/gradio_api"
    folder = Path(tempfile.mkdtemp(prefix="bench-pictures-"))

    if args.clients:
        for task in TASKS:
            if (not args.only or task.NAME in args.only) and models[task.NAME].bundle is not None:
                photo = test_picture(task.NAME, folder)
                calls = forward_inputs(task.NAME, models[task.NAME].bundle, photo)
                throughput(base, task.API_NAME, photo, default_options(http, base, task.API_NAME),
                           lambda calls=calls: [call() for call in calls], args.clients, args.seconds,
                           args.sessions)
        demo.close()
        return

    print(f"{'tab':<14} {'request p50':>12} {'p95':>8} {'handler p50':>12} {'p95':>8} {'forward p50':>12} {'p95':>8}"
          f" {'req-fwd':>8} {'req/fwd':>8} {'req/handler':>12}")
    for task in TASKS:
        if args.only and task.NAME not in args.only:
            continue
        bundle = models[task.NAME].bundle
        if bundle is None:
            print(f"{task.NAME:<14} no model")
            continue
        photo = test_picture(task.NAME, folder)
        options = default_options(http, base, task.API_NAME)
        calls = forward_inputs(task.NAME, bundle, photo)

        def forward():
            for call in calls:
                call()

        for _ in range(3):  # warm every path
            request(http, base, task.API_NAME, photo, options)
            task.predict(bundle, str(photo), *options)
            forward()
        times = {"request": [], "handler": [], "forward": []}
        for _ in range(args.requests):  # interleaved, so all three see the same machine state
            for name, run in (("request", lambda: request(http, base, task.API_NAME, photo, options)),
                              ("handler", lambda: task.predict(bundle, str(photo), *options)),
                              ("forward", forward)):
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        (r50, r95), (h50, h95), (f50, f95) = (percentiles(times[name]) for name in ("request", "handler", "forward"))
        print(f"{task.NAME:<14} {r50:>10.1f}ms {r95:>6.1f}ms {h50:>10.1f}ms {h95:>6.1f}ms {f50:>10.1f}ms {f95:>6.1f}ms"
              f" {r50 - f50:>6.1f}ms {r50 / f50:>8.2f} {r50 / h50:>12.2f}")
    demo.close()


if __name__ == "__main__":
    main()
