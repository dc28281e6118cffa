"""A training cluster on this machine, for tests: one recipe command run by several worker
processes, each with a TF_CONFIG that names loopback addresses (free ports), as two machines would.

TensorFlow's gRPC server listens on every interface of its machine, whatever address TF_CONFIG
gives. So where the system allows it (`unshare -rn`: a user and network namespace, no privilege
needed), the workers run in a network namespace of their own, whose only interface is loopback:
nothing outside the namespace can reach them, and its ports are all free. Elsewhere they run
beside the rest, still talking over 127.0.0.1.

Run as a script (`python tests/support/local_cluster.py FOLDER START WORKERS MODULE ARGS...`) inside the
namespace, it brings loopback up, starts the workers, writes their process ids to FOLDER/pids.json
(the same ids outside: only the network is separate), waits for them and writes their exit codes to
FOLDER/exits.json. Each worker's output goes to FOLDER/worker-<rank>.<START>.log.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# One thread each for TensorFlow's operations: the workers share this machine's few cores.
THREADS = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def tf_config(addresses: list[str], rank: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}})


def namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class LocalCluster:
    """`workers` processes of `python -m module argv...` in `folder` (their logs, ids, exit codes),
    with `extra[rank]` added to one worker's arguments. `start()` launches them (again, after a
    failure: a fresh namespace, fresh ports); `wait()` returns each worker's exit code; `kill(rank)`
    is kill -9."""

    def __init__(self, folder: Path, module: str, argv: list, workers: int = 2, env: dict | None = None,
                 isolated: bool | None = None, extra: dict | None = None):
        self.folder, self.module, self.argv, self.workers = Path(folder), module, [str(a) for a in argv], workers
        self.env = {**os.environ, **THREADS, **(env or {}),
                    "LOCAL_CLUSTER_EXTRA": json.dumps({rank: [str(a) for a in args] for rank, args in (extra or {}).items()})}
        self.isolated = namespaces_work() if isolated is None else isolated
        self.launcher = None
        self.starts = 0

    def start(self) -> "LocalCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("pids.json", "exits.json"):
            (self.folder / name).unlink(missing_ok=True)
        self.starts += 1
        command = [sys.executable, str(Path(__file__).resolve()), str(self.folder), str(self.starts),
                   str(self.workers), self.module, *self.argv]
        if self.isolated:
            command = ["unshare", "-rn", *command]
        self.launcher = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                         stderr=open(self.folder / "launcher.log", "a"))
        return self

    def pids(self, timeout: float = 60) -> dict[int, int]:
        file = self.folder / "pids.json"
        deadline = time.monotonic() + timeout
        while not file.is_file():
            if time.monotonic() > deadline or self.launcher.poll() is not None:
                raise RuntimeError(f"the workers did not start: {(self.folder / 'launcher.log').read_text()[-2000:]}")
            time.sleep(0.1)
        return {int(rank): pid for rank, pid in json.loads(file.read_text()).items()}

    def kill(self, rank: int) -> None:
        os.kill(self.pids()[rank], 9)

    def wait(self, timeout: float) -> dict[int, int]:
        """Each worker's exit code once all have ended (-9: killed)."""
        try:
            self.launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the cluster did not finish within {timeout} s:\n{self.logs()}") from None
        return {int(rank): code for rank, code in json.loads((self.folder / "exits.json").read_text()).items()}

    def stop(self) -> None:
        """Kill whatever still runs (the workers, then the launcher)."""
        try:
            for pid in self.pids(timeout=0).values():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        except RuntimeError:
            pass
        if self.launcher is not None and self.launcher.poll() is None:
            self.launcher.kill()
            self.launcher.wait()

    def log(self, rank: int) -> str:
        """Worker `rank`'s output of the latest start."""
        return (self.folder / f"worker-{rank}.{self.starts}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- worker {rank}:\n{self.log(rank)[-3000:]}" for rank in range(self.workers)
                         if (self.folder / f"worker-{rank}.{self.starts}.log").is_file())


# --- inside the namespace ----------------------------------------------------------------------

def _loopback_up() -> None:
    """`ip link set lo up`, without needing `ip`: a new network namespace starts with it down."""
    siocgifflags, siocsifflags, up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | up))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _launch(folder: Path, start: int, workers: int, module: str, argv: list[str]) -> None:
    try:
        _loopback_up()
    except OSError:
        pass  # not in a namespace of our own: loopback is up already
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    extra = json.loads(os.environ.get("LOCAL_CLUSTER_EXTRA") or "{}")
    processes = []
    for rank in range(workers):
        log = open(folder / f"worker-{rank}.{start}.log", "w")
        processes.append(subprocess.Popen([sys.executable, "-m", module, *argv, *extra.get(str(rank), [])], cwd=ROOT,
                                          stdout=log,
                                          stderr=subprocess.STDOUT,
                                          env={**os.environ, "TF_CONFIG": tf_config(addresses, rank)}))
    (folder / "pids.json").write_text(json.dumps({rank: p.pid for rank, p in enumerate(processes)}))
    exits = {rank: p.wait() for rank, p in enumerate(processes)}
    (folder / "exits.json").write_text(json.dumps(exits))


if __name__ == "__main__":
    _launch(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:])
