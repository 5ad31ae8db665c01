"""The platform seam: what runs where Linux's parts are missing, forced here on Linux, and the
mount tables of macOS and Windows, parsed from their own words and planned."""

from __future__ import annotations

import errno
import ntpath
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import cast

import pytest

from asyncreload import _platform
from asyncreload._types import Backend
from asyncreload._watch.mounts import Mount, parse_macos_mount, windows_mounts
from asyncreload._watch.plan import plan

from .helpers import CLI

# What Windows's standard library lacks and asyncreload could trip on at import: modules that
# don't exist there, and names os and signal don't have. The modules of the standard library
# that choose their own branch by platform are imported first, as they are (their Linux branch),
# and the functions they call later (signal.siginterrupt, say) are left in place.
NOT_ON_WINDOWS = """
import os, signal, sys
import asyncio, concurrent.futures, ctypes, logging, selectors, shutil, socket, subprocess
import tempfile, threading

class NotHere:
    def find_spec(self, name, path=None, target=None):
        if name in {"termios", "fcntl", "resource", "pwd", "grp", "pty", "tty"}:
            raise ImportError(f"No module named {name!r}")

for name in ("termios", "fcntl", "resource", "pty", "tty"):
    sys.modules.pop(name, None)
sys.meta_path.insert(0, NotHere())
for name in ("O_DIRECTORY", "O_NOFOLLOW", "pipe2", "killpg", "getpgrp", "setpgid", "tcgetpgrp",
             "tcsetpgrp", "fork", "getpgid", "setsid", "getuid", "geteuid", "sched_getaffinity"):
    if hasattr(os, name):
        delattr(os, name)
for name in ("SIGHUP", "SIGQUIT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGCHLD", "SIGCONT",
             "SIGSTOP", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE", "SIGWINCH"):
    if hasattr(signal, name):
        delattr(signal, name)
"""


def test_import_needs_nothing_windows_lacks() -> None:
    code = NOT_ON_WINDOWS + "import asyncreload, asyncreload.cli\nprint(asyncreload.__all__[0])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_poller_works_without_o_directory(tmp_path: Path) -> None:
    # Where open() has no O_DIRECTORY, a directory's own stat tells a file root from a tree.
    tree, single = tmp_path / "tree", tmp_path / "single.txt"
    tree.mkdir()
    single.write_text("1")
    script = NOT_ON_WINDOWS + "from asyncreload.cli import main\nmain()"
    args = ["watch", "--force-polling", "--poll-interval", "0.1", "--json", str(tree), str(single)]
    with CLI(*args, script=script) as cli:
        cli.wait_ready()
        (tree / "new.py").write_text("x")
        cli.wait_change(tree / "new.py")
        single.write_text("22")
        cli.wait_change(single)
        assert not [line for line in cli.stderr if "Not a directory" in line]


@pytest.mark.parametrize("command", [["run", "--", "true"], ["serve", "main:app", "--port", "0"]])
def test_run_and_serve_refuse_in_one_line_off_linux(command: list[str], tmp_path: Path) -> None:
    # Not Linux: no subreaper, no /proc. The promise of no orphans can't be kept, so they say so
    # before starting anything, rather than fail half-way.
    script = "import asyncreload._platform as p\np.LINUX = False\n"
    script += "from asyncreload.cli import main\nmain()"
    with CLI(*command, cwd=tmp_path, script=script) as cli:
        code = cli.process.wait(timeout=60)
        cli.wait_line(lambda line: "needs Linux" in line, stream="stderr")
    assert code == 1
    assert len(cli.stderr) == 1, cli.stderr
    assert cli.stderr[0].startswith(f"asyncreload: error: asyncreload {command[0]} needs Linux")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made, nothing left


# `mount` on macOS 14 with an SMB share, an NFS export, a macFUSE sshfs mount and a USB stick
# (the system's own volumes as a default install has them; a space in one mount point).
MACOS_MOUNT = """\
/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)
devfs on /dev (devfs, local, nobrowse)
/dev/disk3s6 on /System/Volumes/VM (apfs, local, noexec, journaled, noatime, nobrowse)
/dev/disk3s2 on /System/Volumes/Preboot (apfs, local, journaled, nobrowse)
/dev/disk3s4 on /System/Volumes/Update (apfs, local, journaled, nobrowse)
/dev/disk3s5 on /System/Volumes/Data (apfs, local, journaled, nobrowse, protect)
map auto_home on /System/Volumes/Data/home (autofs, automounted, nobrowse)
//ann@nas.local/code on /Volumes/code (smbfs, nodev, nosuid, mounted by ann)
nas.local:/export/src on /Users/ann/nfs (nfs, nodev, nosuid, mounted by ann)
ann@build:/home/ann on /Users/ann/remote box (macfuse, nodev, nosuid, synchronous, mounted by ann)
/dev/disk4s1 on /Volumes/USB (msdos, local, nodev, nosuid, noowners, mounted by ann)
"""


