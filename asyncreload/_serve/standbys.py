"""The standby of ``asyncreload serve``: the next worker, started ahead of time and warmed
(uvicorn, the app's third-party modules and, with warm imports, its own), so that a reload only
has to tell it ``go``. One is kept ready; a reload takes it and the next one starts once the
new worker serves (see ``supervisor._reload``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from . import worker_protocol as protocol

if TYPE_CHECKING:
    from .supervisor import _Worker

__all__ = ["Standbys"]

log = logging.getLogger("asyncreload.serve")

Spawn = Callable[[list[str], list[str]], Awaitable["_Worker"]]
"""Start a worker that preloads these third-party modules and these of the app's own; OSError
if it can't be started."""


class Standbys:
    """The standby worker, and what the next one is to import ahead of time."""

    def __init__(
        self,
        spawn: Spawn,
        *,
        warm: bool,
        where: str,
        serving: Callable[[], bool],
        wrote: set[str],
    ) -> None:
        self._spawn = spawn
        self.warm = warm
        """Whether standbys import the app's own modules (warm imports, and not the restart
        strategy)."""
        self._where = where
        self._serving = serving
        self._wrote = wrote
        self.standby: _Worker | None = None
        self._spawning: anyio.Event | None = None
        self.preload: list[str] = []
        """The serving worker's third-party modules: what every standby imports first."""
        self.user_modules: list[str] = []
        """The serving worker's own modules, in load order: what the next standby imports."""
        self.trouble: str | None = None
        """Why workers can't be started (the app dir gone): warned once, until they can."""

    async def take(self) -> _Worker | None:
        """The standby: the one waiting, the one being started, or a new one; None (and a
        warning, once) if none can be started."""
        while self.standby is None and self._spawning is not None:
            await self._spawning.wait()
        worker, self.standby = self.standby, None
        return worker or await self.start()

    def replenish(self, tg: anyio.abc.TaskGroup) -> None:
        """Start the next standby in the background, unless one is there or on its way."""
        if self.standby is None and self._spawning is None:
            self._spawning = anyio.Event()
            tg.start_soon(self._spawn_standby)

    async def start(self, preload: list[str] | None = None, *, warm: bool = True) -> _Worker | None:
        """A new worker (``preload``: its third-party modules, by default the last worker's;
        ``warm``: the app's own too, if known); None, with a warning, if it can't start."""
        user = list(self.user_modules) if warm and self.warm else []
        try:
            worker = await self._spawn(self.preload if preload is None else preload, user)
        except OSError as e:  # the app dir moved away, its mount died: wait for it
            self.warn(f"can't start a worker in {self._where}: {e.strerror}")
            return None
        self.trouble = None
        return worker

    def warn(self, why: str) -> None:
        """Say once why no worker can start (until one can)."""
        if self.trouble is None:
            keeps = "the current worker keeps serving" if self._serving() else "nothing is served"
            log.warning("%s; %s, and the app reloads once it is back", why, keeps)
        self.trouble = why

    async def learned(self, user: list[str], tg: anyio.abc.TaskGroup | None) -> None:
        """The serving worker has loaded these modules of the app: the next standby imports
        them ahead of time, and one waiting without some of them is replaced by one with all."""
        if user == self.user_modules:
            return
        self.user_modules = user
        standby = self.standby
        if standby is None or not self.warm or set(user) <= set(standby.user):
            return
        if tg is not None:
            self.standby = None
            self.replenish(tg)
            await standby.kill()

    async def _spawn_standby(self) -> None:
        worker = None
        try:
            worker = self.standby = await self.start()
            if worker is not None:
                worker.warmed = anyio.Event()
        finally:
            done, self._spawning = self._spawning, None
            if done is not None:
                done.set()
        if worker is not None:
            await self._warm_up(worker)

    async def _warm_up(self, worker: _Worker) -> None:
        """Read a standby's messages until it says it is warm (or has gone)."""
        assert worker.warmed is not None
        try:
            while (message := await worker.receive()) is not None:
                if message.get("op") == protocol.WROTE:
                    self._wrote.add(str(message.get("path")))
                elif message.get("op") == protocol.STANDBY:
                    worker.said_standby = True
                    took = 1000 * (time.monotonic() - worker.started)
                    ahead = f"imported {len(worker.user)} of the app's modules ahead of time, "
                    log.debug("standby %d %swarm in %.0f ms", worker.pid,
                              ahead if worker.user else "", took)  # fmt: skip
                    break
        finally:
            worker.warmed.set()
