"""A lean HTTP/1.1 client for one upstream (the model service): keep-alive connections on asyncio's
transports, responses parsed by httptools (llhttp, the parser uvicorn serves with).

Why not aiohttp: on a lone evaluation its request and response machinery (URL and header objects,
cookie and tracing hooks, timer contexts, the response's wrapping) cost more than the model itself
(docs/ARCHITECTURE.md, "Figures behind choices in the code"). This client does only what the model
client needs: a request with a small JSON body, the whole answer read (up to a size cap), a
bounded number of connections reused between calls and closed after an idle spell, timeouts on
connecting and on the answer, and errors that say which of those failed. Anything unexpected (a
malformed answer, a connection closed mid-answer, a call cancelled while in flight) closes that
connection rather than reusing it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools


class Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]  # names in lower case; a repeated header keeps its last value
    content: bytes


class TransportError(Exception):
    """No answer: connecting failed or timed out, the connection broke, the answer did not come in
    time, or it was not HTTP. The message names which."""


class _StaleConnection(TransportError):
    """A reused connection was closed before any byte of the answer: the peer had closed it while
    idle. Nothing of the request was answered, so it is sent again on a new connection."""


class _Connection(asyncio.Protocol):
    """One connection; one exchange at a time."""

    def __init__(self, max_answer_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_timer: asyncio.TimerHandle | None = None  # closes it when idle too long
        self._max_answer_bytes = max_answer_bytes
        self._answer_bytes = 0
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._received = False
        self.keep_alive = True

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted any more
            return
        self._received = True
        self._answer_bytes += len(data)
        if self._answer_bytes > self._max_answer_bytes:
            # Head and body together: a peer that sends without end cannot fill our memory.
            self._fail(TransportError(f"answer larger than {self._max_answer_bytes} bytes"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"malformed answer: {type(exc).__name__}"))

    def eof_received(self) -> bool | None:
        self.closed = True
        self._fail(self._closed_error())
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(self._closed_error())

    # --- httptools' callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(Answer(self._parser.get_status_code(), self._headers, b"".join(self._body)))

    # --- the exchange -------------------------------------------------------------------------------

    async def exchange(self, request: bytes, timeout_s: float) -> Answer:
        assert self.transport is not None and self._answer is None
        self._answer = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._received, self._answer_bytes = {}, [], False, 0
        self.transport.write(request)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._answer
        except TimeoutError:
            raise TransportError(f"no answer within {timeout_s:g} s") from None
        finally:
            self._answer = None

    def _closed_error(self) -> TransportError:
        if self.reused and not self._received:
            return _StaleConnection("the connection was closed while idle")
        return TransportError("the connection was closed before the answer ended")

    def _fail(self, error: TransportError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """Requests to one upstream (`base_url`: http or https, with an optional path prefix), over at
    most `max_connections` keep-alive connections, each closed after `idle_timeout_s` unused. An
    answer (head and body) larger than `max_response_bytes` is a TransportError."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int,
        max_response_bytes: int = 1 << 20,
        idle_timeout_s: float = 15.0,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._prefix = url.path.rstrip("/")
        self._host_header = url.netloc.rsplit("@", 1)[-1]
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_response_bytes = max_response_bytes
        self._idle_timeout_s = idle_timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        """The whole answer to one request. Raises TransportError. `timeout_s` bounds the whole of it
        (waiting for a connection included); without it, connecting has the connect timeout and the
        answer the read timeout."""
        request = self._encode(method, path, body, headers or {})
        if timeout_s is None:
            return await self._request(request, self._connect_timeout_s, self._read_timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._request(request, timeout_s, timeout_s)
        except TimeoutError:
            raise TransportError(f"no answer within {timeout_s:g} s") from None

    async def _request(self, request: bytes, connect_timeout_s: float, read_timeout_s: float) -> Answer:
        try:
            async with asyncio.timeout(connect_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise TransportError(f"no free connection within {connect_timeout_s:g} s") from None
        try:
            connection = self._idle_connection()
            if connection is not None:
                try:
                    return await self._exchange(connection, request, read_timeout_s)
                except _StaleConnection:
                    pass  # closed by the peer while idle: nothing was answered, send it on a new one
            connection = await self._connect(connect_timeout_s)
            return await self._exchange(connection, request, read_timeout_s)
        finally:
            self._slots.release()

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.idle_timer is not None:
                connection.idle_timer.cancel()
                connection.idle_timer = None
            if not connection.closed:
                return connection
        return None

    async def _exchange(self, connection: _Connection, request: bytes, timeout_s: float) -> Answer:
        kept = False
        try:
            answer = await connection.exchange(request, timeout_s)
            kept = connection.keep_alive and not connection.closed
            return answer
        finally:
            if kept:
                connection.reused = True
                connection.idle_timer = asyncio.get_running_loop().call_later(
                    self._idle_timeout_s, self._expire, connection
                )
                self._idle.append(connection)
            else:
                connection.close()  # failed, cancelled, or the answer said so: never reused

    def _expire(self, connection: _Connection) -> None:
        connection.idle_timer = None
        connection.close()
        if connection in self._idle:
            self._idle.remove(connection)

    async def _connect(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._max_response_bytes),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except TimeoutError:
            raise TransportError(f"could not connect within {timeout_s:g} s") from None
        except OSError as exc:
            raise TransportError(f"could not connect: {type(exc).__name__}") from exc
        return connection

    def _encode(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: line breaks are not allowed")
            lines.append(f"{name}: {value}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + body if body else head

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
