"""The error a request's sender can fix: its message goes to them as it is.

The app's guard (`core.ui.guarded`) shows these messages on the page and logs one line; any
other exception is the server's fault and gets a traceback in the log instead.
"""


class InputError(ValueError):
    """A request that cannot be served as sent; the message says why, for people."""
