"""Serving benchmark (not a test): request latency through the live server vs the bare forward pass.

    python -m bench.serve [--models-dir DIR] [--full-size] [--requests 40]

For each tab with a model, starts the app in this process, sends requests
through Gradio's HTTP API (upload, /call/<api>, event stream: queue, decode,
resize, network, response), and times the bare compiled forward pass of the
same network on the same input in the same run. Prints p50/p95 of both and
their ratio; the target is <= 1.2.

The requests go over plain HTTP rather than gradio_client, whose result
polling sleeps 50 ms per message and would measure the client, not the server.

--full-size benchmarks the real architectures (dog breed: EfficientNetB3,
300 px, 120 breeds; hashtags: MobileNetV2, 224 px, 997 tags; movie genres:
EfficientNetB0, 224 px, 25 genres) with untrained weights — the same
computation as trained models — when none is at hand; a demo-size network
would only measure HTTP.
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


def full_size_bundles(root: Path) -> None:
    """Untrained networks of the real sizes, in bundles the app loads like trained ones."""
    from core.bundle import save_bundle
    from core.preprocess import PREPROCESSING
    from training import common, multilabel

    def save(task, model, labels, size, thresholds=None):
        metadata = {"task": task, "labels": labels, "input": {"size": [size, size]}, "preprocessing": PREPROCESSING,
                    "metrics": {}, "provenance": {"note": "benchmark, untrained"}, "demo": True}
        if thresholds is not None:
            metadata["thresholds"] = {"global": thresholds, "per_label": {label: thresholds for label in labels}}
        save_bundle(root / task, {"classifier": model}, metadata, "benchmark bundle\n")

    model, _ = common.build_classifier(120, 300, "efficientnetb3", "none", "dog_breed", dense_units=512)
    save("dog_breed", model, [f"breed {i}" for i in range(120)], 300)
    model, _ = multilabel.build_model(997, 224, "mobilenetv2", "none", "hashtags")
    save("hashtags", model, [f"tag{i}" for i in range(997)], 224, 0.5)
    model, _ = multilabel.build_model(25, 224, "efficientnetb0", "none", "movie_genres")
    save("movie_genres", model, [f"genre {i}" for i in range(25)], 224, 0.5)


def default_options(http, base: str, api_name: str) -> list:
    """The endpoint's parameters after the image, at their defaults (from Gradio's /info)."""
    parameters = http.get(f"{base}/info").json()["named_endpoints"][f"/{api_name}"]["parameters"]
    return [p.get("parameter_default") for p in parameters[1:]]


def request(http, base: str, api_name: str, photo: Path, options: list):
    """One request as a browser makes it: upload the file, call the endpoint, read the event stream."""
    with open(photo, "rb") as handle:
        path = http.post(f"{base}/upload", files={"files": (photo.name, handle, "image/jpeg")}).json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, *options]
    event = http.post(f"{base}/call/{api_name}", json={"data": data})
    kind = None
    with http.stream("GET", f"{base}/call/{api_name}/{event.json()['event_id']}") as stream:
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    import httpx
    from PIL import Image

    import app
    from core.preprocess import model_input
    from tasks import TASKS
    from training.synthetic import dog_examples

    models_dir = args.models_dir
    if args.full_size:
        models_dir = tempfile.mkdtemp(prefix="bench-models-")
        full_size_bundles(Path(models_dir))
    models = app.load_models(models_dir)
    demo = app.build_app(models)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    http = httpx.Client(timeout=120)
    base = url.rstrip("/") + "/gradio_api"
    photo = dog_examples(tempfile.mkdtemp(), count=1, size=500)[0]

    print(f"{'tab':<14} {'request p50':>12} {'p95':>8} {'forward p50':>12} {'p95':>8} {'ratio p50':>10}")
    for task in TASKS:
        bundle = models[task.NAME].bundle
        if bundle is None:
            print(f"{task.NAME:<14} no model")
            continue
        network = next(iter(bundle.networks.values()))
        options = default_options(http, base, task.API_NAME)
        x = model_input(Image.open(photo), bundle.input_size)[None]
        for _ in range(3):  # warm both paths
            request(http, base, task.API_NAME, photo, options)
            network(x)
        request_times, forward_times = [], []
        for _ in range(args.requests):  # interleaved, so both see the same machine state
            started = time.perf_counter()
            request(http, base, task.API_NAME, photo, options)
            request_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            network(x)
            forward_times.append(time.perf_counter() - started)
        (r50, r95), (f50, f95) = percentiles(request_times), percentiles(forward_times)
        print(f"{task.NAME:<14} {r50:>10.1f}ms {r95:>6.1f}ms {f50:>10.1f}ms {f95:>6.1f}ms {r50 / f50:>10.2f}")
    demo.close()


if __name__ == "__main__":
    main()
