"""The rule both walkers (the stat poller and the inotify event source) follow into directories.

Symlinked directories are followed (and Windows's directory junctions, taken for symlinks:
:func:`asyncreload._platform.is_link`), but a graph of links must not explode the walk:

* A directory on a pseudo file system (``proc``, ``sysfs``, ``devtmpfs``, ``cgroup``, ...: the
  kernel's state, not files anyone edits) is never entered, whether through a symlink or a mount
  inside a watched tree. Their links expand without end: ``/sys/class`` leads to every device by
  several paths, ``/proc/<pid>/root`` to the whole file system. Watching one directly is refused.
* Each real directory (its ``st_dev`` and ``st_ino``) is walked once per target, through the
  first path found: directories reached without a symlink are walked before those reached through
  one, so a link to a directory inside the target never takes it from its real path.
* A walk that passes :data:`MAX_DIRS` directories stops with one error that names the symlink
  most of them came through, and the ``--exclude`` that leaves it out.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections import Counter

from .._exceptions import WatchPathError
from .mounts import read_mounts
from .paths import filter_relpath

__all__ = ["MAX_DIRS", "PSEUDO_FILE_SYSTEMS", "Walked", "is_pseudo", "pseudo_devices"]

log = logging.getLogger("asyncreload.walk")

MAX_DIRS = 200_000
"""The most directories one target may have. A big monorepo has a few tens of thousands outside
its ignored directories (``node_modules``, ``.git``, virtualenvs); past this, the walk has almost
certainly followed a link into something it should not watch (``/``, a home directory)."""

PSEUDO_FILE_SYSTEMS = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "cpuset", "debugfs",
        "tracefs", "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs",
        "autofs", "binfmt_misc", "efivarfs", "rpc_pipefs", "nfsd", "nsfs", "selinuxfs",
        "smackfs", "resctrl", "xenfs",
    }
)  # fmt: skip
"""File system types whose files are the kernel's state (from the mount table's fstype)."""


def is_pseudo(fstype: str) -> bool:
    """True for a pseudo file system, never walked.

    >>> is_pseudo("sysfs"), is_pseudo("cgroup2"), is_pseudo("tmpfs"), is_pseudo("fuse.sshfs")
    (True, True, False, False)
    """
    return fstype in PSEUDO_FILE_SYSTEMS


def pseudo_devices() -> frozenset[int]:
    """The ``st_dev`` of every mounted pseudo file system (reads the mount table)."""
    return frozenset(m.device for m in read_mounts() if is_pseudo(m.fstype) and m.device >= 0)


class Walked:
    """What one walk of a target has entered, by the rule above; not thread-safe (the poller
    calls it under its lock).

    Paths are named to ``--exclude`` relative to ``relative_to`` (the watched root). ``already``:
    how many directories are watched before this walk (a walk of a new directory).
    """

    def __init__(
        self, root: str, relative_to: str, pseudo: frozenset[int], *, already: int = 0
    ) -> None:
        self.root = root
        self._relative = filter_relpath(relative_to)
        self.pseudo = pseudo
        self.seen: set[int] = set()
        self._through: Counter[str] = Counter()
        self._total = already

    def enter(self, path: str, dev: int, ino: int, link: str | None) -> bool:
        """Should the directory at ``path`` be walked? ``link`` is the first symlink on the way
        to it, if any. Raises :class:`WatchPathError` past :data:`MAX_DIRS` directories."""
        if dev in self.pseudo:
            log.debug("%s: on a pseudo file system; not walked", path)
            return False
        ident = dev << 64 | ino
        if ident in self.seen:
            log.debug("%s: a directory already walked by another path; not walked again", path)
            return False
        self.seen.add(ident)
        self.count(path, link)
        return True

    def count(self, path: str, link: str | None) -> None:
        """Count one more directory walked (for the walkers that know identity otherwise)."""
        if link is not None:
            self._through[link] += 1
        self._total += 1
        if self._total > MAX_DIRS:
            raise self.too_large()

    def too_large(self) -> WatchPathError:
        top = self._through.most_common(1)
        if not top or top[0][1] * 2 < self._total:
            return WatchPathError(
                f"{self.root}: more than {MAX_DIRS:,} directories to watch; leave out the ones "
                "you don't need with --exclude"
            )
        link, many = top[0]
        return WatchPathError(
            f"{self.root}: more than {MAX_DIRS:,} directories to watch, {many:,} of them "
            f"through the symlink {link} -> {os.path.realpath(link)}; stopped. Leave it out "
            f"with --exclude {shlex.quote(self._relative(link))}"
        )
