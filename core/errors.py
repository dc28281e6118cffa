"""The error a request's sender can fix: its message goes to them as it is.

The app's guard (`core.ui.guarded`) shows these messages on the page and logs one line; any
other exception is the server's fault and gets a traceback in the log instead.
"""


class InputError(ValueError):
    """A request that cannot be served as sent; the message says why, for people."""


def fraction(value, name: str) -> float:
    """A number from 0 to 1 a client sent (a threshold, an opacity), as a float; InputError naming
    `name` when it is not one. A slider's range check lets NaN through (every comparison with NaN
    is false), and a threshold of NaN would mark nothing while saying it marked at "nan"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"The {name} must be a number from 0 to 1, not {value!r:.40}.") from None
    if not 0.0 <= number <= 1.0:  # False for NaN too
        raise InputError(f"The {name} must be a number from 0 to 1, not {number}.")
    return number
