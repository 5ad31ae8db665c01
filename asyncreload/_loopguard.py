"""The loop guard: a path that keeps causing reloads is set aside until something else changes.

An app that writes into its own watched tree (a generated module at import, an output file it
appends to) reloads itself forever: each start writes, each write reloads. The guard counts the
reloads each path caused; a path that caused :data:`LIMIT` reloads within :data:`WINDOW` seconds
is *muted*: a batch of nothing but muted paths causes no reload. The next change to any other path
is a real edit: it is reacted to, and every muted path with it.

Only a change made while a reload was under way, or within ``follow`` seconds of its end, counts
as one the reload caused (when it was made: the file's mtime, see :func:`changed_at`). A file
saved again and again (an editor's autosave every second, a script that saves right after each
reload) does not trip the guard where ``follow`` is shorter than the gap.

>>> now = [0.0]
>>> guard = LoopGuard(clock=lambda: now[0])
>>> guard.settled()                        # the first start is done
>>> for _ in range(LIMIT):                 # the app writes out.py whenever it starts
...     now[0] += 0.1
...     verdict = guard.admit({"/p/out.py": now[0]})
...     guard.settled()
>>> verdict.muted, verdict.paths
(('/p/out.py',), ('/p/out.py',))
>>> now[0] += 0.1
>>> guard.admit({"/p/out.py": now[0]}).paths       # muted: no reload
()
>>> verdict = guard.admit({"/p/app.py": now[0]})   # an edit elsewhere: out.py resumed
>>> verdict.paths, verdict.resumed
(('/p/app.py',), ('/p/out.py',))
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ._types import Change, ChangeKind, Source

__all__ = ["FOLLOW", "LIMIT", "WINDOW", "LoopGuard", "Verdict", "changed_at", "exclude_glob",
           "muted_line"]  # fmt: skip

LIMIT = 5
"""Reloads one path may cause within :data:`WINDOW` seconds before it is muted."""
WINDOW = 10.0
FOLLOW = 0.5
"""The default ``follow``: seconds after a reload during which a change counts as caused by it."""


@dataclass(frozen=True)
class Verdict:
    """What to do about one batch of changed paths."""

    paths: tuple[str, ...]
    """The paths to react to; empty: no reload."""
    muted: tuple[str, ...] = ()
    """Paths this batch muted that weren't muted in the last :data:`WINDOW`: say so."""
    resumed: tuple[str, ...] = ()
    """Muted paths reacted to again, because something else changed."""


class LoopGuard:
    """Decides, batch by batch, which changed paths to react to (pure: the clock is given).

    Call :meth:`admit` with each batch's paths before reacting, and :meth:`settled` once the
    reaction (the reload, the restart) is done. Until the first :meth:`settled`, a reload is
    taken to be under way: the first start can cause changes too. The clock is the wall clock,
    which file mtimes are on.
    """

    def __init__(
        self,
        *,
        limit: int = LIMIT,
        window: float = WINDOW,
        follow: float = FOLLOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self.follow = follow
        self._clock = clock
        self._caused: dict[str, deque[float]] = {}
        self._muted: set[str] = set()
        self._told: set[str] = set()
        self._counting_until = math.inf  # a reload (the first start) is under way

    @property
    def muted(self) -> frozenset[str]:
        """The paths not reacted to now."""
        return frozenset(self._muted)

    def admit(self, changes: Mapping[str, float]) -> Verdict:
        """The paths of a new batch to react to; a non-empty answer means a reload begins.

        ``changes`` maps each changed path to when it changed, on this guard's clock.
        """
        now = self._clock()
        self._forget(now)
        batch = tuple(changes)
        if all(p in self._muted for p in batch):
            return Verdict(())
        until, self._counting_until = self._counting_until, math.inf  # a reload begins
        caused = [p for p in batch if changes[p] <= until]
        self._count(caused, now)
        before = self._muted
        self._muted = {p for p in caused if len(self._caused[p]) >= self.limit}
        # Said once while the loop goes on: a path muted again after an edit elsewhere (each
        # reload rewrites it) is not news.
        news = tuple(p for p in batch if p in self._muted and p not in self._told)
        self._told.update(news)
        return Verdict(batch, news, tuple(sorted(before - self._muted)))

    def settled(self, at: float | None = None) -> None:
        """The reaction to the last admitted batch is done (the app serves, the command runs);
        ``at``: when it was, if that is known to be earlier than now (a worker that said it was
        ready a moment before we heard it: an edit made meanwhile was made against the new
        code, and the reload did not cause it)."""
        now = self._clock()
        self._counting_until = (now if at is None else min(at, now)) + self.follow

    def _count(self, batch: Sequence[str], now: float) -> None:
        for path in batch:
            self._caused.setdefault(path, deque()).append(now)

    def _forget(self, now: float) -> None:
        """Drop what is out of the window (so nothing grows), and a stopped loop's "told"."""
        horizon = now - self.window
        for path in list(self._caused):
            times = self._caused[path]
            while times and times[0] < horizon:
                times.popleft()
            if not times:
                del self._caused[path]
                self._told.discard(path)


def exclude_glob(path: str, roots: Iterable[str]) -> str:
    """The exclude glob that stops ``path`` for good: its path below the deepest watched root
    that holds it (a name alone matches at any depth), shell-quoted.

    >>> exclude_glob("/p/app/gen.py", ["/p", "/p/app"]), exclude_glob("/p/a b.out", ["/p"])
    ('gen.py', "'a b.out'")
    """
    below = [r.rstrip("/") for r in roots if path.startswith(r.rstrip("/") + "/")]
    relative = path[len(max(below, key=len)) + 1 :] if below else os.path.basename(path)
    return shlex.quote(relative)


def muted_line(path: str, shown: str, roots: Iterable[str], option: str, what: str) -> str:
    """The one line that says ``path`` is muted (``shown`` as the log shows paths), and the
    ``option`` that stops it for good; ``what`` is ``reloads`` or ``restarts``."""
    return (
        f"{shown} caused {LIMIT} {what} within {WINDOW:g} s: no longer reacting to it until "
        f"something else changes ({option} {exclude_glob(path, roots)} stops it for good)"
    )


def changed_at(change: Change) -> float:
    """When ``change`` was made, as well as we know (for :meth:`LoopGuard.admit`): the file's
    mtime for one the kernel reported (a local file system, on this clock), else now (a polled
    mount's mtimes are on its server's clock)."""
    if change.source is Source.EVENTS and change.kind is not ChangeKind.DELETED:
        with contextlib.suppress(OSError):
            return os.lstat(change.path).st_mtime
    return time.time()
