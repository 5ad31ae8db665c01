"""The mount table: which file systems inotify can't see into.

A pure parser of ``/proc/self/mountinfo`` and a classifier of file system types; the only I/O is
:func:`read_mounts`, a thin shell. Network and FUSE file systems are polled because a change made
on the far side of the mount (the sshfs server, the Docker Desktop or WSL2 host, another NFS
client) raises no inotify event here.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

__all__ = ["Mount", "parse_mountinfo", "poll_reason", "read_mounts", "unescape"]

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


def read_mounts() -> list[Mount]:
    """The current mount table; empty off Linux (events everywhere, plus the user's overrides)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []
