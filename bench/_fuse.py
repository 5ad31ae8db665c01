"""A FUSE passthrough mount made with bindfs: the smallest faithful model of sshfs and friends.

A change made in the backing directory raises no inotify event on the mount; only stat() through
the mount sees it, at the cost of one round trip to the daemon per call. The cache timeouts are 0
so that every stat is fresh, as on a network file system that must not serve stale metadata.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import psutil

__all__ = ["FuseUnavailable", "fuse_problem", "passthrough"]

_BINDFS_OPTIONS = "attr_timeout=0,entry_timeout=0,negative_timeout=0,subtype=bindfs"
_TIMEOUT = 30.0


class FuseUnavailable(RuntimeError):
    """FUSE mounts can't be made here."""


def fuse_problem() -> str | None:
    """Why FUSE mounts can't be made here, or None if they can."""
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (apt-get install fuse3 bindfs)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None and shutil.which("fusermount") is None:
        return "fusermount3 is not installed"
    return None


def _daemon_pid(mountpoint: str) -> int | None:
    """bindfs daemonises, so its PID is found by its command line."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "bindfs" and mountpoint in cmdline:
            return int(proc.pid)
    return None


def _unmount(mountpoint: str) -> None:
    for command in (["fusermount3", "-u"], ["fusermount", "-u"], ["umount", "-l"]):
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run(
            [*command, mountpoint], capture_output=True, timeout=_TIMEOUT, check=False
        )
        if result.returncode == 0 or not os.path.ismount(mountpoint):
            return


@contextlib.contextmanager
def passthrough(backing: str, mountpoint: str) -> Iterator[int | None]:
    """Mount ``backing`` at ``mountpoint``; yield the daemon's PID; always unmount after."""
    problem = fuse_problem()
    if problem is not None:
        raise FuseUnavailable(problem)
    os.makedirs(mountpoint, exist_ok=True)
    command = ["bindfs", "--multithreaded", "-o", _BINDFS_OPTIONS, backing, mountpoint]
    # bindfs returns once the mount answers (it daemonises after mounting), so no waiting here.
    result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    try:
        if result.returncode != 0 or not os.path.ismount(mountpoint):
            raise FuseUnavailable(f"bindfs failed ({result.returncode}): {result.stderr.strip()}")
        yield _daemon_pid(mountpoint)
    finally:
        if os.path.ismount(mountpoint):
            _unmount(mountpoint)
