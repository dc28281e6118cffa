"""The app's settings from the environment, in one place, each under the APP_ prefix.

Plain names such as PASSES or SESSIONS are set by other programs too; the app reads its own
under APP_ (APP_PASSES, APP_SESSIONS, ...). The plain names were read until this release: they
still work, with a deprecation line in the log, and will be dropped in the next one.
"""

from __future__ import annotations

import logging
import math
import os

PREFIX = "APP_"
# Settings that were read under a plain name before (the name after the prefix).
DEPRECATED = ("PASSES", "MAX_BATCH", "SESSIONS", "QUEUE_SIZE", "CACHE_MAX_AGE", "MAX_IMAGE_PIXELS")

log = logging.getLogger("app")
_warned: set[str] = set()


def number(name: str, default: float, cast=int, minimum: float | None = None):
    """The setting APP_<name> (or, deprecated, <name>) as `cast`, else `default`. A value that is
    not a finite number, or below `minimum`, stops with a message naming the variable: a server
    must not start on a setting it cannot honour."""
    variable = PREFIX + name
    text = os.environ.get(variable)
    if text is None and name in DEPRECATED and os.environ.get(name) is not None:
        variable, text = name, os.environ[name]
        if name not in _warned:
            _warned.add(name)
            log.warning("%s is deprecated: set %s%s instead (the plain name goes in the next release)",
                        name, PREFIX, name)
    if text is None or text.strip() == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise SystemExit(f"{variable}={text!r} is not a number") from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise SystemExit(f"{variable}={text!r}: expected a finite number" +
                         (f" of at least {minimum:g}" if minimum is not None else ""))
    return cast(value)
