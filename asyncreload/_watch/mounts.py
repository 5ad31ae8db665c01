"""The mount table: which file systems kernel events can't see into.

Pure parsers of the table as each OS gives it (Linux: ``/proc/self/mountinfo``; macOS: the
output of ``mount``, whose flags say ``local`` for MNT_LOCAL; Windows: the type of each drive
letter) and a classifier of file system types; the only I/O is in :func:`read_mounts` and
:class:`MountTable` (which says when the table changes, on Linux), thin shells. Network and FUSE
file systems are polled because a change made on the far side of the mount (the sshfs server,
the Docker Desktop or WSL2 host, another NFS client, the SMB server) raises no event here.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

import anyio

from .. import _platform

__all__ = [
    "Mount",
    "MountTable",
    "RereadTable",
    "cache_delay",
    "mount_poll_reason",
    "parse_macos_mount",
    "parse_mountinfo",
    "poll_reason",
    "read_mounts",
    "share_mount",
    "unescape",
    "windows_mounts",
]

MOUNTINFO = "/proc/self/mountinfo"

# File systems whose changes can come from elsewhere, unseen by the local kernel's inotify.
# fuse.* (sshfs, bindfs, rclone, gcsfuse, s3fs, ...) and fuseblk are matched by prefix below.
_POLLED_TYPES: dict[str, str] = {
    "fuse": "FUSE",
    "fuseblk": "FUSE",
    "nfs": "NFS",
    "nfs4": "NFS",
    "cifs": "SMB",
    "smb3": "SMB",
    "smbfs": "SMB",
    "9p": "9P (WSL2 drive, VM share)",
    "virtiofs": "virtio-fs (VM share)",
    "vboxsf": "VirtualBox shared folder",
    "vmhgfs": "VMware shared folder",
    "ceph": "Ceph",
    "glusterfs": "GlusterFS",
    "afs": "AFS",
    "openafs": "AFS",
    "davfs": "WebDAV",
    "lustre": "Lustre",
    "gpfs": "GPFS",
    "beegfs": "BeeGFS",
    "ocfs2": "OCFS2",
    "gfs2": "GFS2",
    "drvfs": "WSL drive",
    "prl_fs": "Parallels shared folder",
    # Docker Desktop shares: gRPC FUSE (fuse.grpcfuse, matched as fuse.*), osxfs, and
    # "fakeowner" (the virtiofs share of Docker Desktop for Mac).
    "osxfs": "Docker Desktop share",
    "fakeowner": "Docker Desktop share",
    # macOS's names (``mount`` and statfs's f_fstypename).
    "afpfs": "AFP",
    "webdav": "WebDAV",
    "macfuse": "FUSE (macFUSE)",
    "osxfuse": "FUSE (macFUSE)",
    "fusefs": "FUSE",
}

_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    r"""Undo the kernel's octal escapes in a mountinfo path field.

    >>> unescape(r"/mnt/my\040drive/tab\011and\134slash")
    '/mnt/my drive/tab\tand\\slash'
    """
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    """One line of the mount table."""

    mount_id: int
    parent_id: int
    mount_point: str
    fstype: str
    source: str
    options: str = ""
    """The super block's options (the last field), e.g. ``rw,vers=4.2,acregmin=10``."""
    device: int = -1
    """The ``st_dev`` of the files on it (field 3, ``major:minor``); -1 if unknown."""
    remote: bool = False
    """The OS says it is not local, whatever its type (macOS: MNT_LOCAL unset; Windows: a
    network drive)."""


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse the text of ``/proc/<pid>/mountinfo``, in table order.

    Lines that don't parse are skipped: the table is the kernel's, and one odd line must not
    cost the user the whole watcher.

    >>> line = "42 27 0:39 / /tmp/x/M rw,relatime - fuse.bindfs /tmp/x/B rw,user_id=0"
    >>> [(m.mount_point, m.fstype, m.source) for m in parse_mountinfo(line)]
    [('/tmp/x/M', 'fuse.bindfs', '/tmp/x/B')]
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            mount = Mount(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                mount_point=unescape(fields[4]),
                fstype=fields[sep + 1],
                source=unescape(fields[sep + 2]),
                options=fields[sep + 3] if len(fields) > sep + 3 else "",
                device=os.makedev(*map(int, fields[2].split(":"))),
            )
        except (ValueError, IndexError):
            continue
        mounts.append(mount)
    return mounts


