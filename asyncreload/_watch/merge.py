"""The debounced channel: many sources in, one stream of batches out.

:class:`Pending` is the pure core: it folds changes into one net change per path and says when
the batch is due, given a clock reading. :class:`ChangeStream` is the thin async shell the
consumer iterates; :func:`merge` is the task that feeds it from the sources' memory stream.

A consumer that is slow never loses a change and never makes a queue grow: while it is busy the
changes fold into the pending batch, which holds at most one entry per path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import ObjectReceiveStream

from .._types import Change, ChangeKind, Source
from .paths import below, is_below

__all__ = [
    "ChangeBatch",
    "ChangeStream",
    "Pending",
    "StreamStatistics",
    "fold",
    "merge",
    "relative_to",
    "summarize",
]

BURST_PATHS = 16
"""A batch this big is a burst, not an edit."""
BURST_DEBOUNCE = 0.15
"""Quiet time that ends a burst (seconds)."""

ChangeBatch = tuple[Change, ...]
"""One batch: each path once, sorted by path."""
_SHOWN = 3
"""Changed paths named in a batch's summary (the log line of a restart or a reload)."""


@dataclass
class _Net:
    existed_before: bool
    exists_now: bool
    source: Source


class Pending:
    """Changes received but not yet handed out, folded to one net change per path.

    The net kind comes from whether the path existed before the batch's first change to it and
    whether it exists after the last: added then deleted is nothing at all, deleted then added is
    modified, added then modified is added. A path seen by both sources is kept once, with the
    source that saw it first.

    The batch is due ``debounce`` seconds after its last change, or ``max_wait`` seconds after its
    first, whichever comes first, so endless churn still yields. Once the batch holds
    :data:`BURST_PATHS` paths it is a burst (a ``git checkout``, a build, an unpacked archive),
    and it waits for ``burst_debounce`` of quiet instead: the writer of a burst pauses now and
    then (the CPU is shared with whoever reacts to it), and one burst should be one batch. A
    single save stays as quick as ``debounce`` makes it.

    >>> p = Pending(debounce=0.05, max_wait=1.0)
    >>> p.add([Change(ChangeKind.ADDED, "/a", Source.EVENTS)], now=10.0)
    >>> p.add([Change(ChangeKind.MODIFIED, "/a", Source.STAT)], now=10.01)
    >>> round(p.due_at(), 2), [str(c) for c in p.take()]
    (10.06, ['added /a (events)'])
    """

    def __init__(
        self, *, debounce: float, max_wait: float, burst_debounce: float = BURST_DEBOUNCE
    ) -> None:
        self.debounce = debounce
        self.burst_debounce = max(debounce, burst_debounce)
        self.max_wait = max_wait
        self._paths: dict[str, _Net] = {}
        self._first_at = math.inf
        self._last_at = -math.inf

    def __len__(self) -> int:
        return sum(1 for n in self._paths.values() if n.existed_before or n.exists_now)

    def add(self, changes: Iterable[Change], *, now: float) -> None:
        """Fold changes that arrived at ``now`` into the pending batch."""
        for change in changes:
            exists_now = change.kind is not ChangeKind.DELETED
            net = self._paths.get(change.path)
            if net is None:
                existed_before = change.kind is not ChangeKind.ADDED
                self._paths[change.path] = _Net(existed_before, exists_now, change.source)
            else:
                net.exists_now = exists_now
            if self._first_at == math.inf:
                self._first_at = now
            self._last_at = now

    def due_at(self) -> float | None:
        """When the batch should be handed out, or None while there's nothing to hand out."""
        if not self._paths:
            return None
        quiet = self.burst_debounce if len(self._paths) >= BURST_PATHS else self.debounce
        return min(self._last_at + quiet, self._first_at + self.max_wait)

    def take(self) -> ChangeBatch:
        """Hand out the batch (empty if everything netted out) and start a new one."""
        batch = tuple(
            Change(kind, path, net.source)
            for path, net in sorted(self._paths.items())
            if (kind := _net_kind(net)) is not None
        )
        self._paths.clear()
        self._first_at = math.inf
        self._last_at = -math.inf
        return batch


