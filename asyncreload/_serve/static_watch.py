"""With live reload: the app's static files, watched apart from its code. A change there goes to
the serving worker's pages (stylesheets swapped in place, a reload for the rest), and no worker
is started for it. The directories are those given (``--static-dir``) and those the serving
worker's framework names (see :mod:`.static_dirs`), watched anew each time they change."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence

import anyio

from .._exceptions import WatchPathError
from .._watch import ChangeBatch, WatcherOptions, is_within, open_watcher

__all__ = ["StaticWatch"]

log = logging.getLogger("asyncreload.serve")


class StaticWatch:
    """Where the static files are, and the watcher that follows them."""

    def __init__(self, enabled: bool, given: Sequence[str]) -> None:
        self.enabled = enabled
        self.given = [os.path.abspath(d) for d in given]
        self.found: tuple[str, ...] = ()
        """The static directories the serving worker's framework names."""
        self.moved = anyio.Event()
        """Set when the directories to watch change."""

    def dirs(self) -> tuple[str, ...]:
        """Where changes update the pages instead of the worker (live reload only)."""
        if not self.enabled:
            return ()
        return tuple(dict.fromkeys([*self.given, *self.found]))

    def named(self, dirs: Sequence[str]) -> None:
        """The serving worker's framework named these static directories."""
        if tuple(dirs) != self.found:
            self.found = tuple(dirs)
            self.moved.set()

    def strip(self, batch: ChangeBatch) -> ChangeBatch:
        """``batch`` without what lies in the static directories (their watcher has that)."""
        static = self.dirs()
        if not static:
            return batch
        return tuple(c for c in batch if not any(is_within(c.path, d) for d in static))

    async def follow(
        self, options: WatcherOptions, changed: Callable[[ChangeBatch], Awaitable[None]]
    ) -> None:
        """Watch the static directories, anew each time they change; each batch goes to
        ``changed``."""
        while True:
            moved = self.moved = anyio.Event()
            dirs = self.dirs()
            async with anyio.create_task_group() as tg:
                if dirs:
                    tg.start_soon(self._pass_on, dirs, options, changed)
                await moved.wait()
                tg.cancel_scope.cancel()

    async def _pass_on(
        self,
        dirs: Sequence[str],
        options: WatcherOptions,
        changed: Callable[[ChangeBatch], Awaitable[None]],
    ) -> None:
        try:
            async with open_watcher(*dirs, **options) as changes:
                log.debug("static files: watching %s", ", ".join(dirs))
                async for batch in changes:
                    await changed(batch)
        except WatchPathError as e:  # one was removed meanwhile
            log.warning("static files are not followed until the app names them again: %s", e)
