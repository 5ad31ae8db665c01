"""Waiting, for the restart loop: for the next thing to act on, and for a burst to settle.

:func:`wait` races what can end a wait (a batch, the command's exit, Ctrl-C, a request, the end
of a delay) and says what happened (a :class:`~.restarts.Wake`; more than one thing can happen in
the same instant); :func:`settle` folds in the batches of a burst until they stop coming.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from .._exceptions import CommandError
from .._watch import ChangeBatch, ChangeStream, fold
from .process import ManagedProcess
from .requests import Requests
from .restarts import Wake

__all__ = ["SETTLE_CAP", "SETTLE_QUIET", "settle", "wait"]

SETTLE_QUIET = 0.1
"""Seconds without a new batch before a command stopped for a change is started again. Starting
it while a burst (a checkout, a build) is still being written would restart it again at the
burst's next pause; worse, its start-up competes for the CPU with the writer, and makes those
pauses longer. The stop counts towards it, so a command that takes that long to stop waits for
nothing more."""
SETTLE_CAP = 2.0
"""Seconds at most that the start waits for changes to stop coming."""


async def wait(
    proc: ManagedProcess,
    changes: ChangeStream,
    requests: Requests,
    *,
    admit: Callable[[ChangeBatch], ChangeBatch],
    child: bool,
    delay: float | None = None,
) -> Wake:
    """Wait for the next thing to act on: a batch, the command's exit, Ctrl-C, a request.

    ``admit`` filters each batch (an empty one does not end the wait); ``child``: a command is
    running; ``delay``: end the wait after so many seconds anyway.
    """
    wake = Wake()
    if requests.pending:
        return wake
    async with anyio.create_task_group() as tg:

        async def batch() -> None:
            while not wake.batch:
                try:
                    wake.batch = admit(await changes.__anext__())
                except StopAsyncIteration:
                    raise CommandError("the watcher stopped unexpectedly") from None
            tg.cancel_scope.cancel()

        async def exited() -> None:
            await proc.wait()
            wake.exited = True
            tg.cancel_scope.cancel()

        async def interrupted() -> None:
            await proc.wait_interrupted()
            wake.interrupted = True
            tg.cancel_scope.cancel()

        async def suspended() -> None:
            await proc.wait_suspended()
            wake.suspended = True
            tg.cancel_scope.cancel()

        async def requested() -> None:
            await requests.woken()
            tg.cancel_scope.cancel()

        async def timer(delay: float) -> None:
            await anyio.sleep(delay)
            wake.timed_out = True
            tg.cancel_scope.cancel()

        tg.start_soon(batch)
        tg.start_soon(requested)
        if child:  # exited() raises if the guard dies
            tg.start_soon(exited)
            tg.start_soon(interrupted)
            tg.start_soon(suspended)
        else:  # the guard dies: say so now, not at the next change
            tg.start_soon(proc.watch_guard)
        if delay is not None:
            tg.start_soon(timer, delay)
    requests.rearm()
    return wake


async def settle(
    changes: ChangeStream,
    batch: ChangeBatch,
    *,
    since: float,
    quiet: float = SETTLE_QUIET,
    cap: float = SETTLE_CAP,
) -> ChangeBatch:
    """Fold in the batches that keep coming until none has come for ``quiet`` seconds counted
    from ``since`` (when the restart began; so a stop that took that long costs nothing more), or
    for ``cap`` seconds in all, so that endless churn still gets a restart."""
    give_up = since + cap
    window_end = since + quiet
    while True:
        now = anyio.current_time()
        window = min(window_end, give_up) - now
        more: ChangeBatch = ()
        if window > 0:
            with anyio.move_on_after(window):
                more = await changes.__anext__()
        else:
            more = changes.take_nowait()
        if not more:
            return batch
        batch = fold(batch, more)
        window_end = anyio.current_time() + quiet
