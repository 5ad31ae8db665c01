"""The stat poller: sweep a tree, compare it with the last sweep as it goes, report the difference.

Two layers:

* :class:`Sweeper` walks the tree in worker threads, one directory at a time, and compares each
  directory with what the last sweep saw there. It re-reads a directory's listing only when the
  directory's mtime says the listing may have changed; otherwise it stats the files it already
  knows, the way a reloader with a fixed file list does, and builds nothing new unless something
  changed (an unchanged directory's record is carried over as it is). It prunes ignored and
  excluded directories, and never fails as a whole: a directory it can't read keeps its last known
  entries and is reported as a :class:`Problem`.
* :func:`poll` is the coroutine: sweep, send the changes, sleep, again. Sweeps run in daemon
  threads of their own (:mod:`._threads`), so the event loop never waits on the file system, a
  hung mount never keeps the process alive, and one target's threads never wait for another's.
  A target that stops answering gets one warning, and one line when it answers again.

The rest of a sweep is in three modules, in the order of the data flow: how one directory is
opened, listed and stat'ed (:mod:`.poll_read`); how it is compared with the last sweep's record
of it (:mod:`.poll_compare`); what a sweep saw, and the pure core of the comparison
(:mod:`.snapshot`, :func:`~.snapshot.diff_files`).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import NamedTuple

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectSendStream, TaskStatus

from .._platform import is_gone
from .._threads import run_sync
from .._types import Change, ChangeKind, Source
from ..filters import PathFilter
from .paths import filter_relpath
from .poll_compare import Comparison, Queued
from .poll_read import stat_name
from .snapshot import Problem, Snapshot, file_key, same_content
from .walk import pseudo_devices

__all__ = ["Sweep", "Sweeper", "pause_after", "poll"]

log = logging.getLogger("asyncreload.stat")


STREAM_AFTER = 0.05
"""Seconds into a sweep after which what it finds is sent at once. Shorter sweeps send all
their changes together at the end, in one batch: changes in two directories found 10 ms apart
shouldn't become two batches (and two restarts). Past this, waiting for the rest of the walk
would cost more latency than a second batch costs."""

HOT_INTERVAL = 0.05
"""Seconds between two checks of the hot set (the files changed last)."""
HOT_FILES = 32
"""How many of the files changed last are checked that often."""
HOT_FOR = 600.0
"""Seconds a file stays hot after its last change: when nothing is being edited, the checks
stop, and idle costs only the sweeps."""

REMOUNT_HOLD = 5.0
"""Seconds a poller keeps its last known state when its root turns up on another device
(unmounted, remounted): the watcher's live mount table re-plans in that time, and hands the
state to the poller of the new mount. Past it (no mount table), the new device is taken as it
is: compared without inode numbers, so a remount reports only what changed."""
HUNG_AFTER = 5.0
"""Seconds a polled target may leave a sweep without an answer before it is reported as not
answering (a hung network or FUSE mount: a stat then blocks until the server is back)."""
STALL = 1.0
"""A gap this long between two directories read is waiting on the file system, not work: it
does not stretch the pause after the sweep (which is at least the sweep's working time), so a
mount that hung for a minute is polled at its normal pace as soon as it answers."""


class Sweep(NamedTuple):
    """What :meth:`Sweeper.sweep` found."""

    snapshot: Snapshot
    changes: list[Change]
    """What was found and not yet sent."""
    problems: list[Problem]
    touched: list[str]
    """Every file found added or modified, sent or not (for the hot set)."""
    cpu: float = 0.0
    """CPU seconds the sweep's threads spent on it."""
    waited: float = 0.0
    """Seconds of it spent waiting on a file system that did not answer (see :data:`STALL`)."""


class Sweeper:
    """Walks one polled target; each :meth:`sweep` returns a fresh snapshot, the changes since
    the last one, and the problems.

    ``workers`` threads share the walk: on local disks one is fastest (a stat is a few µs of
    CPU and the GIL serialises them anyway), on FUSE and network file systems several hide the
    round trip each stat costs.
    """

    def __init__(
        self,
        root: str,
        path_filter: PathFilter,
        *,
        excludes: Iterable[str] = (),
        filter_root: str | None = None,
    ) -> None:
        self.root = root
        self.filter = path_filter
        self.excludes = frozenset(excludes)
        # Filters match relative to the watched root, which may lie above this target.
        self.filter_root = filter_root or root
        self.relative = filter_relpath(self.filter_root)
        """``path`` relative to the watched root, as the filter sees it."""
        self._pseudo: frozenset[int] | None = None
        self.last: Snapshot | None = None
        """The last snapshot whose changes were all sent: :func:`poll` starts from it (a
        poller that replaces another after a re-plan reports only what changed since)."""
        self.device: int | None = None
        """The st_dev of the root at the last sweep (None: take what the next sweep finds)."""
        self.renumbered = False
        """The file system may have been mounted again since ``last`` (a remount may keep the
        device number): the next sweep compares without inode numbers."""
        self._held_since: float | None = None

    def holds(self, device: int) -> bool:
        """True if a sweep that finds the root on ``device`` must keep the last known state:
        the root moved to another file system, for less than :data:`REMOUNT_HOLD` seconds."""
        if self.device is None or device == self.device:
            self._held_since = None
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
            log.debug("%s: now on another device (unmounted or remounted?); holding", self.root)
        return now - self._held_since < REMOUNT_HOLD

    def pseudo(self) -> frozenset[int]:
        """The devices of the pseudo file systems, never walked (read once; blocking)."""
        if self._pseudo is None:
            self._pseudo = pseudo_devices()
        return self._pseudo

    def report_dir(self, path: str) -> bool:
        """True if a directory appearing or disappearing at ``path`` is worth reporting."""
        return path != self.root and self.filter(self.relative(path))

    def sweep(self, old: Snapshot | None) -> Sweep:
        """One sweep in the calling thread (blocking; for tests and benchmarks).

        ``old`` is the last sweep's snapshot, or None for the first sweep, which reports no
        changes (there is nothing to compare with).
        """
        walk = _Walk(self, old, threading.Event())
        walk.run()
        return walk.result()

    async def sweep_parallel(
        self,
        old: Snapshot | None,
        *,
        workers: int,
        send: ObjectSendStream[list[Change]] | None = None,
        heard: Callable[[], None] | None = None,
    ) -> Sweep:
        """One sweep, its walk shared by ``workers`` threads, never blocking the event loop.

        With ``send``, a sweep that runs longer than :data:`STREAM_AFTER` sends what it finds
        as it goes, so a change early in a slow sweep (a FUSE mount, 100,000 files) is not
        held back by the rest of the walk; the result then holds only what was not yet sent.
        ``heard()`` is called (in a sweep thread) each time the file system answered.
        """
        walk = _Walk(self, old, threading.Event())
        walk.heard = heard
        if send is not None:
            walk.deliver = _sender(send, anyio.lowlevel.current_token())
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    # A stat on a hung network mount can't be interrupted; on cancellation the
                    # thread is abandoned in the directory it is in (the stop flag ends it
                    # there) rather than hang the caller's cancellation on the kernel.
                    tg.start_soon(partial(run_sync, walk.run, name=f"sweep {self.root}"))
        finally:
            walk.halt()
        return walk.result()


def _sender(
    send: ObjectSendStream[list[Change]], token: anyio.lowlevel.EventLoopToken
) -> Callable[[list[Change]], None]:
    """Send from a sweep thread, through the event loop (waits for the send to be taken)."""

    def deliver(changes: list[Change]) -> None:
        anyio.from_thread.run(send.send, changes, token=token)

    return deliver


class _Walk:
    """One sweep's walk: worker threads drain a queue of directories, each read and compared
    with the last sweep by :class:`.poll_compare.Comparison`, and the changes are gathered (or,
    past :data:`STREAM_AFTER`, sent as they come)."""

    def __init__(self, sweeper: Sweeper, old: Snapshot | None, stop: threading.Event) -> None:
        self.sweeper = sweeper
        self.stop = stop
        self.changes: list[Change] = []
        self.touched: list[str] = []
        # Directories to read: those reached without a symlink first, then the others (see
        # walk.py: a link to a directory of the tree must not take it from its real path).
        self.queue: list[Queued] = [(sweeper.root, None)]
        self.linked: list[Queued] = []
        self.pending = 1  # directories queued or being read
        self.reading_unlinked = 0  # of those, being read and reached without a symlink
        self.cond = threading.Condition()
        self.compare = Comparison(sweeper, old)
        self.deliver: Callable[[list[Change]], None] | None = None
        self.stream_at = time.monotonic() + STREAM_AFTER
        self.cpu = 0.0
        self.heard: Callable[[], None] | None = None
        self.answered = time.monotonic()  # when the file system last answered
        self.waited = 0.0

    def halt(self) -> None:
        """Stop the walk: the threads waiting for work leave, the others after their directory."""
        with self.cond:
            self.stop.set()
            self.cond.notify_all()

    def run(self) -> None:
        began = time.thread_time()
        try:
            self.compare.begin()
            self._drain()
        finally:
            spent = time.thread_time() - began
            with self.cond:
                self.cpu += spent

    def _drain(self) -> None:
        cond = self.cond
        while True:
            with cond:
                while not self._has_job() and self.pending and not self.stop.is_set():
                    if self._due():
                        break
                    cond.wait(self._until_due())
                ready = self._take_due()
                job = self._take_job() if not self.stop.is_set() else None
                if job is None and not ready:
                    cond.notify_all()
                    return
            if ready and self.deliver is not None and not self.stop.is_set():
                self.deliver(ready)
            if job is None:
                continue
            subdirs, changes = self.compare.read(*job)
            if self.heard is not None:
                self.heard()
            with cond:
                now = time.monotonic()
                if now - self.answered > STALL:
                    self.waited += now - self.answered
                self.answered = now
                if job[1] is None:
                    self.reading_unlinked -= 1
                for sub in subdirs:
                    (self.queue if sub[1] is None else self.linked).append(sub)
                self.pending += len(subdirs) - 1
                if changes and not self.compare.first:
                    self.changes.extend(changes)
                    self.touched.extend(c.path for c in changes if c.kind is not ChangeKind.DELETED)
                cond.notify_all()

    def _has_job(self) -> bool:
        """Is there a directory to read now (under the lock)? One reached through a symlink only
        once every directory reached without one has been read."""
        return bool(self.queue or (self.linked and not self.reading_unlinked))

    def _take_job(self) -> Queued | None:
        if self.queue:
            self.reading_unlinked += 1
            return self.queue.pop()
        if self.linked and not self.reading_unlinked:
            return self.linked.pop()
        return None

    def _due(self) -> bool:
        """Are there changes to send now (under the lock)?"""
        return bool(self.deliver and self.changes and time.monotonic() >= self.stream_at)

    def _until_due(self) -> float | None:
        """How long a waiting worker may sleep before changes fall due (under the lock)."""
        if self.deliver and self.changes:
            return max(0.0, self.stream_at - time.monotonic())
        return None  # until another worker has news

    def _take_due(self) -> list[Change]:
        if not self._due():
            return []
        ready, self.changes = self.changes, []
        return ready

    def result(self) -> Sweep:
        compare = self.compare
        if (self.stop.is_set() and (self.pending or self.queue or self.linked)) or compare.held:
            # Interrupted: a partial walk must not read as "everything else was deleted". Held:
            # an unmounted root's empty mount point must not either.
            return Sweep(compare.old, [], [], [], self.cpu, self.waited)
        self.changes.extend(compare.finish())
        return Sweep(
            compare.new, self.changes, compare.problems, self.touched, self.cpu, self.waited
        )


@dataclass
class _Warnings:
    """One warning per broken directory, one info line when it answers again."""

    active: dict[str, int | None] = field(default_factory=dict)

    def update(self, root: str, problems: list[Problem]) -> None:
        now = {p.path: p.error.errno for p in problems}
        for p in problems:
            if self.active.get(p.path, -1) == p.error.errno:
                continue
            if p.dead_mount:
                log.warning(
                    "%s: the file system is not answering (%s); keeping its last known state "
                    "and watching everything else; polling resumes when it answers",
                    p.path,
                    p.error.strerror or p.error,
                )
            elif p.error.errno in (errno.EACCES, errno.EPERM):
                log.warning("%s: permission denied; not watched until it can be read", p.path)
            else:
                log.warning("%s: can't be read (%s); skipped", p.path, p.error.strerror or p.error)
        for path in self.active.keys() - now:
            log.info("%s: readable again; watching it", path)
        self.active = now


class _Answers:
    """Whether a polled target answers: one warning when it has been silent for
    :data:`HUNG_AFTER` seconds, one line when it answers again.

    A hang is not an error: a stat on a hung mount just blocks, so only the silence says it.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.asking = False  # a sweep or a check of the hot set is under way
        self.heard_at = time.monotonic()
        self.warned = False

    def ask(self) -> None:
        self.asking, self.heard_at = True, time.monotonic()

    def heard(self) -> None:
        """The file system answered (called from sweep threads; a float store is atomic)."""
        self.heard_at = time.monotonic()

    def done(self) -> None:
        self.asking, self.heard_at = False, time.monotonic()

    async def watch(self) -> None:
        """Say when the target stops and starts answering, until cancelled."""
        while True:
            due = self.heard_at + HUNG_AFTER - time.monotonic()
            # Between sweeps, or once warned, a look every second is soon enough.
            await anyio.sleep(max(0.01, due) if self.asking and not self.warned else 1.0)
            silent = time.monotonic() - self.heard_at if self.asking else 0.0
            if silent >= HUNG_AFTER and not self.warned:
                self.warned = True
                log.warning(
                    "%s has not answered for %.0f s: the server may be down; watching everything "
                    "else, and polling it again as soon as it answers",
                    self.root,
                    HUNG_AFTER,
                )
            elif silent < HUNG_AFTER and self.warned:
                self.warned = False
                log.info("%s answers again; polling it", self.root)


class _HotSet:
    """The files changed last, checked every :data:`HOT_INTERVAL` between sweeps.

    Edits come back to the files just edited. Checking those few often makes the next save of
    a file on a FUSE mount show in tens of milliseconds rather than after most of a sweep, for a
    few stats each time. What a check finds is written into the snapshot, so the next sweep
    doesn't report it again.
    """

    def __init__(self) -> None:
        self.paths: dict[str, float] = {}  # path -> when it last changed, oldest first

    def __bool__(self) -> bool:
        return bool(self.paths)

    def note(self, paths: list[str], now: float) -> None:
        for path in paths[-HOT_FILES:]:
            self.paths.pop(path, None)
            self.paths[path] = now
        while len(self.paths) > HOT_FILES:
            del self.paths[next(iter(self.paths))]
        for path, when in list(self.paths.items()):
            if now - when < HOT_FOR:
                break
            del self.paths[path]

    def check(self, snapshot: Snapshot) -> list[Change]:
        """Stat the hot files, and update ``snapshot`` with what changed (blocking). A new inode
        number alone is left for the next sweep to take in."""
        changes = []
        for path in list(self.paths):
            parent, name = os.path.split(path)
            record = snapshot.dirs.get(parent)
            key = None if record is None else record.files.get(name)
            if record is None or key is None:
                del self.paths[path]  # gone, or a directory: the sweep's business
                continue
            try:
                st = stat_name(path)
            except OSError:
                continue  # can't be read now (denied, not answering): the sweep reports that
            if st is None:
                if not _same_device(parent, record.dev):
                    continue  # unmounted, not deleted: the sweep (which holds) sees to it
                files = dict(record.files)
                del files[name]
                snapshot.dirs[parent] = replace(record, files=files)
                changes.append(Change(ChangeKind.DELETED, path, Source.STAT))
                del self.paths[path]
            elif (
                (new_key := file_key(st)) != key
                and not stat.S_ISDIR(st.st_mode)
                # A new inode number alone is the sweep's to judge: it knows when the file
                # system was mounted again (sshfs renumbers every file), which may be news here.
                and not same_content(new_key, key)
            ):
                snapshot.dirs[parent] = replace(record, files={**record.files, name: new_key})
                changes.append(Change(ChangeKind.MODIFIED, path, Source.STAT))
        return changes


def _same_device(path: str, dev: int) -> bool:
    """Is ``path``, or the nearest of its directories still there, on device ``dev``?"""
    while True:
        try:
            return os.stat(path).st_dev == dev
        except OSError as e:
            if not is_gone(e):
                return True  # not answering: not an unmount
        # Gone: with its directory (on dev still), or unmounted (the mount point, on another).
        parent = os.path.dirname(path)
        if parent == path:  # the root itself (/, C:\) is gone: not an unmount either
            return True
        path = parent


def pause_after(
    took: float, interval: float, *, cpu: float = 0.0, budget: float = math.inf
) -> float:
    """The pause after a sweep that took ``took`` seconds (``cpu`` of them on a CPU), to keep
    ``interval`` start to start, sweeping at most half the time, and spending at most ``budget``
    (a share of one core) of each cycle on a CPU.

    >>> pause_after(0.05, 0.25)  # a small tree: one sweep every 0.25 s
    0.2
    >>> pause_after(0.2, 0.25)  # a slow one: sweeping at most half the time
    0.2
    >>> round(pause_after(0.05, 0.25, cpu=0.04, budget=0.1), 3)  # 0.04 s in 10 % of a core: 0.4 s
    0.35
    """
    return max(interval - took, took, cpu / budget - took)


async def poll(
    sweeper: Sweeper,
    send: ObjectSendStream[list[Change]],
    *,
    interval: float,
    workers: int,
    cpu_budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_sweep: Callable[[float, int], None] | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Poll ``sweeper``'s tree every ``interval`` seconds until cancelled.

    ``interval`` is from the start of one sweep to the start of the next, but the pause between
    them is never shorter than the last sweep took: a tree too big to sweep in half the interval
    (a FUSE mount, 100,000 files) then costs at most half a core, instead of a whole one spent
    sweeping back to back. Time spent waiting on a file system that did not answer (a hung
    mount) is not counted: polling resumes at its normal pace once it answers. With
    ``cpu_budget`` (a share of one core, e.g. 0.2), the pause also stretches until the sweeps'
    threads have used at most that share of the time, measured in CPU seconds: the latency
    grows instead of the cost.

    Signals ``task_status.started()`` once the first snapshot is taken, so changes made after
    that are seen. ``on_sweep(seconds, files)`` is told each sweep's duration (for benchmarks).
    With ``sweeper.last`` set (a re-plan handed it over), the first sweep is compared with it
    and what changed since is reported; ``sweeper.last`` is kept up to date with what was sent.
    """
    warnings = _Warnings()
    answers = _Answers(sweeper.root)

    async def sweep(old: Snapshot | None, **kw: ObjectSendStream[list[Change]]) -> Sweep:
        answers.ask()
        try:
            return await sweeper.sweep_parallel(old, workers=workers, heard=answers.heard, **kw)
        finally:
            answers.done()

    async with send, anyio.create_task_group() as tg:
        tg.start_soon(answers.watch)
        first = await sweep(sweeper.last)
        snapshot = first.snapshot
        warnings.update(sweeper.root, first.problems)
        log.debug("%s: first sweep found %d files", sweeper.root, snapshot.count())
        task_status.started()
        took = cpu = 0.0
        budget = math.inf if cpu_budget is None else cpu_budget  # None: no cap on CPU time
        hot = _HotSet()
        if first.changes:
            hot.note(first.touched, clock())
            await send.send(first.changes)
        sweeper.last = snapshot
        while True:
            wake = clock() + pause_after(took, interval, cpu=cpu, budget=budget)
            # Not while the file system may have been mounted again (the mount table changed)
            # and no sweep has compared it without inode numbers yet: a hot file's new number
            # would read as an edit.
            while hot and not sweeper.renumbered and wake - clock() > HOT_INTERVAL:
                await anyio.sleep(HOT_INTERVAL)
                # Between sweeps only: the snapshot is ours to update while no sweep reads it.
                answers.ask()
                try:
                    changes = await run_sync(partial(hot.check, snapshot))
                finally:
                    answers.done()
                if changes:
                    hot.note([c.path for c in changes if c.kind is ChangeKind.MODIFIED], clock())
                    await send.send(changes)
            await anyio.sleep(max(0.0, wake - clock()))
            t0 = clock()
            snapshot, changes, problems, touched, cpu, waited = await sweep(snapshot, send=send)
            took = clock() - t0
            if on_sweep is not None:
                on_sweep(took, snapshot.count())
            took = max(0.0, took - waited)  # waiting on a hung mount is not work
            warnings.update(sweeper.root, problems)
            hot.note(touched, clock())
            if changes:
                await send.send(changes)
            sweeper.last = snapshot
