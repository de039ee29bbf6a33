"""A TCP relay in front of the test PostgreSQL, to take the database away and bring it back.

Stopping the relay closes its listening socket and every relayed connection, which is what a
replica sees when the database server goes down; starting it again on the same port is the
server coming back. The session's server itself keeps running for the other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


def _target(url: str) -> tuple[str | None, str | None, int]:
    """Where `url` points: (unix socket path or None, TCP host or None, port)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    port = parts.port or int(query.get("port", ["5432"])[0])
    host = query.get("host", [None])[0] or parts.hostname
    if host and host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}", None, port
    return None, host or "localhost", port


class PostgresRelay:
    """`url` (the relayed URL) reaches the real server while the relay is up."""

    def __init__(self, real_url: str) -> None:
        self._real_url = real_url
        self._unix, self._host, self._port = _target(real_url)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The real URL, with its host and port replaced by the relay's."""
        parts = urlsplit(self._real_url)
        query = {k: v for k, v in parse_qs(parts.query).items() if k not in ("host", "port")}
        netloc = f"{parts.username or 'postgres'}"
        if parts.password:
            netloc += f":{parts.password}"
        netloc += f"@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, doseq=True)))

    async def start(self, *, stall: bool = False) -> None:
        """Listen (on the same port as before, after a stop). With `stall`, connections are
        accepted and never answered: a server or network that hangs rather than refuses."""
        handler = self._swallow if stall else self._relay
        self._server = await asyncio.start_server(handler, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """The database goes away: no new connection, every open one cut."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            while await reader.read(65536):
                pass
        finally:
            self._writers.discard(writer)
            self._pipes.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
            else:
                assert self._host is not None
                up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)
            self._pipes.difference_update(pipes)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
