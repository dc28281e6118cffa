"""The builder's one HTTP client: a urllib3 PoolManager shared by every download worker, so each
host gets at most --workers kept-alive connections (a TCP and TLS handshake per connection, not
per picture), and urllib3's Retry, which retries connection errors, timeouts, 429 and 5xx with
a doubling backoff and waits as long as a 429 or 503 asks in its Retry-After header.

Only http and https URLs are fetched: a file:// OriginalURL, or a redirect to one, is refused.
"""

from __future__ import annotations

import hashlib
import threading
import time
from itertools import takewhile
from pathlib import Path

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ResponseError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as RequestTimeout  # connect or read: not the builtin of that name
from urllib3.util import Retry

from training.open_images.origins import NOT_HTTP, SCHEMES, scheme

USER_AGENT = "open-images-crops/1.0 (Python urllib3)"
RETRIED_STATUSES = (429, 500, 502, 503, 504)
MAX_REDIRECTS = 5  # Flickr sends a removed photo to its placeholder in one
RETRY_AFTER_MAX = 120  # seconds: a Retry-After asking for longer holds a worker no longer than this


class RateLimit:
    """At most `rate` requests a second over all threads: each request takes the next free slot."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self):
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        time.sleep(slot - now)


class Attempts(Retry):
    """urllib3's Retry with the builder's promises: `budget` failed tries at most, of every kind
    together (connection, read, 429 and 5xx; a redirect is no failure); waits of backoff_factor
    doubling from the first retry (urllib3 retries the first at once), unless a 429 or 503 names
    its Retry-After (RETRY_AFTER_MAX at most); and every retry takes a slot of the rate limit,
    as first tries do."""

    def __init__(self, *args, budget: int = 0, limit: RateLimit | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget, self.limit = budget, limit

    def new(self, **kwargs) -> Attempts:  # urllib3 makes a new Retry per try: carry ours along
        attempts = super().new(**kwargs)
        attempts.budget, attempts.limit = self.budget, self.limit
        return attempts

    def failures(self) -> int:
        return sum(1 for entry in self.history if entry.redirect_location is None)

    def is_exhausted(self) -> bool:
        return self.failures() > self.budget or super().is_exhausted()

    def get_backoff_time(self) -> float:
        run = len(list(takewhile(lambda entry: entry.redirect_location is None, reversed(self.history))))
        return 0.0 if run == 0 else min(self.backoff_max, self.backoff_factor * 2 ** (run - 1))

    def get_retry_after(self, response) -> float | None:  # urllib3 caps it at 6 hours, and only in recent versions
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, RETRY_AFTER_MAX)

    def sleep(self, response=None):
        super().sleep(response)
        if self.limit:
            self.limit.wait()


def attempts(budget: int, backoff: float, limit: RateLimit) -> Attempts:
    """The retry policy of one request: `budget` retries left, then the last error stands."""
    return Attempts(total=None, redirect=MAX_REDIRECTS, status_forcelist=RETRIED_STATUSES, backoff_factor=backoff,
                    respect_retry_after_header=True, raise_on_status=False,
                    allowed_methods=frozenset({"GET"}), budget=budget, limit=limit)


def pooled_client(workers: int, timeout: float) -> urllib3.PoolManager:
    """One client for a whole build. block=True: never more than `workers` connections to a host,
    each kept alive and reused."""
    return urllib3.PoolManager(num_pools=32, maxsize=workers, block=True, headers={"User-Agent": USER_AGENT},
                               timeout=urllib3.Timeout(connect=timeout, read=timeout))


class Skip(Exception):
    """Skipped for good, with this reason; `refused`: the kind, when the URL was refused as unsafe."""

    def __init__(self, reason: str, refused: str = ""):
        super().__init__(reason)
        self.refused = refused


class Failed(Exception):
    """Failed for now, after `tries` tries (worth another run). `unreachable`: no answer at all
    (refused, timed out, cut off), which the circuit breaker watches, rather than an HTTP error."""

    def __init__(self, reason: str, tries: int, unreachable: bool):
        super().__init__(reason)
        self.tries, self.unreachable = tries, unreachable


def describe(error: BaseException) -> str:
    """A failed request's reason, for people: 'connection refused', 'timed out', ..."""
    if isinstance(error, NameResolutionError):
        return f"cannot resolve {error.conn.host if error.conn else 'the host'}"
    if isinstance(error, NewConnectionError):  # urllib3 raises it from the socket's own error
        cause = error.__cause__
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({cause.strerror if isinstance(cause, OSError) and cause.strerror else cause or error})"
    if isinstance(error, RequestTimeout):
        return "timed out"
    if isinstance(error, ProtocolError):
        return "connection broken"
    if isinstance(error, SSLError):
        return f"TLS error ({error})"
    return f"{type(error).__name__}: {error}"


def fetch(client: urllib3.PoolManager, url: str, part: Path, retries: Attempts) -> tuple[str, bytes, str]:
    """GET url into part, redirects followed and failed tries retried as `retries` allows; returns
    (final URL, MD5 digest, SHA-256 hex). Raises Skip for good (404, not http(s), ...) or
    Failed for now."""
    if scheme(url) not in SCHEMES:  # select() refuses them first: this is the last line of defence
        raise Skip(f"{NOT_HTTP}: {scheme(url) or 'no scheme'}", refused=NOT_HTTP)
    try:
        response = client.request("GET", url, preload_content=False, retries=retries)
    except MaxRetryError as error:
        if isinstance(error.reason, ResponseError):  # too many redirects: no server trouble that passes
            raise Skip(str(error.reason)) from None
        raise Failed(describe(error.reason), retries.budget + 1, unreachable=True) from None
    except LocationValueError:  # urllib3 has no connection for a redirect to file:// or the like
        raise Skip(f"{NOT_HTTP}: redirected to one", refused=NOT_HTTP) from None
    except HTTPError as error:
        raise Failed(describe(error), 1, unreachable=True) from None
    done = False
    try:
        tries = 1 + (response.retries.failures() if isinstance(response.retries, Attempts) else 0)
        if not 200 <= response.status < 300:
            response.drain_conn()  # a short error page: read it, so the connection is reused
            done = True
            if response.status in RETRIED_STATUSES:
                raise Failed(f"HTTP {response.status}", tries, unreachable=False)  # urllib3 retried it already
            if response.status in (403, 404, 410):
                raise Skip(f"not found (HTTP {response.status})")
            raise Skip(f"HTTP {response.status}")
        md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        try:
            with part.open("wb") as out:
                for chunk in response.stream(1 << 16):  # a body cut short raises ProtocolError
                    out.write(chunk)
                    md5.update(chunk)
                    sha.update(chunk)
        except HTTPError as error:  # urllib3 retries requests, not bodies: download() tries again
            raise Failed(f"body cut off ({describe(error)})", tries, unreachable=True) from None
        done = True
        return response.geturl() or url, md5.digest(), sha.hexdigest()
    finally:
        if not done:
            response.close()  # unread bytes on it: not to be reused
        response.release_conn()  # back to the pool even when closed, or the pool loses one of its --workers slots