def test_macos_mount_table() -> None:
    mounts = parse_macos_mount(MACOS_MOUNT)
    assert len(mounts) == 11
    by_point = {m.mount_point: m for m in mounts}
    assert by_point["/Users/ann/remote box"].fstype == "macfuse"
    assert by_point["/Volumes/code"].source == "//ann@nas.local/code"
    remote = sorted(m.mount_point for m in mounts if m.remote)
    assert remote == ["/Users/ann/nfs", "/Users/ann/remote box", "/Volumes/code"]

    roots = ["/Volumes/code/app", "/Users/ann/remote box/src", "/Users/ann/nfs", "/Volumes/USB",
             "/System/Volumes/Data/Users/ann/p"]  # fmt: skip
    reasons = {t.path: (t.backend.value, t.reason) for t in plan(roots, mounts)}
    assert reasons["/Volumes/code/app"][0] == "stat"
    assert reasons["/Volumes/code/app"][1].startswith("SMB mount at /Volumes/code")
    assert reasons["/Users/ann/remote box/src"][1].startswith("FUSE (macFUSE) mount at")
    assert reasons["/Users/ann/nfs"][1].startswith("NFS mount at")
    assert reasons["/Volumes/USB"][0] == "events"
    assert reasons["/System/Volumes/Data/Users/ann/p"][0] == "events"


def test_a_macos_volume_that_is_not_local_is_polled_whatever_its_type() -> None:
    line = "//ann@nas/x on /Volumes/x (exfat, nodev, nosuid, mounted by ann)"  # a made-up pair
    [target] = plan(["/Volumes/x/app"], parse_macos_mount(line))
    assert target.backend.value == "stat"
    assert target.reason.startswith("network volume (exfat) mount at /Volumes/x")


def test_windows_network_drives() -> None:
    # GetDriveTypeW: 2 removable, 3 fixed, 4 remote, 5 CD-ROM.
    mounts = windows_mounts({"C:\\": 3, "D:\\": 5, "E:\\": 2, "Z:\\": 4, "Y:\\": 4})
    assert [(m.mount_point, m.fstype, m.remote) for m in mounts] == [
        ("Y:\\", "network drive", True),
        ("Z:\\", "network drive", True),
    ]
    assert all(isinstance(m, Mount) for m in mounts)


def test_windows_roots_on_local_drives_network_drives_and_shares() -> None:
    # Windows paths planned on any system: case doesn't count, "\" separates, and a share
    # (\\server\share, what realpath makes of a mapped drive) is remote by its very form.
    mounts = windows_mounts({"C:\\": 3, "Z:\\": 4})
    roots = ["C:\\proj\\app", "C:\\proj\\app2", "c:\\PROJ\\app\\src", "z:\\code\\app",
             "\\\\nas\\code\\lib"]  # fmt: skip
    targets = {t.path: t for t in plan(roots, mounts, paths=ntpath)}
    assert {path: t.backend for path, t in targets.items()} == {
        "C:\\proj\\app": Backend.EVENTS,  # and c:\PROJ\app\src, inside it
        "C:\\proj\\app2": Backend.EVENTS,  # not inside C:\proj\app
        "z:\\code\\app": Backend.STAT,
        "\\\\nas\\code\\lib": Backend.STAT,
    }
    assert targets["z:\\code\\app"].reason == (
        "network volume (network drive) mount at Z:\\: changes made on its far side raise no events"
    )
    share = targets["\\\\nas\\code\\lib"]
    assert share.mount is not None and share.mount.mount_point == "\\\\nas\\code"
    assert share.reason.startswith("network volume (network share) mount at \\\\nas\\code:")


def test_windows_overrides_nest_by_their_depth() -> None:
    targets = plan(
        ["C:\\proj"], [], poll=["c:\\Proj\\vendor", "C:\\proj\\vendor\\a\\b"],
        events=["C:\\proj\\vendor\\a"], paths=ntpath,
    )  # fmt: skip
    assert [(t.path, t.backend, t.excludes) for t in targets] == [
        ("C:\\proj", Backend.EVENTS, ("c:\\Proj\\vendor",)),
        ("c:\\Proj\\vendor", Backend.STAT, ("C:\\proj\\vendor\\a",)),
        ("C:\\proj\\vendor\\a", Backend.EVENTS, ("C:\\proj\\vendor\\a\\b",)),
        ("C:\\proj\\vendor\\a\\b", Backend.STAT, ()),
    ]


