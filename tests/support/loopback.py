"""A test server on loopback: the start and stop that the fake Hub and fake Flickr share; and a
loopback address that refuses connections."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import ThreadingHTTPServer


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 at a free port while inside a `with` block; `url` is its root.

    ThreadingHTTPServer runs each connection on a daemon thread, so a connection kept alive
    (FakeFlickr speaks HTTP/1.1) does not hold up the close.
    """

    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for serve_forever's next poll: a short interval keeps each test's exit quick
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def refusing_url():
    """An http URL on loopback where connections are refused: its port stays bound, without
    listening, for the block, so nothing else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