def poll_reason(fstype: str) -> str | None:
    """Why a file system of this type must be polled, or None if kernel events see it all.

    >>> poll_reason("fuse.sshfs"), poll_reason("nfs4"), poll_reason("ext4")
    ('FUSE (sshfs)', 'NFS', None)
    """
    if fstype.startswith("fuse."):
        return f"FUSE ({fstype[5:]})"
    return _POLLED_TYPES.get(fstype)


def mount_poll_reason(mount: Mount) -> str | None:
    """Why files on ``mount`` must be polled, or None: its type, or what the OS says of it.

    >>> mount_poll_reason(Mount(1, 0, "/Volumes/x", "exfat", "//h/x", remote=True))
    'network volume (exfat)'
    """
    why = poll_reason(mount.fstype)
    if why is None and mount.remote:
        why = f"network volume ({mount.fstype})"
    return why


_MACOS_LINE = re.compile(
    r"^(?P<source>.+?) on (?P<point>/.*) \((?P<type>[^,()]+)(?P<flags>[^()]*)\)$"
)
_MACOS_NOT_VOLUMES = frozenset({"autofs", "devfs", "nullfs"})
"""Not local, yet nothing to poll: autofs's triggers (what they mount has a line of its own)."""


def parse_macos_mount(text: str) -> list[Mount]:
    """Parse what macOS's ``mount`` prints, in table order; ``remote`` where ``local`` (its
    MNT_LOCAL flag) is missing. Lines that don't parse are skipped.

    >>> line = "//ann@nas/code on /Volumes/code (smbfs, nodev, nosuid, mounted by ann)"
    >>> [(m.mount_point, m.fstype, m.source, m.remote) for m in parse_macos_mount(line)]
    [('/Volumes/code', 'smbfs', '//ann@nas/code', True)]
    """
    mounts = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _MACOS_LINE.match(line.strip())
        if match is None:
            continue
        fstype = match["type"].strip()
        flags = [f.strip() for f in match["flags"].split(",") if f.strip()]
        mounts.append(
            Mount(
                mount_id=number,
                parent_id=0,
                mount_point=match["point"],
                fstype=fstype,
                source=match["source"],
                options=",".join(flags),
                remote="local" not in flags and fstype not in _MACOS_NOT_VOLUMES,
            )
        )
    return mounts


DRIVE_REMOTE = 4
"""``GetDriveTypeW``'s answer for a network drive."""


def windows_mounts(drive_types: Mapping[str, int]) -> list[Mount]:
    r"""The mount table of Windows as asyncreload needs it: one entry per network drive, from
    the type ``GetDriveTypeW`` gives each drive's root. A UNC path (``\\server\share``) is
    remote by its very form, and is in no table (see :func:`share_mount`).

    >>> [(m.mount_point, m.remote) for m in windows_mounts({"C:\\": 3, "Z:\\": 4})]
    [('Z:\\', True)]
    """
    return [
        Mount(i, 0, root, "network drive", root, remote=True)
        for i, (root, kind) in enumerate(sorted(drive_types.items()), 1)
        if kind == DRIVE_REMOTE
    ]


def share_mount(share: str) -> Mount:
    r"""The mount a path on a Windows network share (``\\server\share\...``) lies on: the share.

    >>> m = share_mount("\\\\nas\\code")
    >>> m.mount_point, m.remote, mount_poll_reason(m)
    ('\\\\nas\\code', True, 'network volume (network share)')
    """
    return Mount(0, 0, share, "network share", share, remote=True)


def _seconds(options: str) -> dict[str, int]:
    found = {}
    for option in options.split(","):
        name, _, value = option.partition("=")
        if value.isdigit():
            found[name] = int(value)
    return found


_FUSE_KERNEL_CACHE = (
    "the kernel caches attributes for attr_timeout and names for entry_timeout (1 s each by "
    "default, not shown in the mount table)"
)


def cache_delay(mount: Mount) -> str | None:
    """How late a far-side change may show through ``mount``, and the mount option that removes
    the delay; None when nothing is known to delay what stat() sees.

    From the mount's own options where the kernel shows them (NFS, SMB), else the known
    defaults (sshfs, rclone, FUSE: their caches live in the daemon and libfuse, unseen here).

    >>> m = Mount(1, 0, "/net/home", "nfs4", "fs1:/home", "rw,vers=4.2,acregmin=10,hard")
    >>> cache_delay(m)
    'NFS caches attributes: a change made elsewhere shows 10-60 s late (acregmin=10, acregmax=60; new and deleted files 30-60 s: acdirmin, acdirmax); mount with noac (or actimeo=0) to see it at once'
    >>> cache_delay(Mount(1, 0, "/net/home", "nfs4", "fs1:/home", "rw,noac")) is None
    True
    """  # noqa: E501
    fstype, opts = mount.fstype, _seconds(mount.options)
    if fstype in ("nfs", "nfs4"):
        if "noac" in mount.options.split(","):
            return None
        # The kernel shows these only when they differ from its defaults (actimeo=N sets all four).
        regmin, regmax = opts.get("acregmin", 3), opts.get("acregmax", 60)
        dirmin, dirmax = opts.get("acdirmin", 30), opts.get("acdirmax", 60)
        if regmax == dirmax == 0:
            return None
        return (
            f"NFS caches attributes: a change made elsewhere shows {regmin}-{regmax} s late "
            f"(acregmin={regmin}, acregmax={regmax}; new and deleted files {dirmin}-{dirmax} s: "
            "acdirmin, acdirmax); mount with noac (or actimeo=0) to see it at once"
        )
    if fstype in ("cifs", "smb3"):
        # actimeo=N when both are equal, else acregmax and acdirmax; 1 s by default.
        timeout = max(opts.get(k, 0) for k in ("actimeo", "acregmax", "acdirmax"))
        if not any(k in opts for k in ("actimeo", "acregmax", "acdirmax")):
            timeout = 1
        if timeout == 0:
            return None
        return (
            f"SMB caches attributes for {timeout} s (actimeo={timeout}): a change made elsewhere "
            "shows up to that late; mount with actimeo=0 to see it at once"
        )
    if fstype == "fuse.sshfs":
        return (
            "sshfs caches attributes and listings for 20 s by default, and "
            f"{_FUSE_KERNEL_CACHE}: a change made on the server shows up to ~21 s late; mount "
            "with -o dir_cache=no (sshfs 2: -o cache=no; or a shorter -o dcache_timeout=N) "
            "and -o attr_timeout=0,entry_timeout=0 to see it at once"
        )
    if fstype == "fuse.rclone":
        return (
            "rclone caches listings for --dir-cache-time (5 min by default) and attributes for "
            "--attr-timeout (1 s): a new or deleted remote file shows up to 5 min late; mount "
            "with a shorter --dir-cache-time (backends that support it: --poll-interval)"
        )
    if fstype in ("fuse", "fuseblk") or fstype.startswith("fuse."):
        return (
            f"FUSE: {_FUSE_KERNEL_CACHE}: a change made on the far side may show up to 1 s late; "
            "mount with -o attr_timeout=0,entry_timeout=0 to see it at once"
        )
    return None


def read_mounts() -> list[Mount]:
    """The current mount table; empty where it can't be read (then events everywhere, plus
    the user's overrides)."""
    if _platform.LINUX:
        return _read_linux()
    if _platform.MACOS:
        return _read_macos()
    if _platform.WINDOWS:
        return windows_mounts(_drive_types())
    return []


def _read_linux() -> list[Mount]:
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []


