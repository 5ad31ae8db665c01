"""Blocking calls into watched file systems, in daemon threads that never keep the process alive.

A stat on a hung FUSE or NFS mount (a server that stopped answering) blocks in the kernel until
the server answers, and nothing in the process can interrupt it. ``anyio.to_thread.run_sync(...,
abandon_on_cancel=True)`` lets the caller go, but on asyncio anyio's worker threads are not
daemon threads: the interpreter joins them as it exits (``threading._shutdown``), so a process
whose every task has ended still hangs there until the mount answers, and a second Ctrl-C ends it
with a traceback. :func:`run_sync` runs each call in a daemon thread of its own instead, awaited
like ``to_thread`` and abandoned when the caller is cancelled. A thread per call also means no
shared pool (no ``CapacityLimiter``) that one hung mount can exhaust for the others.

Abandoned is not always gone. A FUSE request that the daemon has already taken (sshfs sent it to
a server that stopped answering) is waited for in a way that no signal ends, SIGKILL included, and
the kernel does not let a process finish exiting while one of its threads waits so. Nothing in
the process can change that; :func:`waiting_for_mounts` lets the CLI say so as it exits, rather
than leave a terminal that does not come back unexplained.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["run_sync", "waiting_for_mounts"]

T = TypeVar("T")

_running: set[threading.Thread] = set()
"""The threads of :func:`run_sync` whose call has not returned yet."""


async def run_sync(fn: Callable[[], T], *, name: str = "asyncreload") -> T:
    """``fn()`` in a new daemon thread, without blocking the event loop.

    On cancellation the thread is abandoned: it finishes (or hangs) on its own, and the process
    may exit meanwhile. ``fn`` should check a stop flag its caller sets when it gives up, so an
    abandoned walk ends at its next directory rather than running on. ``fn`` may call back into
    the event loop with ``anyio.from_thread`` given :func:`anyio.lowlevel.current_token`.
    """
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    outcome: list[T] = []
    failure: list[BaseException] = []
    waiting = [True]

    def body() -> None:
        try:
            outcome.append(fn())
        except BaseException as e:  # handed to the caller, as to_thread does
            failure.append(e)
        finally:
            _running.discard(thread)
        if waiting[0]:
            # RunFinishedError: the event loop has ended, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(done.set, token=token)

    thread = threading.Thread(target=body, name=name, daemon=True)
    _running.add(thread)
    thread.start()
    try:
        await done.wait()
    finally:
        waiting[0] = False
    if failure:
        error = failure.pop()
        try:
            raise error
        finally:
            del error  # no reference cycle through the traceback
    return outcome[0]


def waiting_for_mounts() -> list[str]:
    """The names of the :func:`run_sync` threads that wait for a FUSE daemon's answer now.

    Read from each thread's wait channel in ``/proc`` (Linux; elsewhere none is known).
    """
    if not sys.platform.startswith("linux"):
        return []
    names = []
    for thread in list(_running):
        try:
            with open(f"/proc/self/task/{thread.native_id}/wchan") as f:
                if "request_wait_answer" in f.read():
                    names.append(thread.name)
        except OSError:  # it has just ended
            continue
    return sorted(set(names))
