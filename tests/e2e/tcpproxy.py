"""A TCP proxy on 127.0.0.1 that makes a real server look slow or stalled, for the fault tests.

It forwards every connection to the target port on its own asyncio loop (in a thread) and
misbehaves only on the way back, server to client:

- ``first_byte_delay_s``: each response's first bytes are held back this long after the request
  reached the proxy (the server looks slow to start answering);
- ``stall_after_bytes``: after this many bytes of a connection nothing more is forwarded, while
  both connections stay open (the server looks hung, not dead).

Only responses to requests that start with ``faulty_requests`` misbehave (by default POSTs, the
completions), so the load test's checks of the server (GET /v1/models, /metrics) pass through.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_port: int, *, first_byte_delay_s: float = 0.0,
                 stall_after_bytes: int | None = None, faulty_requests: bytes = b"POST ") -> None:
        self.target_port = target_port
        self.first_byte_delay_s = first_byte_delay_s
        self.stall_after_bytes = stall_after_bytes
        self.faulty_requests = faulty_requests
        self.port = 0
        self.connections = 0
        self.stalled = 0  # connections held in a stall
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        exchange = _Exchange()
        upstream = asyncio.create_task(self._to_server(client_reader, server_writer, exchange))
        downstream = asyncio.create_task(self._to_client(server_reader, client_writer, exchange))
        try:
            # The connection ends when either side hangs up, even while the way back is stalled.
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, downstream):
                task.cancel()
            for writer in (client_writer, server_writer):
                writer.close()

    async def _to_server(self, reader, writer, exchange: _Exchange) -> None:
        loop = asyncio.get_running_loop()
        while data := await reader.read(CHUNK):
            if exchange.sent_at is None:  # a new request
                exchange.faulty = data.startswith(self.faulty_requests)
            exchange.sent_at = loop.time()
            writer.write(data)
            await writer.drain()

    async def _to_client(self, reader, writer, exchange: _Exchange) -> None:
        loop = asyncio.get_running_loop()
        forwarded = 0
        while data := await reader.read(CHUNK):
            if exchange.sent_at is not None:  # the first bytes of a response
                while exchange.faulty and loop.time() < exchange.sent_at + self.first_byte_delay_s:
                    await asyncio.sleep(exchange.sent_at + self.first_byte_delay_s - loop.time())
                exchange.sent_at, forwarded = None, 0
            if exchange.faulty and self.stall_after_bytes is not None and forwarded + len(data) > self.stall_after_bytes:
                writer.write(data[:self.stall_after_bytes - forwarded])
                await writer.drain()
                self.stalled += 1
                await asyncio.Event().wait()  # hold both connections open, forward nothing more
            writer.write(data)
            await writer.drain()
            forwarded += len(data)


class _Exchange:
    """One connection's request in progress: when its last bytes reached the proxy, and whether to misbehave."""

    sent_at: float | None = None
    faulty: bool = False
