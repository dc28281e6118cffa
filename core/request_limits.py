"""What a request may send before any handler runs: the body of an API call, and where a picture comes from.

Gradio limits uploads (`max_file_size`), but an API call's JSON body has no limit of its own, and a
picture can travel inside it as a data: URL, which Gradio decodes before our handler sees it:
0.5 MB of PNG can declare 20000 x 20000 pixels (1.2 GB decoded). So:

- every request to the API other than an upload may carry at most MAX_BODY bytes (a call is file
  references and a few numbers; a flag's answer and comment are the largest, a few kB), refused with
  413 before it is read into memory (`BodyLimit`, an ASGI middleware);
- pictures are accepted as uploaded files only (`core.ui.ImageUpload`): the page always uploads,
  and gradio_client's handle_file does too, so every picture passes the upload limit, then the pixel
  limit (core.images) before it is decoded. Inline data: URLs and remote URLs are refused.
"""

from __future__ import annotations

from core import settings

MAX_BODY = settings.number("MAX_BODY_KB", 1024, minimum=16) * 1024
# Gradio's routes whose bodies are files, which its own max_file_size limits.
UPLOADS = ("/gradio_api/upload",)
REFUSED = b'{"detail": "The request is too large: send pictures as uploaded files (gradio_client.handle_file)."}'


class BodyLimit:
    """An ASGI middleware: a request whose body exceeds `limit` bytes gets 413, from its
    Content-Length when it gives one, else as soon as the bytes read pass the limit."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS") \
                or any(scope.get("path", "").startswith(path) for path in UPLOADS):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _refuse(send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except TooLarge:
            await _refuse(send)


class TooLarge(Exception):
    """Raised inside a request whose body passed the limit while it was being read."""


async def _refuse(send):
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(REFUSED)).encode())]})
    await send({"type": "http.response.body", "body": REFUSED})
