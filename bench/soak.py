"""Soak benchmark (not a test): the app as a user starts it, under steady load for a long time.

    python -m bench.soak [--models-dir DIR | --full-size] [--tabs dog_breed caries ...] [--clients 8]
                         [--minutes 10] [--warm-up 1] [--photo FILE]

Starts `python app.py` in its own process (the app's own settings: queue, concurrency), then
--clients threads send requests back to back over Gradio's HTTP API as a browser does (upload,
call, event stream; see bench.serve.request), spread over --tabs (client i drives tab i mod the
number of tabs). Every minute it samples the server's resident memory (RSS, from /proc) and the
requests finished in that minute, and prints the series; at the end, last/first ratios of RSS and
of throughput, counting from the first minute after --warm-up. Targets: RSS last/first <= 1.1,
throughput last/first >= 0.9, no errors. Beside them each minute: the server's CPU time per
request (flat while nothing grows) and the machine's steal time (a virtual machine's cores lent
to other guests), to tell a server that slows from a machine that does.

Without --models-dir the demo bundles in models/demo are served (`python -m training.demo`);
--full-size serves bench.serve's full-size untrained networks for the tabs asked for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.serve import default_options, request, test_picture  # noqa: E402


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used, user and system (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_times() -> tuple[int, int]:
    """(steal, total) CPU ticks of the whole machine since boot (from /proc/stat): time a virtual
    machine's cores spent serving other guests, which shows as a slowdown nothing here explains."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return ticks[7], sum(ticks[:8])


def start_app(models_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """`python app.py` as a user runs it, logging to `log`; returns once the page answers."""
    import httpx

    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--models-dir", str(models_dir),
                               "--port", str(port)], cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "HUB_CONFIG": str(models_dir / "none.json")})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the app exited ({server.returncode}); see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.kill()
    raise SystemExit(f"the app did not answer within 300 s; see {log}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--tabs", nargs="+", default=["dog_breed"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warm-up", type=float, default=1, help="minutes left out of the ratios")
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples")
    parser.add_argument("--photo", type=Path, help="the picture every request sends (default: one per tab)")
    parser.add_argument("--port", type=int, default=7899)
    args = parser.parse_args()

    import httpx

    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    models_dir = args.models_dir or ROOT / "models" / "demo"
    if args.full_size:
        from bench.serve import full_size_bundles

        models_dir = work / "models"
        full_size_bundles(models_dir, only=args.tabs)
    server = start_app(models_dir, args.port, work / "app.log")
    base = f"http://127.0.0.1:{args.port}/gradio_api"
    try:
        setup = httpx.Client(timeout=120)
        photos = {tab: args.photo or test_picture(tab, work) for tab in args.tabs}
        options = {tab: default_options(setup, base, tab) for tab in args.tabs}
        for tab in args.tabs:  # one request each before the clock starts: graphs traced, caches filled
            request(setup, base, tab, photos[tab], options[tab])

        done, errors = [], []  # (finished at, seconds) per request; error texts
        lock, stop = threading.Lock(), threading.Event()

        def client(tab):
            http = httpx.Client(timeout=120)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    request(http, base, tab, photos[tab], options[tab])
                except Exception as error:  # counted and shown, the soak goes on
                    with lock:
                        errors.append(f"{type(error).__name__}: {error}"[:200])
                    continue
                with lock:
                    done.append((time.monotonic(), time.monotonic() - started))

        threads = [threading.Thread(target=client, args=(args.tabs[i % len(args.tabs)],), daemon=True)
                   for i in range(args.clients)]
        print(f"{args.clients} clients on {', '.join(args.tabs)} for {args.minutes:g} min; app RSS at start "
              f"{rss_mb(server.pid):.0f} MB; models from {models_dir}")
        print(f"{'minute':>6} {'requests/s':>11} {'p50 ms':>8} {'RSS MB':>8} {'errors':>7} {'CPU ms/request':>15}"
              f" {'steal %':>8}")
        start = time.monotonic()
        for thread in threads:
            thread.start()
        series = []
        cpu, (steal, total) = cpu_seconds(server.pid), machine_times()
        for sample in range(1, int(args.minutes * 60 / args.interval) + 1):
            time.sleep(max(0.0, start + sample * args.interval - time.monotonic()))
            with lock:
                finished, lost = len(done), len(errors)
                window = [seconds for _, seconds in done[series[-1][1] if series else 0:]]
            rate, rss = len(window) / args.interval, rss_mb(server.pid)
            p50 = np.percentile(window, 50) * 1000 if window else float("nan")
            # The server's CPU per request: if it rises, the server does more per request (something
            # grows); if only the rate falls, the cores went elsewhere (see steal).
            cpu_before, cpu = cpu, cpu_seconds(server.pid)
            (steal_before, total_before), (steal, total) = (steal, total), machine_times()
            per_request = (cpu - cpu_before) * 1000 / len(window) if window else float("nan")
            stolen = 100 * (steal - steal_before) / max(1, total - total_before)
            series.append((sample * args.interval / 60, finished, rate, rss))
            print(f"{sample * args.interval / 60:>6.1f} {rate:>11.1f} {p50:>8.0f} {rss:>8.0f} {lost:>7}"
                  f" {per_request:>15.1f} {stolen:>8.1f}", flush=True)
        stop.set()
        for thread in threads:
            thread.join(timeout=150)
    finally:
        server.terminate()
        server.wait(timeout=30)

    counted = [row for row in series if row[0] > args.warm_up] or series
    first, last = counted[0], counted[-1]
    print(f"after {args.warm_up:g} min warm-up: RSS last/first {last[3] / first[3]:.3f} (target <= 1.1), "
          f"throughput last/first {last[2] / first[2]:.3f} (target >= 0.9), errors {len(errors)}")
    for error in sorted(set(errors))[:5]:
        print("  error:", error)


if __name__ == "__main__":
    main()
