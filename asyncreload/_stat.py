"""The stat poller: sweep a tree, compare with the last sweep, report the difference.

Three layers:

* :func:`diff` is pure: two snapshots in, changes out.
* :class:`Sweeper` walks the tree in worker threads. It re-reads a directory's listing only when
  the directory's mtime says the listing may have changed, stats every file, prunes ignored and
  excluded directories, and never fails as a whole: a directory it can't read keeps its last known
  entries and is reported as a :class:`Problem`.
* :func:`poll` is the coroutine: sweep, send the changes, sleep, again. Sweeps run through
  :func:`anyio.to_thread.run_sync`, so the event loop never waits on the file system.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio
from anyio.abc import ObjectSendStream, TaskStatus

from ._types import Change, ChangeKind, Source
from .filters import PathFilter

__all__ = ["DEAD_MOUNT_ERRNOS", "Problem", "Snapshot", "Sweeper", "diff", "poll"]

log = logging.getLogger("asyncreload.stat")

FileKey = int
"""What makes a file "changed": its mtime_ns, size and inode, packed into one int by
:func:`file_key`. One int, not a tuple: a snapshot of 100,000 files is then 100,000 fewer
objects for the garbage collector to walk (whose pauses stall the event loop too) and ~10 MB
less memory."""


def file_key(st: os.stat_result) -> FileKey:
    """(mtime_ns, size, inode) as one int, exactly: equal keys mean all three are equal."""
    return (st.st_mtime_ns << 128) | (st.st_size << 64) | st.st_ino


DEAD_MOUNT_ERRNOS = frozenset(
    {errno.ENOTCONN, errno.ECONNABORTED, errno.ESTALE, errno.EHOSTDOWN, errno.EIO}
)
"""errnos that mean "the file system is not answering", not "the path is gone"."""

_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)

# A directory whose mtime is this recent may still change within the same timestamp tick after
# we read it (timestamps are coarse), so its listing is re-read next time even if the mtime
# looks the same.
_FRESH_NS = 2_000_000_000


@dataclass(frozen=True)
class _Dir:
    mtime_ns: int
    ino: int
    entries: tuple[tuple[str, bool], ...]  # (name, is_dir), filtered
    trusted: bool  # old enough that an unchanged mtime proves an unchanged listing


@dataclass
class Snapshot:
    """What one sweep saw: every file's key and every directory's listing."""

    files: dict[str, FileKey] = field(default_factory=dict)
    dirs: dict[str, _Dir] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """A directory (or root) that could not be read in a sweep; its last known state was kept."""

    path: str
    error: OSError

    @property
    def dead_mount(self) -> bool:
        """True if the file system stopped answering (a killed FUSE daemon, a lost server)."""
        return self.error.errno in DEAD_MOUNT_ERRNOS


def diff(old: Snapshot, new: Snapshot, report_dir: Callable[[str], bool]) -> list[Change]:
    """The changes that turn ``old`` into ``new``; directories only as added or deleted.

    >>> a = Snapshot(files={"/r/x": 1, "/r/y": 2})
    >>> b = Snapshot(files={"/r/x": 5, "/r/z": 3})
    >>> [(c.kind.value, c.path) for c in diff(a, b, lambda p: True)]
    [('modified', '/r/x'), ('added', '/r/z'), ('deleted', '/r/y')]
    """
    changes = []
    old_files, new_files = old.files, new.files
    for path, key in new_files.items():
        before = old_files.get(path)
        if before is None:
            changes.append(Change(ChangeKind.ADDED, path, Source.STAT))
        elif before != key:
            changes.append(Change(ChangeKind.MODIFIED, path, Source.STAT))
    changes.extend(
        Change(ChangeKind.DELETED, path, Source.STAT) for path in old_files.keys() - new_files
    )
    changes.extend(
        Change(ChangeKind.ADDED, path, Source.STAT)
        for path in new.dirs.keys() - old.dirs
        if report_dir(path)
    )
    changes.extend(
        Change(ChangeKind.DELETED, path, Source.STAT)
        for path in old.dirs.keys() - new.dirs
        if report_dir(path)
    )
    return changes


class Sweeper:
    """Walks one polled target; each :meth:`sweep` returns a fresh snapshot and the problems.

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
        self._prefix_len = len((filter_root or root).rstrip("/")) + 1

    def relative(self, path: str) -> str:
        """``path`` relative to the watched root, as the filter sees it."""
        return path[self._prefix_len :]

    def report_dir(self, path: str) -> bool:
        """True if a directory appearing or disappearing at ``path`` is worth reporting."""
        return path != self.root and self.filter(self.relative(path))

    def sweep(self, old: Snapshot) -> tuple[Snapshot, list[Problem]]:
        """One sweep in the calling thread (blocking; for tests and benchmarks)."""
        walk = _Walk(self, old, threading.Event())
        walk.run()
        return walk.result()

    async def sweep_parallel(
        self, old: Snapshot, *, workers: int, limiter: anyio.CapacityLimiter | None = None
    ) -> tuple[Snapshot, list[Problem]]:
        """One sweep, its walk shared by ``workers`` threads, never blocking the event loop."""
        stop = threading.Event()
        walk = _Walk(self, old, stop)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    # A stat on a hung network mount can't be interrupted; on cancellation the
                    # thread is left to finish the directory it is in (the stop flag ends it
                    # there) rather than hang the caller's cancellation on the kernel.
                    tg.start_soon(_run_abandonable, walk.run, limiter)
        finally:
            stop.set()
        return walk.result()


