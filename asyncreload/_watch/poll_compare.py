"""One directory of a sweep compared with the last sweep's record of it."""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from .._exceptions import WatchPathError
from .._types import Change, ChangeKind, Source
from .paths import below
from .poll_read import OpenDir, restat, stat_all
from .snapshot import GONE_ERRNOS, DirRecord, Problem, Snapshot, diff_files, file_key
from .walk import Walked

if TYPE_CHECKING:
    from .poll import Sweeper

__all__: list[str] = []

# A directory whose mtime is this recent may still change within the same timestamp tick after
# we read it (timestamps are coarse), so its listing is re-read next time even if the mtime
# looks the same.
_FRESH_NS = 2_000_000_000

_Queued = tuple[str, str | None]
"""A directory to read, and the first symlink on the way to it (None: reached without one)."""

_NO_LINKS: frozenset[str] = frozenset()


class _Compare:
    """One sweep's new snapshot, made one directory at a time against the last."""

    def __init__(self, sweeper: Sweeper, old: Snapshot | None, cond: threading.Condition) -> None:
        self.sweeper = sweeper
        self.first = old is None
        self.old = old or Snapshot()
        self.new = Snapshot()
        self.problems: list[Problem] = []
        self.walked: Walked | None = None
        self.now_ns = time.time_ns()
        self.root_dev: int | None = None
        self.held = False
        self.renumbered = sweeper.renumbered
        self.cond = cond

    def _subtree(self, path: str) -> list[tuple[str, DirRecord]]:
        """The last sweep's records of ``path`` and everything below it."""
        old = self.old.dirs
        found = []
        stack = [path]
        while stack:
            p = stack.pop()
            d = old.get(p)
            if d is not None:
                found.append((p, d))
                base = below(p)
                stack.extend(base + name for name in d.subdirs)
        return found

    def _keep_old(self, path: str) -> None:
        """Carry the last known state of everything under ``path`` into the new snapshot."""
        for p, d in self._subtree(path):
            self.new.dirs[p] = d
        if path in self.old.loose:
            self.new.loose[path] = self.old.loose[path]

    def _gone(self, path: str) -> list[Change]:
        """``path`` is no longer there: everything the last sweep saw under it is deleted."""
        changes: list[Change] = []
        for p, d in self._subtree(path):
            base = below(p)
            changes.extend(Change(ChangeKind.DELETED, base + name, Source.STAT) for name in d.files)
            if self.sweeper.report_dir(p):
                changes.append(Change(ChangeKind.DELETED, p, Source.STAT))
        return changes

    def _problem(self, path: str, error: OSError) -> None:
        self._keep_old(path)
        with self.cond:
            self.problems.append(Problem(path, error))

    def _read_dir(self, path: str, link: str | None) -> tuple[list[_Queued], list[Change]]:
        """Compare ``path`` with the last sweep; return its subdirectories to walk, and changes."""
        try:
            opened = OpenDir(path)
        except OSError as e:
            if e.errno == errno.ENOTDIR and path == self.sweeper.root:
                return [], self._read_root_file(path)
            if e.errno in GONE_ERRNOS:
                return [], self._gone(path)
            self._problem(path, e)
            return [], []
        try:
            return self._read_open_dir(path, opened, link)
        except WatchPathError:
            raise  # the walk grew too large: not a directory's problem, the target's
        except OSError as e:
            if e.errno in GONE_ERRNOS:
                return [], self._gone(path)
            self._problem(path, e)
            return [], []
        finally:
            opened.close()

    def _read_root_file(self, path: str) -> list[Change]:
        try:
            st = os.stat(path)
        except OSError as e:
            if e.errno not in GONE_ERRNOS:
                self._problem(path, e)
            return []
        key = self.new.loose[path] = file_key(st)
        changes = self._gone(path)  # it was a directory last time
        before = self.old.loose.get(path)
        if before is None:
            changes.append(Change(ChangeKind.ADDED, path, Source.STAT))
        elif before != key:
            changes.append(Change(ChangeKind.MODIFIED, path, Source.STAT))
        return changes

    def _read_open_dir(
        self, path: str, opened: OpenDir, link: str | None
    ) -> tuple[list[_Queued], list[Change]]:
        st = opened.st
        with self.cond:
            assert self.walked is not None
            if not self.walked.enter(path, st.st_dev, st.st_ino, link):
                return [], []  # a pseudo file system, or a directory walked by another path
        base = below(path)
        if path == self.sweeper.root:
            if self.sweeper.holds(st.st_dev):
                self.held = True
                return [], []
            self.root_dev = st.st_dev

        before = self.old.dirs.get(path)
        remounted = before is not None and (before.dev != st.st_dev or self.renumbered)
        record = None
        changes: list[Change] = []
        unreadable: OSError | None = None
        if (
            before is not None
            and before.trusted
            and before.mtime_ns == st.st_mtime_ns
            and before.ino == st.st_ino
        ):
            # The listing is as it was: only the files it names can have changed.
            restated = restat(opened, base, before.files, remounted=remounted)
            if restated is not None:
                files, changes, unreadable = restated
                if remounted:
                    record = replace(before, files=files, dev=st.st_dev)
                else:
                    record = before if files is before.files else replace(before, files=files)
        if record is None:
            known = before.files if before is not None else {}
            links: set[str] = set()
            entries = self._list(path, opened, links)
            subdirs, files, unreadable = stat_all(opened, entries, known)
            record = DirRecord(
                st.st_mtime_ns,
                st.st_ino,
                self.now_ns - st.st_mtime_ns > _FRESH_NS,
                subdirs,
                files,
                links=frozenset(links.intersection(subdirs)) if links else _NO_LINKS,
                dev=st.st_dev,
            )
            if before is None:
                if not self.first and self.sweeper.report_dir(path):
                    changes.append(Change(ChangeKind.ADDED, path, Source.STAT))
                changes.extend(diff_files(base, {}, files))
            else:
                # Subdirectories gone first: one replaced by a file of the same name is then
                # deleted and added again, which the merge folds into "modified".
                for name in set(before.subdirs).difference(subdirs):
                    changes.extend(self._gone(base + name))
                changes.extend(diff_files(base, before.files, files, remounted=remounted))
        if unreadable is not None:
            # Not a deletion: the files keep their last known keys and are stat'ed again each
            # sweep; the directory is reported (once) until they can be read.
            with self.cond:
                self.problems.append(Problem(path, unreadable))
        self.new.dirs[path] = record
        linked = record.links
        return [
            (base + name, link or (base + name if name in linked else None))
            for name in record.subdirs
        ], changes

    def _list(self, path: str, opened: OpenDir, links: set[str]) -> list[tuple[str, bool]]:
        sweeper = self.sweeper
        excludes = sweeper.excludes
        walks = sweeper.filter.walks
        accepts = sweeper.filter
        relative = sweeper.relative
        base = below(path)
        entries = []
        with opened.listing() as it:
            for entry in it:
                child = base + entry.name
                try:
                    # follow_symlinks=False would treat a symlinked source dir as a file;
                    # where links lead is the walk rule's business (walk.py).
                    is_dir = entry.is_dir()
                    if is_dir and entry.is_symlink():
                        links.add(entry.name)
                except OSError:
                    is_dir = False
                if is_dir:
                    if child in excludes or not walks(relative(child)):
                        continue
                elif not accepts(relative(child)):
                    continue
                entries.append((entry.name, is_dir))
        return entries
