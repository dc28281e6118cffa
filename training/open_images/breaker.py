"""The circuit breaker: a build whose images come from a server that does not answer stops early,
with a message that names the server and the error, instead of trying every image in turn and
ending with an empty dataset. Kept apart per origin (scheme, host and port), so that Flickr
failing does not blame the mirror.

It trips when the first FIRST downloads from an origin all found it unreachable (refused, timed
out, cut off) after their retries, or when at least SHARE of its last WINDOW downloads failed for
now (unreachable, or 429/5xx after retries). Failures for good (404, Flickr's placeholder, MD5)
say nothing about the server and do not count. An origin serving fewer images than FIRST never
trips it (one photo timing out on a host that serves only it should not stop a build); a build
whose every download failed ends empty, which is an error of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from urllib3.util import parse_url

FIRST = 20
WINDOW, SHARE = 50, 0.8
ADVICE = "rerun when it is back, finished images are kept"


@dataclass(frozen=True)
class Outcome:
    """How one download ended: kept (no reason), failed for good (remembered in
    download_failures.json), or failed for now, perhaps finding its server unreachable."""
    reason: str | None = None
    for_good: bool = False
    unreachable: bool = False
    error: str = ""  # the last request's error, as the breaker's message names it
    refused: str = ""  # the kind, when the URL was refused as unsafe (manifest.json counts them)


@dataclass
class Tally:
    """One origin's downloads in this run."""
    tried: int = 0
    downloaded: int = 0
    all_unreachable: bool = True  # every download so far found the origin unreachable
    recent: deque = field(default_factory=deque)  # the last downloads, True where one failed for now
    last_failure: str = ""  # the error of the last download that failed for now, which the message names


def origin(url: str) -> str:
    """'http://127.0.0.1:8000/train/x.jpg' -> 'http://127.0.0.1:8000'."""
    parsed = parse_url(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


class CircuitBreaker:
    def __init__(self, first: int = FIRST, window: int = WINDOW, share: float = SHARE):
        self.first, self.window, self.share = first, window, share
        self.tallies: dict[str, Tally] = {}

    def tally(self, where: str) -> Tally:
        if where not in self.tallies:
            self.tallies[where] = Tally(recent=deque(maxlen=self.window))
        return self.tallies[where]

    def record(self, url: str, outcome: Outcome) -> str | None:
        """Count a finished download; returns why the build must stop, or None."""
        where = origin(url)
        tally = self.tally(where)
        tally.tried += 1
        tally.downloaded += outcome.reason is None
        tally.all_unreachable &= outcome.unreachable
        failed_for_now = outcome.reason is not None and not outcome.for_good
        tally.recent.append(failed_for_now)
        if failed_for_now:
            tally.last_failure = outcome.error or outcome.reason
        progress = f"{tally.downloaded} of {tally.tried} images downloaded"
        if tally.all_unreachable and tally.tried >= self.first:
            return f"cannot reach {where}: {outcome.error}; {progress}; {ADVICE}"
        if len(tally.recent) == self.window and sum(tally.recent) >= self.share * self.window:
            return (f"{where} keeps failing: {sum(tally.recent)} of its last {self.window} downloads failed "
                    f"(the last: {tally.last_failure}); {progress}; {ADVICE}")
        return None