def fold(*batches: Iterable[Change]) -> ChangeBatch:
    """One batch of consecutive ones, by the stream's net-change rule (:class:`Pending`'s): what a
    restart hands its command when more changes came while it stopped.

    >>> a, m = (Change(k, "/a", Source.EVENTS) for k in (ChangeKind.ADDED, ChangeKind.MODIFIED))
    >>> [str(c) for c in fold([a], [m])]
    ['added /a (events)']
    """
    pending = Pending(debounce=0, max_wait=0)
    for batch in batches:
        pending.add(batch, now=0)
    return pending.take()


def _net_kind(net: _Net) -> ChangeKind | None:
    if net.existed_before:
        return ChangeKind.MODIFIED if net.exists_now else ChangeKind.DELETED
    return ChangeKind.ADDED if net.exists_now else None


@dataclass(frozen=True)
class StreamStatistics:
    """A :class:`ChangeStream`'s state, as anyio's ``statistics()`` give theirs."""

    pending: int
    """Paths with a net change not yet handed out."""
    due_in: float | None
    """Seconds until that batch is due (0: now); None while nothing is pending."""
    closed: bool
    """Every source has stopped: what is pending is the last batch."""


class ChangeStream:
    """The consumer's end: ``async for batch in changes`` yields non-empty :data:`ChangeBatch` es.

    Iteration ends when every source has stopped (which, short of an error, is only when the
    watcher is closed).
    """

    def __init__(
        self,
        *,
        debounce: float,
        max_wait: float,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._pending = Pending(debounce=debounce, max_wait=max_wait)
        self._clock = clock
        self._arrived = anyio.Event()
        self._closed = False

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> ChangeBatch:
        while True:
            batch = self.take_nowait()
            if batch:
                return batch
            due = self._pending.due_at()  # None, or later: a due batch that netted out is gone
            if due is None:
                if self._closed:
                    raise StopAsyncIteration
                await self._arrived.wait()
                continue
            with anyio.move_on_after(due - self._clock()):
                await self._arrived.wait()

    def take_nowait(self) -> ChangeBatch:
        """The batch that is due now, or ``()``: never waits (and is not a checkpoint), for a
        consumer that must fold in what is ready without blocking."""
        due = self._pending.due_at()
        if due is not None and (due <= self._clock() or self._closed):
            return self._pending.take()
        return ()

    def statistics(self) -> StreamStatistics:
        """What the stream holds now."""
        due = self._pending.due_at()
        return StreamStatistics(
            pending=len(self._pending),
            due_in=None if due is None else max(0.0, due - self._clock()),
            closed=self._closed,
        )

    def _feed(self, changes: Iterable[Change]) -> None:
        self._pending.add(changes, now=self._clock())
        self._wake()

    def _close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()


async def merge(receive: ObjectReceiveStream[list[Change]], stream: ChangeStream) -> None:
    """Move changes from the sources' shared memory stream into ``stream`` until all sources end."""
    try:
        async with receive:
            async for changes in receive:
                stream._feed(changes)
    finally:
        stream._close()


def summarize(batch: Sequence[Change], cwd: str, shown: int = _SHOWN) -> str:
    """``3 changes: a.py, b.py, c.py`` or ``2,000 changes: a.py, b.py, c.py, ...``.

    >>> from asyncreload import Change, ChangeKind, Source
    >>> batch = [Change(ChangeKind.MODIFIED, f"/p/{n}.py", Source.EVENTS) for n in "abcd"]
    >>> summarize(batch, "/p"), summarize(batch[:1], "/q")
    ('4 changes: a.py, b.py, c.py, ...', '1 change: /p/a.py')
    """
    names = [relative_to(c.path, cwd) for c in batch[:shown]]
    more = ", ..." if len(batch) > shown else ""
    return f"{len(batch):,} change{'s' if len(batch) != 1 else ''}: {', '.join(names)}{more}"


def relative_to(path: str, cwd: str) -> str:
    """``path`` relative to ``cwd`` when it lies below it, else as it is (for log lines).

    >>> relative_to("/p/a.py", "/p"), relative_to("/a.py", "/"), relative_to("/p2/a.py", "/p")
    ('a.py', 'a.py', '/p2/a.py')
    """
    return path[len(below(cwd)) :] if is_below(path, cwd) else path
