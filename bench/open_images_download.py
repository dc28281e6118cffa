"""Open Images downloads against a loopback server (not a test): images per second of the
builder's download step with its pooled urllib3 client, and with the urllib code it replaced
(a new connection per image), on the same images with the same settings.

    python -m bench.open_images_download [--images 400] [--workers 8] [--latency 0.02]
                                         [--connect-latency 0.0] [--repeat 3] [--baseline REV]

The server is tests/support/open_images_server.py's FakeFlickr: --latency delays every answer (a
server's time to first byte), --connect-latency the first answer on each new connection (the
round trips of a TCP and TLS handshake, which loopback does not have). The image is
scikit-image's astronaut photo as a JPEG, served under --images names; every download is
checked (decoded) as the builder does. No rate limit, 4 retries, 30 s timeout. The baseline is
training/open_images.py as it was at REV (default: the commit before it became a package),
read with `git show`.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def photo() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def baseline_module(revision: str | None, folder: Path):
    """training/open_images.py at `revision`, imported as a module of its own."""
    if revision is None:  # the commit that turned the module into a package, and its parent
        split = subprocess.run(["git", "rev-list", "-1", "HEAD", "--", "training/open_images.py"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        revision = f"{split}^"
    source = subprocess.run(["git", "show", f"{revision}:training/open_images.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    path = folder / "open_images_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("open_images_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module, subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def run_baseline(module, wanted, images, out: Path, workers: int) -> float:
    settings = module.DownloadSettings(workers=workers, retries=4, backoff=0.5, rate=0.0, timeout=30.0, retry_failed=False)
    start = time.perf_counter()
    fetched = module.download_all(wanted, images, out, settings, module.Report(), False)
    seconds = time.perf_counter() - start
    assert fetched == len(wanted), f"the baseline fetched {fetched} of {len(wanted)}"
    return seconds


def run_pooled(wanted, images, out: Path, workers: int) -> float:
    from training.open_images.breaker import CircuitBreaker
    from training.open_images.downloading import DownloadSettings, download_all
    from training.open_images.http_client import RateLimit, pooled_client
    from training.open_images.manifest import Report

    settings = DownloadSettings(workers=workers, retries=4, backoff=0.5, rate=0.0, timeout=30.0, retry_failed=False)
    start = time.perf_counter()
    client = pooled_client(workers, settings.timeout)
    try:
        fetched = download_all(wanted, images, out, settings, Report(), False, client, RateLimit(0.0), CircuitBreaker())
    finally:
        client.clear()
    seconds = time.perf_counter() - start
    assert fetched == len(wanted), f"the pooled client fetched {fetched} of {len(wanted)}"
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every answer")
    parser.add_argument("--connect-latency", type=float, default=0.0, help="seconds added to each connection's first answer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="git revision of training/open_images.py to compare with")
    args = parser.parse_args(argv)

    from support.open_images_server import FakeFlickr

    body = photo()
    work = Path(tempfile.mkdtemp(prefix="bench_open_images_"))
    try:
        baseline, revision = baseline_module(args.baseline, work)
        with FakeFlickr(latency=args.latency, connect_latency=args.connect_latency) as server:
            wanted = [f"{n:016x}" for n in range(args.images)]
            images = {image: {"url": server.serve(f"/train/{image}.jpg", body), "md5": ""} for image in wanted}
            results = {"urllib, a connection per image": [], "urllib3, pooled": []}
            connections = {}
            for round_ in range(args.repeat):  # alternated, so that a busy moment of the machine hits both
                for name, run in (("urllib, a connection per image", lambda out: run_baseline(baseline, wanted, images, out, args.workers)),
                                  ("urllib3, pooled", lambda out: run_pooled(wanted, images, out, args.workers))):
                    server.reset_counts()
                    out = work / f"{round_}-{len(results[name])}-{name[:6]}"
                    results[name].append(run(out))
                    connections[name] = server.connections
                    shutil.rmtree(out)
        print(f"{args.images} images of {len(body) // 1024} KiB, {args.workers} workers, latency {args.latency * 1000:g} ms per "
              f"request + {args.connect_latency * 1000:g} ms per new connection; median of {args.repeat} (baseline {revision})")
        for name, times in results.items():
            median = statistics.median(times)
            print(f"  {name:32} {args.images / median:7.1f} images/s  ({median:.2f} s; {connections[name]} connections; "
                  f"runs {', '.join(f'{t:.2f}' for t in times)} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