async def _run_abandonable(fn: Callable[[], None], limiter: anyio.CapacityLimiter | None) -> None:
    await anyio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=limiter)


class _Walk:
    """One sweep's shared state: a queue of directories that worker threads drain."""

    def __init__(self, sweeper: Sweeper, old: Snapshot, stop: threading.Event) -> None:
        self.sweeper = sweeper
        self.old = old
        self.stop = stop
        self.new = Snapshot()
        self.problems: list[Problem] = []
        # Directories to read, each with the (st_dev, st_ino) of its ancestors: a directory that
        # is its own ancestor (a symlink loop) is not walked again.
        self.queue: list[tuple[str, frozenset[tuple[int, int]]]] = [(sweeper.root, frozenset())]
        self.pending = 1  # directories queued or being read
        self.cond = threading.Condition()
        self.now_ns = time.time_ns()

    def run(self) -> None:
        cond = self.cond
        while True:
            with cond:
                while not self.queue and self.pending and not self.stop.is_set():
                    cond.wait()
                if not self.queue or self.stop.is_set():
                    cond.notify_all()
                    return
                path, ancestors = self.queue.pop()
            subdirs = self._read_dir(path, ancestors)
            with cond:
                self.queue.extend(subdirs)
                self.pending += len(subdirs) - 1
                cond.notify_all()

    def result(self) -> tuple[Snapshot, list[Problem]]:
        if self.stop.is_set() and (self.pending or self.queue):
            # Interrupted: a partial walk must not read as "everything else was deleted".
            return self.old, []
        return self.new, self.problems

    def _keep_old(self, path: str) -> None:
        """Carry the last known state of everything under ``path`` into the new snapshot."""
        old, new = self.old, self.new
        prefix = path.rstrip("/") + "/"
        for p, key in old.files.items():
            if p.startswith(prefix) or p == path:
                new.files[p] = key
        for p, d in old.dirs.items():
            if p.startswith(prefix) or p == path:
                new.dirs[p] = d

    def _problem(self, path: str, error: OSError) -> None:
        self._keep_old(path)
        with self.cond:
            self.problems.append(Problem(path, error))

    def _read_dir(
        self, path: str, ancestors: frozenset[tuple[int, int]]
    ) -> list[tuple[str, frozenset[tuple[int, int]]]]:
        """Stat ``path``'s files into the new snapshot; return its subdirectories to walk."""
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError as e:
            if e.errno == errno.ENOTDIR and path == self.sweeper.root:
                self._read_root_file(path)
            elif e.errno not in _GONE_ERRNOS:
                self._problem(path, e)
            return []
        try:
            return self._read_open_dir(path, fd, ancestors)
        except OSError as e:
            if e.errno not in _GONE_ERRNOS:
                self._problem(path, e)
            return []
        finally:
            os.close(fd)

    def _read_root_file(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError as e:
            if e.errno not in _GONE_ERRNOS:
                self._problem(path, e)
            return
        self.new.files[path] = file_key(st)

    def _read_open_dir(
        self, path: str, fd: int, ancestors: frozenset[tuple[int, int]]
    ) -> list[tuple[str, frozenset[tuple[int, int]]]]:
        # Everything below goes through the open directory (stat(name, dir_fd=fd)): the kernel
        # then resolves one name, not the whole path again. On FUSE, where each component costs
        # a round trip to the daemon, that makes a sweep 2-3x faster.
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if ident in ancestors:
            log.debug("%s: a symlink loop; not walked again", path)
            return []
        ancestors |= {ident}

        before = self.old.dirs.get(path)
        if (
            before is not None
            and before.trusted
            and before.mtime_ns == st.st_mtime_ns
            and before.ino == st.st_ino
        ):
            entries = before.entries
            trusted = True
        else:
            entries = self._list(path, fd)
            trusted = self.now_ns - st.st_mtime_ns > _FRESH_NS
        self.new.dirs[path] = _Dir(st.st_mtime_ns, st.st_ino, entries, trusted)

        files = self.new.files
        subdirs = []
        base = path.rstrip("/") + "/"
        for name, is_dir in entries:
            child = base + name
            if is_dir:
                subdirs.append((child, ancestors))
                continue
            try:
                cst = os.stat(name, dir_fd=fd)
            except OSError as e:
                if e.errno == errno.ELOOP or e.errno in _GONE_ERRNOS:
                    # vanished mid-sweep (gone), or a dangling/looping symlink: watch the link
                    try:
                        cst = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except OSError:
                        continue
                elif e.errno in DEAD_MOUNT_ERRNOS:
                    raise
                else:
                    continue
            if stat.S_ISDIR(cst.st_mode):  # a symlink to a directory, or a type change
                subdirs.append((child, ancestors))
                continue
            files[child] = file_key(cst)
        return subdirs

    def _list(self, path: str, fd: int) -> tuple[tuple[str, bool], ...]:
        sweeper = self.sweeper
        excludes = sweeper.excludes
        walks = sweeper.filter.walks
        accepts = sweeper.filter
        relative = sweeper.relative
        base = path.rstrip("/") + "/"
        entries = []
        # scandir(fd) consumes the descriptor's position, not the descriptor: ours stays open.
        with os.scandir(fd) as it:
            for entry in it:
                child = base + entry.name
                try:
                    # follow_symlinks=False would treat a symlinked source dir as a file;
                    # loops are ended by the ancestors check.
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if child in excludes or not walks(relative(child)):
                        continue
                elif not accepts(relative(child)):
                    continue
                entries.append((entry.name, is_dir))
        return tuple(entries)


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


def _diff_and_free(
    old: list[Snapshot], new: Snapshot, report_dir: Callable[[str], bool]
) -> list[Change]:
    changes = diff(old[0], new, report_dir)
    old.clear()  # the last reference: the snapshot is freed here, in the worker thread
    return changes


async def poll(
    sweeper: Sweeper,
    send: ObjectSendStream[list[Change]],
    *,
    interval: float,
    workers: int,
    limiter: anyio.CapacityLimiter | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_sweep: Callable[[float, int], None] | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Poll ``sweeper``'s tree every ``interval`` seconds until cancelled.

    The pause between sweeps is ``interval``, or as long as the last sweep took if that was
    longer: a tree too big to sweep in ``interval`` then costs at most half a core, instead of a
    whole one spent sweeping back to back.

    Signals ``task_status.started()`` once the first snapshot is taken, so changes made after
    that are seen. ``on_sweep(seconds, files)`` is told each sweep's duration (for benchmarks).
    """
    warnings = _Warnings()
    snapshot, problems = await sweeper.sweep_parallel(Snapshot(), workers=workers, limiter=limiter)
    warnings.update(sweeper.root, problems)
    log.debug("%s: first sweep found %d files", sweeper.root, len(snapshot.files))
    task_status.started()
    took = 0.0
    async with send:
        while True:
            await anyio.sleep(max(interval, took))
            t0 = clock()
            new, problems = await sweeper.sweep_parallel(snapshot, workers=workers, limiter=limiter)
            # Comparing two snapshots of 100,000 files, and freeing the old one, take tens of
            # milliseconds: not on the event loop.
            old, snapshot = [snapshot], new
            changes = await anyio.to_thread.run_sync(
                _diff_and_free, old, new, sweeper.report_dir, limiter=limiter
            )
            took = clock() - t0
            if on_sweep is not None:
                on_sweep(took, len(new.files))
            warnings.update(sweeper.root, problems)
            if changes:
                await send.send(changes)
