"""Live reload for a server that ``run`` restarts but does not own: ``run --live-reload-port N``.

``serve`` adds its script to each page itself, and knows when new code answers. Here the page
includes the script by hand (``<script src="http://127.0.0.1:N/__asyncreload__/live.js">``),
from a small HTTP server of ours on port N, which serves the script and its events stream and
nothing else. Each start of the command gets a new name; it is told to the open streams (which
reload their pages) once the command, or a process it started, listens on a TCP port: a page
never reloads onto a server that would refuse it. The streams stay open through the restarts,
since this server does not restart.

Which ports the command listens on is read from ``/proc`` (its processes' socket descriptors
against the kernel's table of listening sockets), so nothing connects to the user's server to
find out; ``run`` is for Linux anyway (see ``_platform``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time

import anyio
import anyio.abc
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from .. import _subreaper
from .._browser_script import EVENTS, JAVASCRIPT, SCRIPT, event

__all__ = ["LiveServer", "listening_ports"]

log = logging.getLogger("asyncreload.run")

KEEPALIVE_S = 15.0
"""Seconds between comments on an idle events stream, so that proxies keep it open."""
HEAD_LIMIT = 16 << 10
"""The longest request head read (16 KiB): the script and the stream take no more."""
FIRST_LOOKS_S = 5.0
"""For this long after a start the command's ports are looked for every 50 ms, then every
250 ms: a server is usually up within a few seconds, and some take a minute."""


class LiveServer:
    """Serves the script and its events on ``host:port``; :meth:`command_started` on each start.

    >>> server = LiveServer(35729)
    >>> server.tag()
    '<script src="http://127.0.0.1:35729/__asyncreload__/live.js"></script>'
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.name: str | None = None
        """The name of the command's start that serves now (None: none listened yet)."""
        self._streams: set[MemoryObjectSendStream[bytes]] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._looking: anyio.CancelScope | None = None

    def tag(self) -> str:
        """What a page includes to follow the restarts."""
        return f'<script src="http://{self.host}:{self.port}{SCRIPT}"></script>'

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``started`` once listening (OSError if the port can't be had)."""
        listener = await anyio.create_tcp_listener(
            local_host=self.host, local_port=self.port, reuse_port=False
        )
        async with listener, anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await listener.serve(self._answer, task_group=tg)

    def command_started(self, pid: int) -> None:
        """The command was (re)started as ``pid``: its pages reload once it listens."""
        if self._looking is not None:
            self._looking.cancel()
        if self._tg is not None:
            self._looking = anyio.CancelScope()
            self._tg.start_soon(self._announce_when_listening, pid, self._looking)

    async def _announce_when_listening(self, pid: int, scope: anyio.CancelScope) -> None:
        with scope:
            started = time.monotonic()
            while not await anyio.to_thread.run_sync(listening_ports, pid):
                waited = time.monotonic() - started
                await anyio.sleep(0.05 if waited < FIRST_LOOKS_S else 0.25)
            self.name = f"{pid}-{time.time_ns()}"
            log.debug("the command listens: %d pages reload", len(self._streams))
            for stream in list(self._streams):
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                    stream.send_nowait(event("hello", self.name))

    async def _answer(self, client: SocketStream) -> None:
        async with client:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                with anyio.fail_after(10):
                    head = await _read_head(client)
                path = _path(head)
                if path == SCRIPT:
                    await client.send(_response(b"200 OK", b"application/javascript", JAVASCRIPT))
                elif path == EVENTS:
                    await self._events(client)
                else:
                    await client.send(_response(b"404 Not Found", b"text/plain", "not found\n"))

    async def _events(self, client: SocketStream) -> None:
        send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        self._streams.add(send)
        try:
            # Before the first start listens there is no name to give: the page takes the
            # first it gets, which is then the one that served it.
            hello = b"" if self.name is None else event("hello", self.name)
            await client.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-store\r\nconnection: close\r\n"
                # The page is the app's, on another port: another origin.
                b"access-control-allow-origin: *\r\n\r\n"
                b"retry: 250\n\n" + hello
            )
            async with anyio.create_task_group() as tg:

                async def gone() -> None:
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while await client.receive():
                            pass
                    tg.cancel_scope.cancel()  # the browser went: nobody to tell

                tg.start_soon(gone)
                while True:
                    data = b": \n\n"
                    with anyio.move_on_after(KEEPALIVE_S):
                        data = await receive.receive()
                    await client.send(data)
        finally:
            self._streams.discard(send)
            send.close()
            receive.close()


async def _read_head(client: SocketStream) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > HEAD_LIMIT:
            raise anyio.EndOfStream
        head += await client.receive()
    return head


def _path(head: bytes) -> str:
    """The path a request head asks for, without its query ("" for a malformed head)."""
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) != 3 or words[0] not in (b"GET", b"HEAD"):
        return ""
    return words[1].decode("latin-1").split("?", 1)[0]


def _response(status: bytes, kind: bytes, text: str) -> bytes:
    body = text.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: " + kind + b"\r\ncontent-length: "
        + str(len(body)).encode() + b"\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
        + body
    )  # fmt: skip


def listening_ports(pid: int) -> set[int]:
    """The TCP ports that ``pid`` or any of its descendants listens on (from ``/proc``)."""
    sockets: set[str] = set()
    for process in (pid, *_subreaper.descendants(pid)):
        with contextlib.suppress(OSError):  # it exited while we looked
            for fd in os.listdir(f"/proc/{process}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{process}/fd/{fd}")
                    if target.startswith("socket:["):
                        sockets.add(target[8:-1])
    if not sockets:
        return set()
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)  # the heading
            for line in f:
                fields = line.split()
                # sl local_address rem_address st ... inode; st 0A is LISTEN
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in sockets:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports
