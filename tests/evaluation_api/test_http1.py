"""The model client's HTTP/1.1 client (evaluation_api/model_client/http1.py) against small servers on 127.0.0.1:
connections kept and reused, a connection the peer closed while idle, answers cut short, chunked or
malformed, cancelled calls, the connection bound and the timeouts."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from evaluation_api.model_client.http1 import Http1Client, TransportError
from tests.evaluation_api.test_model_client import http_response, read_request, serving

OK = http_response("200 OK", b'{"ok": true}', X_Model_Version="v1")


def http1(url: str, **overrides: float) -> Http1Client:
    settings = {"connect_timeout_s": 0.5, "read_timeout_s": 0.3, "max_connections": 4}
    settings.update(overrides)
    return Http1Client(url, **settings)  # type: ignore[arg-type]


class Peer:
    """A server whose n-th connection (from 1) runs `behaviours[n]`, default: answer OK to every request."""

    def __init__(self, **behaviours: str) -> None:
        self.behaviours = behaviours
        self.connections = 0
        self.requests: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        behaviour = self.behaviours.get(f"c{self.connections}", "answer")
        served = 0
        while True:
            try:
                line, _, _ = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            self.requests.append(line)
            served += 1
            if behaviour == "close_on_second" and served == 2:
                writer.close()  # what a peer's idle timeout looks like from the client: no answer
                return
            if behaviour == "cut":
                writer.write(OK[:-5])
                await writer.drain()
                writer.close()
                return
            if behaviour == "silent":
                await asyncio.sleep(30)
            if behaviour == "garbage":
                writer.write(b"HTTP/1.1 abc\r\n\r\n")
            elif behaviour == "chunked":
                writer.write(
                    b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n4\r\n: 1}\r\n0\r\n\r\n'
                )
            elif behaviour == "close":
                writer.write(http_response("200 OK", b"{}", Connection="close"))
            else:
                writer.write(OK)
            await writer.drain()


async def test_an_answer_its_headers_and_a_kept_connection() -> None:
    peer = Peer()
    async with serving(peer) as url:
        client = http1(url)
        try:
            first = await client.request("POST", "/predict_batch", body=b"{}", headers={"x-request-id": "r1"})
            second = await client.request("GET", "/metadata")
        finally:
            await client.aclose()
    assert first.status == 200 and first.content == b'{"ok": true}'
    assert first.headers["x-model-version"] == "v1"  # names in lower case
    assert second.status == 200
    assert peer.requests == [b"POST /predict_batch HTTP/1.1", b"GET /metadata HTTP/1.1"]
    assert peer.connections == 1


def test_on_uvloop_as_the_api_runs() -> None:
    async def exchange() -> tuple[int, int]:
        peer = Peer(c1="close_on_second")
        async with serving(peer) as url:
            client = http1(url)
            try:
                statuses = [(await client.request("GET", f"/{i}")).status for i in range(3)]
            finally:
                await client.aclose()
        assert statuses == [200, 200, 200]
        return peer.connections, len(peer.requests)

    assert uvloop.run(exchange()) == (2, 4)


async def test_a_connection_the_peer_closed_while_idle_is_replaced_without_an_error() -> None:
    peer = Peer(c1="close_on_second")
    async with serving(peer) as url:
        client = http1(url)
        try:
            await client.request("GET", "/a")
            answer = await client.request("GET", "/b")  # the kept connection is gone: sent again on a new one
        finally:
            await client.aclose()
    assert answer.status == 200
    assert peer.connections == 2 and peer.requests == [b"GET /a HTTP/1.1", b"GET /b HTTP/1.1", b"GET /b HTTP/1.1"]


@pytest.mark.parametrize(
    ("behaviour", "message"), [("cut", "closed before the answer ended"), ("garbage", "malformed")]
)
async def test_an_answer_cut_short_or_malformed_is_a_transport_error(behaviour: str, message: str) -> None:
    peer = Peer(c1=behaviour)
    async with serving(peer) as url:
        client = http1(url)
        try:
            with pytest.raises(TransportError, match=message):
                await client.request("GET", "/a")
            assert (await client.request("GET", "/b")).status == 200  # on a new connection
        finally:
            await client.aclose()
    assert peer.connections == 2


async def test_a_chunked_answer_is_read_whole() -> None:
    async with serving(Peer(c1="chunked")) as url:
        client = http1(url)
        try:
            answer = await client.request("GET", "/a")
        finally:
            await client.aclose()
    assert answer.status == 200 and answer.content == b'{"a": 1}'


async def test_an_answer_that_says_connection_close_is_not_reused() -> None:
    peer = Peer(c1="close")
    async with serving(peer) as url:
        client = http1(url)
        try:
            await client.request("GET", "/a")
            await client.request("GET", "/b")
        finally:
            await client.aclose()
    assert peer.connections == 2


async def test_a_call_cancelled_in_flight_closes_its_connection() -> None:
    peer = Peer(c1="silent")
    async with serving(peer) as url:
        client = http1(url, read_timeout_s=5)
        try:
            call = asyncio.create_task(client.request("GET", "/slow"))
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # Its answer may still come on that connection: the next call never reads it there.
            assert (await client.request("GET", "/b")).status == 200
        finally:
            await client.aclose()
    assert peer.connections == 2


async def test_calls_beyond_the_connection_bound_wait_for_a_connection() -> None:
    peer = Peer()
    async with serving(peer) as url:
        client = http1(url, max_connections=1)
        try:
            answers = await asyncio.gather(*(client.request("GET", f"/{i}") for i in range(5)))
        finally:
            await client.aclose()
    assert [a.status for a in answers] == [200] * 5
    assert peer.connections == 1


async def test_no_answer_in_time_is_a_transport_error_naming_the_timeout() -> None:
    async with serving(Peer(c1="silent", c2="silent")) as url:
        client = http1(url, read_timeout_s=0.2)
        try:
            # The error names the timeout that ended the call.
            with pytest.raises(TransportError, match=r"no answer within 0\.2 s"):
                await client.request("GET", "/a")
            with pytest.raises(TransportError, match=r"no answer within 0\.1 s"):
                await client.request("GET", "/a", timeout_s=0.1)  # a bound on the whole call
        finally:
            await client.aclose()


async def test_a_header_with_a_line_break_is_refused_before_sending() -> None:
    client = http1("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="line breaks"):
        await client.request("GET", "/a", headers={"x-request-id": "a\r\nX-Injected: 1"})


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Client("ftp://model-service", connect_timeout_s=1, read_timeout_s=1, max_connections=1)


async def test_an_answer_larger_than_the_cap_is_a_transport_error_and_its_connection_is_closed() -> None:
    big = http_response("200 OK", b"[" + b"0," * 40_000 + b"0]")  # about 80 KB

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(big)
            await writer.drain()

    async with serving(flood) as url:
        capped = Http1Client(url, connect_timeout_s=0.5, read_timeout_s=2.0, max_connections=1, max_response_bytes=8192)
        roomy = Http1Client(
            url, connect_timeout_s=0.5, read_timeout_s=2.0, max_connections=1, max_response_bytes=1 << 20
        )
        try:
            with pytest.raises(TransportError, match="answer larger than 8192 bytes"):
                await capped.request("GET", "/big")
            assert capped._idle == []  # never reused: what is left of the answer would be read as the next one
            answer = await roomy.request("GET", "/big")  # the same answer under a cap it fits
        finally:
            await capped.aclose()
            await roomy.aclose()
    assert answer.status == 200 and len(answer.content) == len(big) - big.index(b"\r\n\r\n") - 4


async def test_a_connection_idle_past_the_timeout_is_closed_and_the_next_call_opens_another() -> None:
    closed_by_client = asyncio.Event()
    peer_connections = 0

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal peer_connections
        peer_connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                closed_by_client.set()  # the client hung up: the server never closes on its own
                return
            writer.write(OK)
            await writer.drain()

    async with serving(keep) as url:
        client = http1(url, idle_timeout_s=0.2)
        try:
            await client.request("GET", "/a")
            await asyncio.wait_for(closed_by_client.wait(), timeout=10)
            assert client._idle == []
            assert (await client.request("GET", "/b")).status == 200
        finally:
            await client.aclose()
    assert peer_connections == 2


async def test_a_connection_used_before_its_idle_timeout_is_kept() -> None:
    peer = Peer()
    async with serving(peer) as url:
        client = http1(url, idle_timeout_s=30)
        try:
            for path in ("/a", "/b", "/c"):
                await client.request("GET", path)
        finally:
            await client.aclose()
    assert peer.connections == 1