# Windows's winerrors, each with the errno Python's table (PC/errmap.h) gives it: network errors
# it doesn't know become EINVAL, and two mislead (a lost share as ENOENT, a drive not ready as
# EACCES). The winerror decides.
WINDOWS_ERRORS = [
    (2, errno.ENOENT, "gone"),  # ERROR_FILE_NOT_FOUND
    (3, errno.ENOENT, "gone"),  # ERROR_PATH_NOT_FOUND
    (267, errno.ENOTDIR, "gone"),  # ERROR_DIRECTORY
    (53, errno.ENOENT, "dead mount"),  # ERROR_BAD_NETPATH
    (67, errno.ENOENT, "dead mount"),  # ERROR_BAD_NET_NAME
    (21, errno.EACCES, "dead mount"),  # ERROR_NOT_READY
    (55, errno.EINVAL, "dead mount"),  # ERROR_DEV_NOT_EXIST
    (59, errno.EINVAL, "dead mount"),  # ERROR_UNEXP_NET_ERR
    (64, errno.EINVAL, "dead mount"),  # ERROR_NETNAME_DELETED
    (121, errno.EINVAL, "dead mount"),  # ERROR_SEM_TIMEOUT
    (1231, errno.EINVAL, "dead mount"),  # ERROR_NETWORK_UNREACHABLE
    (1920, errno.EINVAL, "unresolvable link"),  # ERROR_CANT_ACCESS_FILE
    (1921, errno.EINVAL, "unresolvable link"),  # ERROR_CANT_RESOLVE_FILENAME
    (5, errno.EACCES, "other"),  # ERROR_ACCESS_DENIED
    (32, errno.EACCES, "other"),  # ERROR_SHARING_VIOLATION: there, and busy
]


@pytest.mark.parametrize(("winerror", "code", "kind"), WINDOWS_ERRORS)
def test_windows_errors_are_classified_by_their_winerror(
    winerror: int, code: int, kind: str
) -> None:
    error = OSError(code, "as Windows says it")
    setattr(error, "winerror", winerror)  # noqa: B010 - typeshed has it on Windows only
    assert _platform.os_error_kind(error) == kind
    assert _platform.is_gone(error) is (kind == "gone")
    assert _platform.is_dead_mount(error) is (kind == "dead mount")
    assert _platform.is_unresolvable_link(error) is (kind == "unresolvable link")


@pytest.mark.parametrize(
    ("code", "kind"),
    [(errno.ENOENT, "gone"), (errno.ENOTDIR, "gone"), (errno.ENOTCONN, "dead mount"),
     (errno.ESTALE, "dead mount"), (errno.EIO, "dead mount"), (errno.ELOOP, "unresolvable link"),
     (errno.EACCES, "other"), (errno.ETIMEDOUT, "other")],
)  # fmt: skip
def test_posix_errors_are_classified_by_their_errno(code: int, kind: str) -> None:
    assert _platform.os_error_kind(OSError(code, os.strerror(code))) == kind


class _Entry:
    """A directory entry as Windows's scandir gives one, for :func:`_platform.is_junction`."""

    def __init__(self, attributes: int, tag: int, *, symlink: bool = False) -> None:
        self.lstat = types.SimpleNamespace(st_file_attributes=attributes, st_reparse_tag=tag)
        self.symlink = symlink

    def is_symlink(self) -> bool:
        return self.symlink

    def stat(self, *, follow_symlinks: bool = True) -> object:
        assert not follow_symlinks
        return self.lstat


class _NewEntry(_Entry):
    """Python 3.12's, which says it itself."""

    def is_junction(self) -> bool:
        return True


REPARSE_POINT, DIRECTORY = 0x400, 0x10
JUNCTION_TAG, SYMLINK_TAG = 0xA0000003, 0xA000000C


def test_a_windows_junction_is_a_link_and_a_plain_directory_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    junction = cast(os.DirEntry[str], _Entry(DIRECTORY | REPARSE_POINT, JUNCTION_TAG))
    plain = cast(os.DirEntry[str], _Entry(DIRECTORY, 0))
    symlink = cast(os.DirEntry[str], _Entry(DIRECTORY | REPARSE_POINT, SYMLINK_TAG, symlink=True))
    new = cast(os.DirEntry[str], _NewEntry(DIRECTORY, 0))
    monkeypatch.setattr(_platform, "JUNCTIONS", True)
    assert [_platform.is_junction(e) for e in (junction, plain, symlink, new)] == [
        True, False, False, True
    ]  # fmt: skip
    assert [_platform.is_link(e) for e in (junction, plain, symlink, new)] == [
        True, False, True, True
    ]  # fmt: skip
    monkeypatch.setattr(_platform, "JUNCTIONS", False)  # POSIX: no junctions to look for
    assert [_platform.is_link(e) for e in (junction, plain, symlink)] == [False, False, True]
