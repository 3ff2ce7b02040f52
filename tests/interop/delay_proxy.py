"""A userspace TCP delay proxy with a partition switch (issue 13, item 6).

This kernel has no ``netem``, so the latency between regions is made here: every chunk read on one
side is written to the other ``delay`` seconds later (order preserved, chunks pipelined, so the delay
does not cap throughput). ``partition()`` cuts every open connection (reset) and blackholes new
ones: they are accepted and then hang, nothing is forwarded, until ``heal()``, which resets the
held ones (their clients retry) and forwards new connections again.

The proxy runs its own asyncio loop in a daemon thread; its methods are called from any thread.
Used by tests/interop/test_replication_partitions.py and scripts/bench-geo.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Optional, Set


class DelayProxy:
    def __init__(self, listen_host: str, target_host: str, target_port: int, delay: float = 0.080,
                 listen_port: int = 0, name: str = ""):
        self.listen_host, self.listen_port = listen_host, listen_port
        self.target_host, self.target_port = target_host, target_port
        self.delay = delay
        self.name = name or f"{listen_host}->{target_host}:{target_port}"
        self.partitioned = False
        self.connections = 0          # accepted, in total
        self.cut = 0                  # reset by partition() or heal()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy {self.name}", daemon=True)
        self._server: Optional[asyncio.base_events.Server] = None
        self._live: Set[asyncio.StreamWriter] = set()   # writers of forwarded connections (both sides)
        self._held: Set[asyncio.StreamWriter] = set()   # accepted during a partition

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "DelayProxy":
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._stop(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    # -- the switch -------------------------------------------------------------------------
    def partition(self) -> None:
        """Drop everything: open connections are reset, new ones hang."""
        self._call(self._set(True))

    def heal(self) -> None:
        """Forward again; connections held during the partition are reset (their clients retry)."""
        self._call(self._set(False))

    # -- internals ----------------------------------------------------------------------------
    def _call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port, reuse_address=True)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._live) + list(self._held):
            self._reset(w)
        self._live.clear()
        self._held.clear()
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _set(self, partitioned: bool) -> None:
        self.partitioned = partitioned
        doomed = list(self._live) + list(self._held)
        self._live.clear()
        self._held.clear()
        for w in doomed:
            self._reset(w)
            self.cut += 1

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        """Closes with RST (SO_LINGER 0), as a cut link looks to both ends once they notice."""
        sock = writer.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.partitioned:
            self._held.add(writer)          # a blackhole: never answered, never forwarded
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), timeout=10)
        except (OSError, asyncio.TimeoutError):
            self._reset(writer)
            return
        if self.partitioned:               # partitioned while connecting
            self._reset(up_writer)
            self._held.add(writer)
            return
        self._live.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        except asyncio.CancelledError:
            pass
        for w in (writer, up_writer):
            if w in self._live:
                self._live.discard(w)
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies ``reader`` to ``writer``, each chunk ``delay`` after it was read, in order."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump():
            try:
                while True:
                    chunk = await reader.read(65536)
                    await queue.put((time.monotonic() + self.delay, chunk))
                    if not chunk:
                        return
            except (OSError, ConnectionError):
                await queue.put((0.0, None))

        async def deliver():
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if writer not in self._live:
                    return                  # cut
                if chunk is None:           # the reading side failed: pass the failure on
                    self._live.discard(writer)
                    self._reset(writer)
                    return
                if not chunk:               # EOF: half-close, as TCP does
                    try:
                        if writer.can_write_eof():
                            writer.write_eof()
                    except (OSError, RuntimeError):
                        pass
                    return
                writer.write(chunk)
                try:
                    await writer.drain()
                except (OSError, ConnectionError):
                    return

        pumping = asyncio.ensure_future(pump())
        try:
            await deliver()
        finally:
            pumping.cancel()
