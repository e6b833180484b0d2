"""A lean HTTP/1.1 keep-alive transport for httpx, used by the gateway for ``openai`` upstreams.

Why: profiling the gateway against a fast upstream showed httpcore's connection pool taking about
half of the gateway's CPU per request (every request scans every pooled connection and polls each
socket). This transport keeps a plain LIFO list of idle asyncio connections per host, writes each
request in one ``write`` and parses responses with a few string splits. It plugs in under
``httpx.AsyncClient(transport=...)``, so the backend's code and error handling stay the same: it
raises httpx's own exceptions (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``RemoteProtocolError``). HTTP/1.1 only (no HTTP/2, no proxies); ``https`` works through asyncio's TLS.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx

_MAX_IDLE_PER_HOST = 64


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class _Body(httpx.AsyncByteStream):
    """The response body; gives the connection back to the pool once read to the end."""

    def __init__(
        self,
        transport: LeanTransport,
        key: tuple[str, str, int],
        conn: _Connection,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        read_timeout: float | None,
    ) -> None:
        self.transport, self.key, self.conn = transport, key, conn
        self.length, self.chunked, self.keep_alive = length, chunked, keep_alive
        self.read_timeout = read_timeout
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self.conn.reader
        try:
            async with asyncio.timeout(self.read_timeout):
                if self.chunked:
                    while True:
                        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"x", 16)
                        if size == 0:
                            await reader.readline()
                            break
                        data = await reader.readexactly(size + 2)
                        yield data[:-2]
                elif self.length is not None:
                    if self.length:
                        yield await reader.readexactly(self.length)
                else:  # no length: the body ends when the server closes
                    self.keep_alive = False
                    while data := await reader.read(65536):
                        yield data
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as error:
            self.keep_alive = False
            raise httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body ({error})"
            ) from None
        except TimeoutError:
            self.keep_alive = False
            raise httpx.ReadTimeout("timed out reading the response body") from None
        self.done = True

    async def aclose(self) -> None:
        if self.done and self.keep_alive:
            self.transport._release(self.key, self.conn)
        else:
            self.conn.close()


class LeanTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=LeanTransport())``: HTTP/1.1 keep-alive with a minimal pool."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else (ssl.create_default_context() if verify else None)

    def _release(self, key: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < _MAX_IDLE_PER_HOST:
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, key: tuple[str, str, int], timeout: float | None) -> tuple[_Connection, bool]:
        """(connection, whether it came from the pool)."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.close()
        scheme, host, port = key
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._ssl if scheme == "https" else None, limit=2**20
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as error:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {error}") from None
        return _Connection(reader, writer), False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        head = [f"{request.method} {url.raw_path.decode('ascii')} HTTP/1.1"]
        head += [f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in request.headers.raw]
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        # A pooled connection may have been closed by the server while idle: then retry once on a new one.
        while True:
            conn, reused = await self._connect(key, timeouts.get("connect"))
            try:
                conn.writer.write(payload)
                async with asyncio.timeout(timeouts.get("read")):
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                break
            except TimeoutError:
                conn.close()
                raise httpx.ReadTimeout("timed out waiting for the response") from None
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError) as error:
                conn.close()
                if not reused or isinstance(error, asyncio.LimitOverrunError):
                    raise httpx.RemoteProtocolError(
                        f"server closed the connection without a response ({error})"
                    ) from None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            conn.close()
            raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}") from None
        headers = []
        length: int | None = None
        chunked = False
        keep_alive = True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            value = value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == "content-length":
                length = int(value)
            elif lower == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif lower == "connection" and value.lower() == "close":
                keep_alive = False
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length, chunked = 0, False
        stream = _Body(self, key, conn, length, chunked, keep_alive, timeouts.get("read"))
        return httpx.Response(status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
