"""The request body's size limit, enforced by the API itself (pure ASGI, before anything parses it).

A body announced larger than the limit (Content-Length) is refused before a byte of it is read; a body
without Content-Length (chunked) is counted as it arrives and refused as soon as it passes the limit,
so an endless stream costs at most the limit. Either way: 413 in the API's error shape (errors.py).

The limit is per path prefix (MAX_BODY_BYTES_BY_PATH, longest prefix first), MAX_BODY_BYTES elsewhere:
a route that takes large bodies (a portfolio upload) gets its own. FastAPI's own `max_body_size`
answers a plain-text 413 outside the app's error handlers when Content-Length is over the limit,
which is why this is not it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evaluation_api.errors import PayloadTooLarge, error_response


class _TooLarge(HTTPException):
    """Raised from `receive`: FastAPI passes an HTTPException through to the app's handler (errors.py)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=PayloadTooLarge(limit).message)
        self.limit = limit


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, by_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.by_path = sorted((by_path or {}).items(), key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.by_path if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        announced = _content_length(scope)
        if announced is not None and announced > limit:
            await _refuse(limit, scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:  # the app answered before reading the whole body, then read on: nothing to add
                raise
            await _refuse(limit, scope, receive, send)


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    # Connection: close: the rest of the body is never read, so the connection cannot carry another request.
    response = error_response(PayloadTooLarge(limit), {"connection": "close"})
    await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


__all__ = ["BodySizeLimit"]
