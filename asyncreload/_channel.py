"""The byte stream a parent talks to its child over: the runner to its guard, the supervisor to
a worker. One end of a socketpair, read and written when :func:`anyio.wait_readable` and
:func:`anyio.wait_writable` say it can be.

Not anyio's ``UNIXSocketStream``: on asyncio its pending read is a future that the socket's
reader callback completes with ``set_result``. A read cancelled in the very loop iteration in
which the data arrives (a worker's last message as it is stopped, say) leaves that callback
queued for a cancelled future, and it raises ``InvalidStateError`` in the event loop: a
traceback on the console, and a failed test wherever the loop's errors are collected.
``wait_readable`` completes its future only if it is still pending.

On top of the bytes, the messages of both protocols, framed by :mod:`._wire`.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

from . import _wire

_CHUNK = 1 << 16


class Channel(ByteStream):
    """A :class:`~anyio.abc.ByteStream` over a connected stream socket, which it owns."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False
        # One reader and one writer at a time, as anyio's own streams allow.
        self._reading = anyio.Lock()
        self._writing = anyio.Lock()
        self._lines = _wire.Lines()

    async def send_message(self, message: Mapping[str, Any]) -> None:
        await self.send(_wire.encode(message))

    async def receive_message(self) -> dict[str, Any]:
        """The next message. :exc:`~anyio.EndOfStream` once the other end has closed,
        :exc:`~anyio.BrokenResourceError` for a line that is not a message (after which nothing
        more is read). Not to be mixed with :meth:`receive`."""
        while True:
            try:
                message = self._lines.next()
            except ValueError as e:
                await self.aclose()
                raise anyio.BrokenResourceError(f"a bad message: {e}") from e
            if message is not None:
                return message
            self._lines.feed(await self.receive())

    async def receive(self, max_bytes: int = _CHUNK) -> bytes:
        async with self._reading:
            while True:
                self._check_open()
                try:
                    data = self._sock.recv(max_bytes)
                except BlockingIOError:
                    await anyio.wait_readable(self._sock)
                    continue
                except OSError as e:
                    raise anyio.BrokenResourceError from e
                if not data:
                    raise anyio.EndOfStream
                await anyio.lowlevel.checkpoint()
                return data

    async def send(self, item: bytes) -> None:
        async with self._writing:
            view = memoryview(item)
            while view:
                self._check_open()
                try:
                    sent = self._sock.send(view)
                except BlockingIOError:
                    await anyio.wait_writable(self._sock)
                    continue
                except OSError as e:
                    raise anyio.BrokenResourceError from e
                view = view[sent:]
            await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Half-close: the other end reads EOF, and can still answer."""
        self._check_open()
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise anyio.BrokenResourceError from e
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # Wakes a task waiting to read or write (ClosedResourceError) before the descriptor
            # goes, so no one waits on a number the kernel may hand out again.
            anyio.notify_closing(self._sock)
            self._sock.close()
        await anyio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
