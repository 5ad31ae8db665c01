"""Linux's inotify, as the kernel offers it: the three calls, the event records, the limits.

A thin shell over libc (through :mod:`ctypes`) and one pure function, :func:`parse`, that reads
the kernel's ``struct inotify_event`` records out of a buffer. Nothing here knows about targets or
filters; :mod:`.inotify` builds the recursive watch on top.

>>> import struct
>>> record = struct.pack("iIII", 1, IN_CREATE, 0, 16) + b"app.py".ljust(16, b"\\0")
>>> parse(record)
[Event(wd=1, mask=256, cookie=0, name='app.py')]
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "IN_ATTRIB",
    "IN_CLOSE_WRITE",
    "IN_CREATE",
    "IN_DELETE",
    "IN_DELETE_SELF",
    "IN_EXCL_UNLINK",
    "IN_IGNORED",
    "IN_ISDIR",
    "IN_MODIFY",
    "IN_MOVED_FROM",
    "IN_MOVED_TO",
    "IN_MOVE_SELF",
    "IN_ONLYDIR",
    "IN_Q_OVERFLOW",
    "IN_UNMOUNT",
    "Event",
    "WatchLimitError",
    "add_watch",
    "init",
    "inotify_limits",
    "limit_message",
    "parse",
    "read_events",
    "rm_watch",
]

# From <sys/inotify.h>: the same numbers on every Linux architecture.
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_ADD = 0x20000000
IN_ISDIR = 0x40000000

# inotify_init1's flags are the O_ flags of the same name.
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

READ_SIZE = 64 * 1024
"""Bytes asked for per read(2): about 1,500 events of a checkout, so a burst is few reads."""
READ_LIMIT = 1024 * 1024
"""Bytes read per wakeup before they are handled, even if more are queued: a writer that never
pauses still gets its changes handed on."""

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len: native byte order, as the kernel writes


class Event(NamedTuple):
    """One ``struct inotify_event``."""

    wd: int
    """The watch it came from (-1 for ``IN_Q_OVERFLOW``)."""
    mask: int
    cookie: int
    """Pairs an ``IN_MOVED_FROM`` with its ``IN_MOVED_TO``."""
    name: str
    """The entry's name in the watched directory; empty for events on the watched inode itself."""


def parse(buffer: bytes) -> list[Event]:
    """The events in ``buffer``, as read(2) returned them (only whole records, NUL-padded names).

    >>> head = struct.Struct("iIII")
    >>> data = head.pack(3, IN_DELETE_SELF, 0, 0) + head.pack(-1, IN_Q_OVERFLOW, 0, 0)
    >>> [(e.wd, e.name) for e in parse(data)]
    [(3, ''), (-1, '')]
    """
    events = []
    offset = 0
    end = len(buffer)
    header = _HEADER.size
    while offset < end:
        if end - offset < header:
            raise ValueError(f"a truncated inotify event at byte {offset} of {end}")
        wd, mask, cookie, length = _HEADER.unpack_from(buffer, offset)
        offset += header
        if offset + length > end:
            raise ValueError(f"an inotify event's name runs past the end of {end} bytes")
        raw = buffer[offset : offset + length]
        offset += length
        nul = raw.find(b"\0")
        # The kernel pads names with NULs to a multiple of 16 bytes; names are bytes, decoded as
        # os.scandir decodes them, so the paths compare equal to those a walk produces.
        name = os.fsdecode(raw if nul < 0 else raw[:nul])
        events.append(Event(wd, mask, cookie, name))
    return events


class WatchLimitError(OSError):
    """The kernel would not add more watches (inotify's ``max_user_watches`` or instances)."""


class _Libc(NamedTuple):
    init1: Callable[[int], int]
    add_watch: Callable[[int, bytes, int], int]
    rm_watch: Callable[[int, int], int]


@lru_cache(maxsize=1)
def _libc() -> _Libc:
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "inotify is Linux's")
    # The symbols the interpreter was linked with (glibc or musl): no library search needed.
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        init1, add, rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    except AttributeError:
        raise OSError(errno.ENOSYS, "this libc has no inotify") from None
    init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    rm.argtypes, rm.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return _Libc(init1, add, rm)


def _error(path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    cls = WatchLimitError if code in (errno.ENOSPC, errno.EMFILE) else OSError
    if path is None:
        return cls(code, os.strerror(code))
    return cls(code, os.strerror(code), path)


def init() -> int:
    """A new inotify instance: its file descriptor, non-blocking and close-on-exec.

    Raises :class:`WatchLimitError` (``EMFILE``) at the ``max_user_instances`` limit.
    """
    fd = int(_libc().init1(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0:
        raise _error()
    return fd


def add_watch(fd: int, path: str, mask: int) -> int:
    """Watch ``path`` (or change its mask); the watch descriptor, the same for the same inode.

    Raises :class:`WatchLimitError` (``ENOSPC``) at the ``max_user_watches`` limit, and
    :class:`OSError` with the errno otherwise (``ENOENT``, ``EACCES``, ``ENOTDIR``, ...).
    """
    wd = int(_libc().add_watch(fd, os.fsencode(path), mask))
    if wd < 0:
        raise _error(path)
    return wd


def rm_watch(fd: int, wd: int) -> None:
    """Stop a watch; one already gone (its inode deleted) is no error."""
    if _libc().rm_watch(fd, wd) < 0 and ctypes.get_errno() != errno.EINVAL:
        raise _error()


def read_events(fd: int, *, limit: int = READ_LIMIT) -> list[Event]:
    """Every event queued on ``fd`` (non-blocking), up to about ``limit`` bytes of them."""
    chunks = []
    size = 0
    while size < limit:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            break
        chunks.append(chunk)
        size += len(chunk)
    return parse(b"".join(chunks))


def inotify_limits() -> dict[str, int]:
    """The inotify sysctls, for messages and ``explain`` (empty where there are none)."""
    limits = {}
    for name in ("max_user_watches", "max_user_instances", "max_queued_events"):
        with contextlib.suppress(OSError, ValueError), open(f"/proc/sys/fs/inotify/{name}") as f:
            limits[name] = int(f.read())
    return limits


def limit_message(error: OSError | None = None) -> str:
    """How to raise the limit that ``error`` hit (the watch limit by default), with its value."""
    if error is not None and error.errno == errno.EMFILE:
        instances = inotify_limits().get("max_user_instances")
        now = f" (now {instances})" if instances is not None else ""
        return (
            f"inotify instance limit reached{now}, or out of file descriptors: raise it with "
            "'sysctl fs.inotify.max_user_instances=1024'"
        )
    watches = inotify_limits().get("max_user_watches")
    now = f" (now {watches})" if watches is not None else ""
    return (
        f"inotify watch limit reached{now}: raise it with "
        "'sysctl fs.inotify.max_user_watches=524288'"
    )
