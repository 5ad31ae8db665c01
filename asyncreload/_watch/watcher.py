"""The watcher: plan the targets, start both sources and the merge in one task group, and
re-plan when the mount table changes or a watched root's symlink is re-pointed.

:func:`open_watcher` is the whole machine; :func:`awatch` and :func:`explain` are views of it.
:class:`_Sources` runs one source per target and swaps them one by one on a re-plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from .._exceptions import ConfigError, PathNotFoundError
from .._threads import run_sync
from .._types import Backend, Change, ChangeKind, Source
from ..filters import PathFilter
from .config import WatchSettings, resolve
from .events import probe as probe_target
from .events import watch_events
from .merge import ChangeBatch, ChangeStream, merge
from .mounts import Mount, MountTable, RereadTable, mount_poll_reason, read_mounts
from .options import StrPath, WatcherOptions
from .paths import absolute, current_directory, is_within, normalise
from .plan import GONE, Target, plan
from .poll import Sweeper
from .poll import poll as poll_tree  # open_watcher has a parameter named poll
from .snapshot import Snapshot

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from Python 3.11

__all__ = ["awatch", "explain", "open_watcher"]

log = logging.getLogger("asyncreload.watch")


def _path(p: StrPath, what: str) -> str:
    """``p`` as a str path (bytes too, as ``os`` takes them); a clear error for what isn't one."""
    if not isinstance(p, str | bytes | os.PathLike):
        raise TypeError(f"{what}: expected a path (str, bytes or os.PathLike), not {p!r}")
    path = os.fsdecode(p)
    if not path:
        # Not the current directory: an empty string is more often a variable that was unset.
        raise ConfigError(f"{what} is empty (for the current directory, say '.')")
    return path


def _many(value: Iterable[StrPath] | StrPath, what: str) -> list[str]:
    """Paths from an iterable of them; a single str, bytes or PathLike is one path, not a
    sequence of one-character ones."""
    items = [value] if isinstance(value, str | bytes | os.PathLike) else value
    return [_path(p, what) for p in items]


def _globs(value: Iterable[str]) -> tuple[str, ...]:
    """Globs from an iterable of them; a single str is one glob (``include="*.py"``), not one
    per character (``'*'`` would take everything)."""
    return (value,) if isinstance(value, str) else tuple(value)


def _existing(paths: Iterable[StrPath], what: str) -> list[str]:
    resolved = []
    for p in paths:
        path = normalise(_path(p, what))
        try:
            os.stat(path)
        except FileNotFoundError:
            raise PathNotFoundError(f"{what} does not exist: {path}") from None
        except OSError:
            pass  # a dead mount or a denied directory: the sources warn and carry on
        resolved.append(path)
    return resolved


LINK_CHECK = 1.0
"""Seconds between two looks at where a watched root given through a symlink now leads."""


@dataclass
class _Request:
    """What was asked for, resolved: the roots (and where each was given), the overrides."""

    roots: list[str]
    poll: list[str]
    events: list[str]
    force_polling: bool
    links: dict[int, str] = field(default_factory=dict)
    """The roots given through a symlink, as given (absolute, the link not resolved), by their
    index in ``roots``: only these are looked at again (a look may block on a hung mount)."""

    def plan(self, mounts: Sequence[Mount]) -> list[Target]:
        return plan(
            self.roots, mounts, poll=self.poll, events=self.events,
            force_polling=self.force_polling,
        )  # fmt: skip

    def follow_links(self) -> list[tuple[str, str, str]]:
        """Re-resolve the linked roots; (as given, old, new) for each that now leads elsewhere.

        A link that leads nowhere for now (re-pointed by remove-then-create) keeps its old target.
        Blocking: each link is read.
        """
        moved = []
        for i, given in self.links.items():
            old, new = self.roots[i], normalise(given)
            if new != old and os.path.exists(new):
                self.roots[i] = new
                moved.append((given, old, new))
        return moved


def _request(paths: Iterable[StrPath], settings: WatchSettings) -> _Request:
    paths = list(paths)
    roots = _existing(paths, "path to watch")
    given = [absolute(_path(p, "path to watch")) for p in paths]
    return _Request(
        roots or [normalise(current_directory())],
        poll=[
            *_existing(settings.poll, "--poll path"),
            *_existing(settings.env_poll, "ASYNCRELOAD_POLL path"),
        ],
        events=_existing(settings.events, "--events path"),
        force_polling=settings.force_polling,
        links={i: g for i, (g, r) in enumerate(zip(given, roots, strict=True)) if g != r},
    )


