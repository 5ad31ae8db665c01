"""The channel the runner and the supervisor talk to their children over: a real socketpair, on
asyncio and trio."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest

from asyncreload._channel import Channel

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Channel, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel = Channel(ours)
    try:
        yield channel, theirs
    finally:
        await channel.aclose()
        theirs.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_read_cancelled_as_its_data_arrives_raises_nothing_in_the_loop(
    pair: tuple[Channel, socket.socket],
) -> None:
    # The CI failure this module exists for: anyio's UNIXSocketStream left the socket's reader
    # callback queued for the cancelled read's future, and it raised InvalidStateError in the
    # loop. The race needs the cancel and the reader callback in one loop iteration: the cancel
    # is scheduled with call_soon after the data is sent, so it runs right after the select that
    # saw the data, before the reader callback.
    import asyncio

    channel, theirs = pair
    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _, context: errors.append(context.get("exception")))
    try:
        for _ in range(20):
            scope = anyio.CancelScope()
            async with anyio.create_task_group() as tg:

                async def read(scope: anyio.CancelScope = scope) -> None:
                    with scope:
                        await channel.receive()

                tg.start_soon(read)
                await anyio.wait_all_tasks_blocked()
                theirs.send(b"x")
                loop.call_soon(scope.cancel)
            if not scope.cancelled_caught:  # the read won: take the next byte as it comes
                continue
            assert await channel.receive() == b"x"  # and the cancelled read lost no data
        await anyio.sleep(0.05)  # let any stale callback run (its error lands in ``errors``)
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_round_trip_larger_than_the_socket_buffer(
    pair: tuple[Channel, socket.socket],
) -> None:
    channel, theirs = pair
    message = bytes(range(256)) * 8192  # 2 MiB: the send must wait for the reader
    received = bytearray()

    def drain() -> None:
        while len(received) < len(message):
            received.extend(theirs.recv(1 << 16))

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, drain)
        await channel.send(message)
    assert bytes(received) == message
    theirs.sendall(b"answer")
    assert await channel.receive() == b"answer"


async def test_eof_and_half_close(pair: tuple[Channel, socket.socket]) -> None:
    channel, theirs = pair
    await channel.send_eof()
    assert theirs.recv(10) == b""  # they read EOF...
    theirs.sendall(b"still here")  # ...and can still answer
    assert await channel.receive() == b"still here"
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(anyio.EndOfStream):
        await channel.receive()


async def test_closing_wakes_a_waiting_reader(pair: tuple[Channel, socket.socket]) -> None:
    channel, _ = pair
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await channel.receive()

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await channel.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await channel.send(b"late")


async def test_a_peer_that_died_is_a_broken_channel(pair: tuple[Channel, socket.socket]) -> None:
    channel, theirs = pair
    theirs.close()
    with pytest.raises(anyio.BrokenResourceError):  # EPIPE: nobody reads any more
        await channel.send(b"x")
