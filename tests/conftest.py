"""Fixtures shared by the test suite: the anyio backends and a real FUSE passthrough mount.

The FUSE fixture mounts a backing directory B at a mount point M with bindfs. A change made
through M raises inotify events on M; a change made directly in B (the far side of the mount,
like the sshfs server or the Docker Desktop host) raises none: only polling M sees it. That is
exactly the blindness asyncreload exists for, so those tests change B and expect M's paths.

Without FUSE (no /dev/fuse, no bindfs, not root) the FUSE tests skip with the reason; with
``CI=true`` a missing FUSE capability fails them instead, since CI machines can mount FUSE.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .processes import Journal

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["inotify", "watchfiles"])
def events_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each event backend in turn (through the environment, so CLI subprocesses get it too)."""
    backend = str(request.param)
    if backend == "inotify" and not sys.platform.startswith("linux"):
        pytest.skip("the native inotify backend is Linux's")
    monkeypatch.setenv("ASYNCRELOAD_EVENTS_BACKEND", backend)
    return backend


@pytest.fixture
def native_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The native inotify backend, whatever ``ASYNCRELOAD_EVENTS_BACKEND`` says outside."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the native inotify backend is Linux's")
    monkeypatch.setenv("ASYNCRELOAD_EVENTS_BACKEND", "inotify")


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    """The file the test commands of ``processes.CHILD`` write what they do to."""
    return Journal(tmp_path / "journal.jsonl")


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    """An empty directory to watch."""
    path = tmp_path / "watched"
    path.mkdir()
    return path


def wait_for(
    condition: Callable[[], object], *, timeout: float = 15.0, what: str = "condition"
) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def _mount_fstype(mount_point: str) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if fields[4] == mount_point:
                return fields[fields.index("-", 6) + 1]
    return None


def _fuse_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "FUSE tests need Linux"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (a container needs --device /dev/fuse)"
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (apt-get install fuse3 bindfs)"
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        return "not root and no fusermount3"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"can't open /dev/fuse: {e.strerror}"
    return None


SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server", "/usr/libexec/sftp-server")


def _sftp_server() -> str | None:
    return next((p for p in SFTP_SERVERS if os.access(p, os.X_OK)), None)


class FuseMount:
    """bindfs serving ``backing`` at ``mount``, run in the foreground as our own child.

    With ``daemon="sshfs"``, a real sshfs mount of ``backing`` instead, without a network or an
    ssh server: sshfs's "ssh command" is a script that starts the local sftp-server. Unlike
    bindfs, sshfs numbers the inodes itself, anew on each mount, as it does with a real server.
    """

    def __init__(self, backing: Path, mount: Path, daemon: str = "bindfs") -> None:
        self.backing = backing
        self.mount = mount
        self.daemon = daemon
        self.process: subprocess.Popen[bytes] | None = None
        self._server_pid_file = backing.parent / "sftp-server.pid"

    @property
    def server_pid(self) -> int:
        """The sftp server's PID (sshfs only): it exits when sshfs closes its end."""
        return int(self._server_pid_file.read_text())

    def _command(self) -> list[str]:
        no_cache = "attr_timeout=0,entry_timeout=0,negative_timeout=0"
        if self.daemon == "sshfs":
            fake_ssh = self.backing.parent / "fake-ssh"
            # sshfs double-forks its ssh command: the script says which PID the server is.
            script = f"#!/bin/sh\necho $$ > {self._server_pid_file}\nexec {_sftp_server()}\n"
            fake_ssh.write_text(script)
            fake_ssh.chmod(0o755)
            return [
                "sshfs",
                "-f",
                "-o",
                f"ssh_command={fake_ssh},dir_cache=no,{no_cache}",
                f"localhost:{self.backing}",
                str(self.mount),
            ]
        return [
            "bindfs",
            "-f",  # foreground: the daemon is our child, so we can kill and reap it
            "--multithreaded",
            "-o",
            f"{no_cache},subtype=bindfs",
            str(self.backing),
            str(self.mount),
        ]

    def start(self) -> None:
        self.process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"{self.daemon} exited with {process.returncode}: {err.strip()}")
            if _mount_fstype(str(self.mount)) is None:
                return False
            try:
                os.stat(self.mount)
            except OSError:
                return False
            return True

        wait_for(up, what=f"the FUSE mount at {self.mount}")

    def kill(self) -> None:
        """SIGKILL the daemon: the mount stays, dead (stat fails with ENOTCONN)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=15)

        def dead() -> bool:
            try:
                os.stat(self.mount)
            except OSError as e:
                return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
            return False

        wait_for(dead, what="the mount to go dead")

    def unmount(self) -> None:
        if _mount_fstype(str(self.mount)) is not None:
            tool = shutil.which("fusermount3") or shutil.which("fusermount")
            cmd = [tool, "-u", "-z", str(self.mount)] if tool else ["umount", "-l", str(self.mount)]
            subprocess.run(cmd, check=False, capture_output=True, timeout=30)
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None

    def remount(self) -> None:
        self.unmount()
        self.start()


def _mounted(tmp_path: Path, daemon: str, why: str | None) -> Iterator[FuseMount]:
    if why is not None:
        if IN_CI:
            pytest.fail(f"CI=true but FUSE mounts are unavailable: {why}")
        pytest.skip(f"FUSE mounts unavailable: {why}")
    backing = tmp_path / "backing"
    mount = tmp_path / "mount"
    backing.mkdir()
    mount.mkdir()
    fm = FuseMount(backing.resolve(), mount.resolve(), daemon)
    fm.start()
    try:
        yield fm
    finally:
        fm.unmount()


@pytest.fixture
def fuse_mount(tmp_path: Path) -> Iterator[FuseMount]:
    """A live FUSE passthrough: ``.backing`` (change it directly) served at ``.mount``."""
    yield from _mounted(tmp_path, "bindfs", _fuse_unavailable())


@pytest.fixture
def sshfs_mount(tmp_path: Path) -> Iterator[FuseMount]:
    """A live sshfs mount of ``.backing`` at ``.mount``, its caches off (see :class:`FuseMount`)."""
    why = _fuse_unavailable()
    if why is None and shutil.which("sshfs") is None:
        why = "sshfs is not installed (apt-get install sshfs)"
    if why is None and _sftp_server() is None:
        why = "no sftp-server (apt-get install openssh-sftp-server)"
    yield from _mounted(tmp_path, "sshfs", why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"fuse_mount", "sshfs_mount"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fuse)