def _plan(paths: Iterable[StrPath], settings: WatchSettings) -> list[Target]:
    return _request(paths, settings).plan(read_mounts())


def _workers(target: Target, settings: WatchSettings) -> int:
    # Several threads only pay off where each stat is a round trip to a daemon or a server.
    remote = target.mount is not None and mount_poll_reason(target.mount) is not None
    return settings.stat_workers if remote else 1


def _identity(t: Target) -> tuple[object, ...]:
    """What makes a running source still right for a new plan. A poller is bound to its mount:
    a remount (a new mount id) gets a new poller, which takes the old one's last state."""
    mount_id = t.mount.mount_id if t.backend is Backend.STAT and t.mount else None
    return (t.path, t.backend, t.excludes, t.root, mount_id)


def _mount_point(t: Target) -> str | None:
    return t.mount.mount_point if t.mount else None


def _what_now(t: Target) -> str:
    return "polled" if t.backend is Backend.STAT else "watched with kernel events"


def _why_now(was: Target | None, t: Target) -> str:
    old, new = (_mount_point(was) if was else None), _mount_point(t)
    if new == t.path and (was is None or old != new):
        return f"{t.fstype} mounted here"
    if was is not None and old is not None and new is not None and old != new:
        if is_within(new, old):
            return f"{new} mounted"
        return "unmounted" if old == t.path else f"{old} unmounted"
    return t.reason


def _replan_lines(old: Sequence[Target], new: Sequence[Target]) -> list[str]:
    """One line per path whose way of watching a re-plan changed (pure; for the log).

    >>> from .mounts import Mount
    >>> root = Mount(1, 0, "/", "ext4", "/dev/sda")
    >>> local = Target("/p", Backend.EVENTS, "local", root="/p", mount=root)
    >>> fuse = Mount(9, 1, "/p/m", "fuse.sshfs", "h:/")
    >>> mounted = Target("/p/m", Backend.STAT, "sshfs", "fuse.sshfs", root="/p", mount=fuse)
    >>> _replan_lines([local], [replace(local, excludes=("/p/m",)), mounted])
    ['/p/m: fuse.sshfs mounted here; polled from now on']
    >>> _replan_lines([replace(local, excludes=("/p/m",)), mounted], [local])
    ['/p/m: unmounted; watched with kernel events as part of /p from now on']
    >>> _replan_lines([mounted], [replace(mounted, backend=Backend.EVENTS, mount=root)])
    ['/p/m: unmounted; watched with kernel events from now on']
    >>> _replan_lines([mounted], [replace(mounted, mount=replace(fuse, mount_id=10))])
    ['/p/m: remounted; polling goes on from its last known state']
    """
    before = {t.path: t for t in old}
    after = {t.path: t for t in new}
    lines = []
    for path, t in after.items():
        was = before.get(path)
        if was is None or was.backend is not t.backend:
            lines.append(f"{path}: {_why_now(was, t)}; {_what_now(t)} from now on")
        elif _identity(was) != _identity(t) and was.mount != t.mount:
            lines.append(f"{path}: remounted; polling goes on from its last known state")
    for path in sorted(before.keys() - after.keys()):
        parent = max((p for p in after if is_within(path, p)), key=len, default=None)
        if parent is not None:
            how = f"{_what_now(after[parent])} as part of {parent}"
            lines.append(f"{path}: unmounted; {how} from now on")
    return lines


@dataclass
class _Running:
    """One target's source, running in its own cancel scope."""

    target: Target
    scope: anyio.CancelScope
    done: anyio.Event
    sweeper: Sweeper | None = None


