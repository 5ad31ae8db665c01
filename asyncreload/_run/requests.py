"""What the user of a :class:`~.runner.ProcessRunner` asks of it while it runs (a restart, a stop,
a forced stop), and how each request reaches the loop, wherever the loop is: waiting (it wakes),
stopping the command (a forced stop kills it), or not running yet (a stop ends the run's start).

The requests may come before the run begins, from the event loop that runs it: the events are
made when the run begins, in that loop, and a request already made is acted on at once.
"""

from __future__ import annotations

import anyio

__all__ = ["Requests"]


class Requests:
    """The requests made of one runner, and the wake-ups they make."""

    def __init__(self) -> None:
        self.restart = False
        """A restart was asked for, and no start has answered it yet."""
        self.stop = False
        self.force = False
        """The stop is to SIGKILL the command now, not after the grace period."""
        self._wake: anyio.Event | None = None
        self._forced: anyio.Event | None = None
        self._starting: anyio.CancelScope | None = None

    @property
    def pending(self) -> bool:
        """A restart or a stop waits to be acted on."""
        return self.restart or self.stop

    def ask_restart(self) -> None:
        self.restart = True
        self._poke()

    def ask_stop(self, *, force: bool) -> None:
        self.stop = True
        self.force = self.force or force
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self.force and self._forced is not None:
            self._forced.set()
        if self.stop and self._starting is not None:
            self._starting.cancel()  # no command yet: nothing to stop gracefully

    def begin(self) -> anyio.CancelScope:
        """The run begins: the scope of its start, which a stop cancels until :meth:`started`."""
        self._wake, self._forced = anyio.Event(), anyio.Event()
        if self.force:
            self._forced.set()
        starting = self._starting = anyio.CancelScope()
        if self.stop:
            starting.cancel()
        return starting

    def started(self) -> None:
        """The run has started (or ended): a stop is now the loop's to act on."""
        self._starting = None

    async def woken(self) -> None:
        """Return once a request is made; at once if one was since the last :meth:`rearm`."""
        assert self._wake is not None
        await self._wake.wait()

    def rearm(self) -> None:
        """The requests made so far are seen: :meth:`woken` waits for the next one."""
        if self._wake is not None and self._wake.is_set():
            self._wake = anyio.Event()

    async def forced(self) -> None:
        """Return once a forced stop is asked for."""
        assert self._forced is not None
        await self._forced.wait()
