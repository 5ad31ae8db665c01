"""A sweep's new snapshot, made one directory at a time against the last one.

:class:`Comparison` reads a directory (:mod:`.poll_read`), compares it with the last sweep's
record of it (:mod:`.snapshot`), and says which subdirectories to read next; the walk
(:class:`.poll._Walk`) decides which thread reads which directory, and when changes are sent.
It may be called from several threads at once: each directory is read by one of them.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from .._exceptions import WatchPathError
from .._platform import is_gone, is_link
from .._types import Change, ChangeKind, Source
from .paths import below
from .poll_read import OpenDir, restat, stat_all
from .snapshot import DirRecord, Problem, Snapshot, diff_files, file_key
from .walk import Walked

if TYPE_CHECKING:
    from .poll import Sweeper

__all__ = ["Comparison", "Queued"]

# A directory whose mtime is this recent may still change within the same timestamp tick after
# we read it (timestamps are coarse), so its listing is re-read next time even if the mtime
# looks the same.
_FRESH_NS = 2_000_000_000

Queued = tuple[str, str | None]
"""A directory to read, and the first symlink on the way to it (None: reached without one)."""

_NO_LINKS: frozenset[str] = frozenset()


class Comparison:
    """One sweep of ``sweeper``'s tree against ``old``, the last sweep's snapshot (None: this is
    the first sweep, which reports no changes: there is nothing to compare with)."""

    def __init__(self, sweeper: Sweeper, old: Snapshot | None) -> None:
        self.sweeper = sweeper
        self.first = old is None
        self.old = old or Snapshot()
        self.new = Snapshot()
        self.problems: list[Problem] = []
        self.walked: Walked | None = None
        self.now_ns = time.time_ns()
        self.root_dev: int | None = None
        self.held = False
        """The root turned up on another device, and the last known state is kept (see
        :meth:`.poll.Sweeper.holds`): the new snapshot must not be taken."""
        self.renumbered = sweeper.renumbered
        # Guards what threads share here: the walk rule's record, and the problems found.
        self._lock = threading.Lock()

    def begin(self) -> None:
        """Get ready to read directories (blocking: reads the mount table once); each thread of
        the walk calls it, the first does the work."""
        with self._lock:
            if self.walked is None:
                sweeper = self.sweeper
                self.walked = Walked(sweeper.root, sweeper.filter_root, sweeper.pseudo())

    def finish(self) -> list[Change]:
        """Take in a whole walk's findings: the sweeper learns its root's device, and the changes
        that only the whole walk can tell (a root that was a file and went) are returned."""
        if self.root_dev is not None:
            self.sweeper.device = self.root_dev
        if self.renumbered:
            # Only what this walk took in: the mount table may have changed since it began.
            self.sweeper.renumbered = False
        if self.first:
            return []
        return [
            Change(ChangeKind.DELETED, path, Source.STAT)
            for path in self.old.loose.keys() - self.new.loose.keys()
        ]

    def _keep_old(self, path: str) -> None:
        """Carry the last known state of everything under ``path`` into the new snapshot."""
        for p, d in self.old.subtree(path):
            self.new.dirs[p] = d
        if path in self.old.loose:
            self.new.loose[path] = self.old.loose[path]

    def _gone(self, path: str) -> list[Change]:
        """``path`` is no longer there: everything the last sweep saw under it is deleted."""
        changes: list[Change] = []
        for p, d in self.old.subtree(path):
            base = below(p)
            changes.extend(Change(ChangeKind.DELETED, base + name, Source.STAT) for name in d.files)
            if self.sweeper.report_dir(p):
                changes.append(Change(ChangeKind.DELETED, p, Source.STAT))
        return changes

    def _problem(self, path: str, error: OSError) -> None:
        self._keep_old(path)
        with self._lock:
            self.problems.append(Problem(path, error))

    def read(self, path: str, link: str | None) -> tuple[list[Queued], list[Change]]:
        """Compare ``path`` with the last sweep; return its subdirectories to walk, and changes."""
        try:
            opened = OpenDir(path)
        except OSError as e:
            if e.errno == errno.ENOTDIR and path == self.sweeper.root:
                return [], self._read_root_file(path)
            if is_gone(e):
                return [], self._gone(path)
            self._problem(path, e)
            return [], []
        try:
            return self._read_open_dir(path, opened, link)
        except WatchPathError:
            raise  # the walk grew too large: not a directory's problem, the target's
        except OSError as e:
            if is_gone(e):
                return [], self._gone(path)
            self._problem(path, e)
            return [], []
        finally:
            opened.close()

    def _read_root_file(self, path: str) -> list[Change]:
        try:
            st = os.stat(path)
        except OSError as e:
            if not is_gone(e):
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
    ) -> tuple[list[Queued], list[Change]]:
        st = opened.st
        with self._lock:
            assert self.walked is not None, "begin() first"
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
            with self._lock:
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
                    # where links lead is the walk rule's business (walk.py). A junction
                    # (Windows) is such a link too.
                    is_dir = entry.is_dir()
                    if is_dir and is_link(entry):
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