def _read_macos() -> list[Mount]:
    try:
        done = subprocess.run(
            ["/sbin/mount"],
            check=False,
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_macos_mount(done.stdout)


def _drive_types() -> dict[str, int]:  # pragma: no cover - Windows only
    """Each drive's root (``C:\\``) and the type ``GetDriveTypeW`` says it is, as they are now:
    both calls are cheap, so the table is read again every few seconds."""
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    letters = kernel32.GetLogicalDrives()
    roots = [f"{chr(65 + i)}:\\" for i in range(26) if letters >> i & 1]
    return {root: kernel32.GetDriveTypeW(root) for root in roots}


class MountTable:
    """Says when the mount table changes: ``with MountTable.open() as t: await t.changed()``.

    The kernel marks ``/proc/self/mountinfo`` with POLLPRI when a mount is made or removed in
    our namespace. It is always readable (POLLIN), so an event loop's readiness wait can't wait
    for that: a worker thread sleeps in ``poll()`` on it instead, next to a pipe that wakes it
    when the watcher stops (so no thread is left behind, nor a process kept from exiting). An
    idle watcher's thread makes no system call at all until the table changes.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        self._poll = select.poll()
        self._poll.register(fd, select.POLLPRI)
        self._poll.register(self._wake_r, select.POLLIN)
        self._lock = threading.Lock()
        self._waiting = False
        self._closed = False
        self._limiter = anyio.CapacityLimiter(1)  # never a token of the app's own to_thread

    @classmethod
    def open(cls) -> MountTable | RereadTable | None:
        """The table's change signal: the kernel's on Linux; on macOS and Windows, which give
        none (a ``net use Z:`` after the start says nothing), the table read again
        (:class:`RereadTable`); elsewhere (or with no /proc) None."""
        if _platform.MACOS or _platform.WINDOWS:
            return RereadTable()
        if not _platform.LINUX:
            return None
        try:
            return cls(os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            return None

    async def changed(self) -> None:
        """Return once the mount table has changed since the last return (or since opening)."""
        await anyio.to_thread.run_sync(self._wait, abandon_on_cancel=True, limiter=self._limiter)

    def _wait(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._waiting = True
        try:
            # Returns for POLLPRI|POLLERR on the table (the kernel then takes the change as
            # seen), or for the wake-up byte.
            self._poll.poll()
        finally:
            with self._lock:
                self._waiting = False
                if self._closed:
                    self._close_fds()

    def close(self) -> None:
        """Stop: a thread still waiting is woken, and closes the descriptors it polls itself."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._waiting:
                os.write(self._wake_w, b"\0")
            else:
                self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self) -> MountTable:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


REREAD_INTERVAL = 2.0
"""Seconds between two reads of the table where nothing says it changed (macOS, Windows)."""


class RereadTable:
    """Says when the mount table changes where the OS gives no signal for it (macOS, whose
    ``mount`` takes a few milliseconds; Windows, whose drive types take microseconds): it is
    read again every ``interval`` seconds, in a
    thread, and compared with the last read. So a volume mounted after the start is polled from
    at most ``interval`` seconds later. The first read is made at once, so that a mount made
    before the watcher's own first read of the table is not missed."""

    def __init__(
        self, read: Callable[[], list[Mount]] = read_mounts, interval: float | None = None
    ) -> None:
        self._read = read
        self._interval = REREAD_INTERVAL if interval is None else interval
        self._last = self._key(read())
        self._limiter = anyio.CapacityLimiter(1)

    @staticmethod
    def _key(mounts: list[Mount]) -> frozenset[tuple[str, str, str, bool]]:
        return frozenset((m.mount_point, m.fstype, m.source, m.remote) for m in mounts)

    async def changed(self) -> None:
        """Return once the table differs from the last read (or from the one at opening)."""
        while True:
            await anyio.sleep(self._interval)
            mounts = await anyio.to_thread.run_sync(
                self._read, abandon_on_cancel=True, limiter=self._limiter
            )
            now = self._key(mounts)
            if now != self._last:
                self._last = now
                return

    def close(self) -> None:
        pass

    def __enter__(self) -> RereadTable:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