@dataclass
class _Sources:
    """The running source of every target. A re-plan swaps only the ones that changed: a new
    event source is in place before the one it replaces stops (no change falls between them),
    and a poller that replaces one at the same path, on the same mount point (a remount), takes
    over its last state, so what changed meanwhile is reported, and nothing else."""

    tg: TaskGroup
    send: MemoryObjectSendStream[list[Change]]
    settings: WatchSettings
    path_filter: PathFilter
    running: dict[tuple[object, ...], _Running] = field(default_factory=dict)
    kept: dict[tuple[str, str], Snapshot] = field(default_factory=dict)
    """The last state of each stopped poller, by path and the mount point it was on (one per
    mount point: the poller of an unmounted path's parent file system, stopped at the remount,
    must not drop the remounted one's state)."""
    table_changed: bool = False
    """The mount table changed since the last re-plan read it."""

    @property
    def targets(self) -> list[Target]:
        return [r.target for r in self.running.values()]

    async def apply(self, targets: Sequence[Target]) -> None:
        """Make the running sources those of ``targets``; returns once they all started."""
        wanted = {_identity(t): t for t in targets}
        gone = [r for key, r in self.running.items() if key not in wanted]
        new = [t for key, t in wanted.items() if key not in self.running]
        if not gone:
            # Sweeping a big polled tree and laying inotify watches on a big local one both
            # take a while: side by side.
            await self._start_all(new)
            return
        await self._start_all([t for t in new if t.backend is Backend.EVENTS])
        for r in gone:
            await self._stop(r)
        await self._start_all([t for t in new if t.backend is Backend.STAT])

    async def _start_all(self, targets: Sequence[Target]) -> None:
        async with anyio.create_task_group() as starting:
            for t in targets:
                starting.start_soon(self._start, t)

    async def _start(self, target: Target) -> None:
        running = await self.tg.start(self._run, target)
        self.running[_identity(target)] = running

    async def _stop(self, running: _Running) -> None:
        running.scope.cancel()
        await running.done.wait()  # the sweep threads are abandoned: this is quick
        del self.running[_identity(running.target)]
        sweeper = running.sweeper
        if sweeper is not None and sweeper.last is not None:
            mount_point = _mount_point(running.target)
            if mount_point is not None:
                self.kept[(running.target.path, mount_point)] = sweeper.last

    def _sweeper(self, target: Target) -> Sweeper:
        sweeper = Sweeper(
            target.path, self.path_filter, excludes=target.excludes, filter_root=target.root
        )
        mount_point = _mount_point(target)
        kept = None if mount_point is None else self.kept.pop((target.path, mount_point), None)
        if kept is not None:
            # Most likely a remount, whatever the table says: the kernel hands the same mount
            # id and device number out again.
            sweeper.last = kept
            sweeper.renumbered = True
        return sweeper

    async def _poll(
        self,
        target: Target,
        sweeper: Sweeper,
        sources: MemoryObjectSendStream[list[Change]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        settings = self.settings
        with sources.clone() as clone:  # closed here too if poll_tree is cancelled before it runs
            await poll_tree(
                sweeper,
                clone,
                interval=settings.poll_interval,
                workers=_workers(target, settings),
                cpu_budget=None if settings.poll_cpu is None else settings.poll_cpu / 100,
                task_status=task_status,
            )

    async def _run(self, target: Target, *, task_status: TaskStatus[_Running]) -> None:
        done = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as own:
                    sweeper = None
                    if target.backend is Backend.STAT:
                        sweeper = self._sweeper(target)
                        await own.start(self._poll, target, sweeper, self.send)
                    else:

                        async def fallback(
                            t: Target, reason: str, sources: MemoryObjectSendStream[list[Change]]
                        ) -> None:
                            # The event source's own stream is cloned: a target may fall back
                            # long after it started.
                            polled = replace(t, backend=Backend.STAT, reason=reason)
                            sweeper = self._sweeper(polled)
                            if reason == GONE:
                                # Made again before the first sweep (a `git clone` over it):
                                # all of it is new.
                                sweeper.last = Snapshot()
                            await own.start(self._poll, polled, sweeper, sources)

                        # The clone is the event source's to close, once it runs; if it never
                        # does (a start cancelled), no one else would.
                        with _closed_on_error(self.send.clone()) as clone:
                            await own.start(
                                partial(watch_events, backend=self.settings.events_backend),
                                [target],
                                self.path_filter,
                                clone,
                                fallback,
                            )
                    task_status.started(_Running(target, scope, done, sweeper))
        finally:
            done.set()

    async def follow(self, request: _Request, table: MountTable | RereadTable | None) -> None:
        """Re-plan whenever the mount ``table`` changes or a root's symlink is re-pointed, until
        cancelled. Holds the sources' stream open meanwhile (new sources clone it)."""
        async with self.send:
            if table is None and not request.links:
                return
            wake_send, wake = anyio.create_memory_object_stream[None](1)
            with wake_send, wake:
                async with anyio.create_task_group() as tg:
                    if table is not None:
                        tg.start_soon(self._on_table_changes, table, wake_send)
                    if request.links:
                        tg.start_soon(_every, LINK_CHECK, wake_send)
                    async for _ in wake:
                        await self._replan(request)

    async def _on_table_changes(
        self, table: MountTable | RereadTable, wake: MemoryObjectSendStream[None]
    ) -> None:
        while True:
            await table.changed()
            # A mount unmounted and made again before the table is read leaves it as it was
            # (same mount id, same device number), but with new inode numbers: every poller's
            # next sweep compares without them.
            for running in self.running.values():
                if running.sweeper is not None:
                    running.sweeper.renumbered = True
            self.table_changed = True
            _nudge(wake)

    async def _replan(self, request: _Request) -> None:
        read_table, self.table_changed = self.table_changed, False
        # Reading links may block on a hung mount: abandoned, not waited for, on cancellation.
        moved, targets = await run_sync(partial(_replan_now, request, read_table))
        old = self.targets
        if targets is None or (
            not moved and {_identity(t) for t in targets} == {_identity(t) for t in old}
        ):
            return
        # A root that moved gets the one line below, not one per target.
        stayed = set(request.roots) - {now for *_, now in moved}
        lines = _replan_lines(
            [t for t in old if t.root in stayed], [t for t in targets if t.root in stayed]
        )
        await self.apply(targets)
        for line in lines:
            log.info("%s", line)
        for given, was, now in moved:
            log.info("%s now leads to %s: watching it instead of %s", given, now, was)
        if moved:
            # What the link leads to is another tree: reported as the new root having changed,
            # so a reloader reloads (a deploy's "current" link was flipped).
            await self.send.send([Change(ChangeKind.MODIFIED, n, Source.STAT) for *_, n in moved])


@contextlib.contextmanager
def _closed_on_error(
    stream: MemoryObjectSendStream[list[Change]],
) -> Iterator[MemoryObjectSendStream[list[Change]]]:
    try:
        yield stream
    except BaseException:
        stream.close()
        raise


def _replan_now(
    request: _Request, read_table: bool
) -> tuple[list[tuple[str, str, str]], list[Target] | None]:
    """The roots that moved, and the new plan (None: nothing to plan again)."""
    moved = request.follow_links()
    if not moved and not read_table:
        return moved, None  # a look at the links that found them as they were: the usual case
    return moved, request.plan(read_mounts())


async def _every(seconds: float, wake: MemoryObjectSendStream[None]) -> None:
    while True:
        await anyio.sleep(seconds)
        _nudge(wake)


def _nudge(wake: MemoryObjectSendStream[None]) -> None:
    # One pending re-plan is enough: it reads the table and the links as they are then.
    with contextlib.suppress(anyio.WouldBlock):
        wake.send_nowait(None)


@contextlib.asynccontextmanager
async def open_watcher(
    *paths: StrPath,
    poll: Iterable[StrPath] = (),
    events: Iterable[StrPath] = (),
    force_polling: bool | None = None,
    poll_interval: float | None = None,
    poll_cpu: float | None = None,
    debounce: float | None = None,
    max_wait: float | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    default_ignores: bool = True,
    path_filter: PathFilter | None = None,
) -> AsyncIterator[ChangeStream]:
    """Watch ``paths`` (default: the current directory); yield a stream of change batches.

    ::

        async with open_watcher("src", poll=["/mnt/share"]) as changes:
            async for batch in changes:
                for change in batch:
                    print(change.kind, change.path, change.source)

    Paths on FUSE and network file systems (from the mount table), paths in ``poll``, and
    everything when ``force_polling`` is set are stat-polled every ``poll_interval`` seconds
    (less often when a sweep is slow: sweeping takes at most half the time, and with
    ``poll_cpu``, at most that percentage of one core); the rest get kernel events, except
    paths in ``events``, which always do. A batch is handed
    out ``debounce`` seconds after its last change or ``max_wait`` seconds after its first.
    Arguments left as None come from the environment (``ASYNCRELOAD_*``) or the defaults.

    The context is entered once every watch is in place and the first sweep is done, so any
    change made after that is reported. Leaving it stops everything.

    Raises :class:`~asyncreload.PathNotFoundError` for a path that does not exist and
    :class:`~asyncreload.ConfigError` for a bad setting.
    """
    settings = resolve(
        force_polling=force_polling,
        poll=_many(poll, "--poll path"),
        events=_many(events, "--events path"),
        poll_interval=poll_interval,
        poll_cpu=poll_cpu,
        debounce=debounce,
        max_wait=max_wait,
    )
    if path_filter is None:
        path_filter = PathFilter(
            include=_globs(include), exclude=_globs(exclude), default_ignores=default_ignores
        )
    # In a thread that may be abandoned: a stat of a hung mount blocks until it answers.
    request = await run_sync(partial(_request, paths, settings))
    # Listening for changes of the mount table before reading it: none is missed in between.
    table = MountTable.open()
    with table if table is not None else contextlib.nullcontext():
        targets = request.plan(await anyio.to_thread.run_sync(read_mounts))
        for t in targets:
            log.debug("%s: %s (%s)", t.path, t.backend.value, t.reason)

        stream = ChangeStream(debounce=settings.debounce, max_wait=settings.max_wait)
        send, receive = anyio.create_memory_object_stream[list[Change]](64)
        # Closed on every way out, a start cancelled half-way included (each source closes its
        # own clone, and the merge its receiving end, once they run; this is for when they
        # never did).
        with send, receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(merge, receive, stream)
                sources = _Sources(tg, send, settings, path_filter)
                await sources.apply(targets)
                # The sources hold clones of the stream, and so does the re-planner while it
                # runs; the merge ends when the last one closes.
                tg.start_soon(sources.follow, request, table)
                try:
                    yield stream
                finally:
                    tg.cancel_scope.cancel()


async def awatch(
    *paths: StrPath, **options: Unpack[WatcherOptions]
) -> AsyncGenerator[ChangeBatch, None]:
    """Iterate change batches: ``async for batch in awatch("src"): ...``.

    Takes the same arguments as :func:`open_watcher`. Stopping early is safe, with or without
    ``contextlib.aclosing``: the watcher runs in a task of its own, which hands each batch over a
    memory stream and is cancelled when the generator is closed, or collected. (A generator can't
    own a task group: it may be finalized in another task, or by the garbage collector, and a
    cancel scope must be left by the task that entered it.) ``aclosing`` stops the watcher at once
    rather than when the garbage collector gets to it; ``async with open_watcher(...)`` keeps the
    watcher in the caller's task group.
    """
    send, receive = anyio.create_memory_object_stream[ChangeBatch | BaseException]()
    feeder = _Feeder(paths, options, send)
    feeder.spawn()
    try:
        with receive:
            async for item in receive:
                if isinstance(item, BaseException):
                    raise item
                yield item
    finally:
        feeder.cancel()


class _Feeder:
    """:func:`awatch`'s watcher, in a task of the event loop's own (asyncio's ``create_task``,
    trio's system nursery) rather than in the caller's: nothing the generator holds across a
    ``yield`` is a cancel scope, so it may be closed from anywhere."""

    def __init__(
        self,
        paths: tuple[StrPath, ...],
        options: WatcherOptions,
        send: MemoryObjectSendStream[ChangeBatch | BaseException],
    ) -> None:
        self.paths = paths
        self.options = options
        self.send = send
        self.scope = anyio.CancelScope()
        self._task: object = None  # asyncio keeps only a weak reference to its tasks

    def spawn(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio
            import trio

            trio.lowlevel.spawn_system_task(self.run)
        else:
            self._task = loop.create_task(self.run())

    def cancel(self) -> None:
        self.scope.cancel()  # allowed from any task of the loop

    async def run(self) -> None:
        with self.scope, self.send:
            try:
                async with open_watcher(*self.paths, **self.options) as changes:
                    async for batch in changes:
                        await self.send.send(batch)
            except anyio.BrokenResourceError:
                pass  # the generator is gone
            except Exception as e:  # for the consumer, who is the one to hear of it
                with contextlib.suppress(anyio.BrokenResourceError):
                    await self.send.send(e)


def explain(
    *paths: StrPath,
    poll: Iterable[StrPath] = (),
    events: Iterable[StrPath] = (),
    force_polling: bool | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    default_ignores: bool = True,
    probe: bool = True,
) -> list[Target]:
    """The targets :func:`open_watcher` would make for these arguments, with the reason for each.

    With ``probe`` (the default), event targets are tried for real: their inotify watches are
    laid and dropped again by the event backend the watcher would use, so a target that would hit
    the watch limit shows as polled, as it would be. Blocking; call it from a thread in async code.
    """
    settings = resolve(
        force_polling=force_polling,
        poll=_many(poll, "--poll path"),
        events=_many(events, "--events path"),
    )
    path_filter = PathFilter(
        include=_globs(include), exclude=_globs(exclude), default_ignores=default_ignores
    )
    targets = _plan(paths, settings)
    if not probe:
        return targets
    return [
        probe_target(t, path_filter, settings.events_backend) if t.backend is Backend.EVENTS else t
        for t in targets
    ]
