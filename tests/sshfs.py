"""A real network file system on loopback: a private sshd on 127.0.0.1 and sshfs through it.

The bindfs fixture (conftest.py) models a FUSE mount; this one is the thing itself, for what only
sshfs does: it caches attributes and listings for 20 s by default, timestamps come through SFTP
in whole seconds, and it hands out its own inode numbers (a remount renumbers every file).

Nothing outside the test's tmp dir is touched: sshd gets its own config file, host key and
authorized key there, and never reads /etc/ssh; the ssh client reads only the config written
there (``-F``). sshd run as root insists on an (empty) privilege separation directory,
``/run/sshd``; rather than create it machine-wide, sshd runs in a mount namespace of its own
where ``/run`` is a private tmpfs holding it (the namespace, and the tmpfs, end with sshd).

Import the fixture where it is used (``from .sshfs import SshfsMount, loopback_sshfs``). Without
sshd, sshfs, FUSE or root the tests skip with the reason; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from .conftest import IN_CI, _mount_fstype, wait_for
from .processes import Tracked, start_time

__all__ = ["FRESH", "SshServer", "SshfsMount", "loopback_sshfs"]

SSHD = "/usr/sbin/sshd"  # sshd refuses to start unless run by its absolute path

FRESH = ("dir_cache=no", "attr_timeout=0", "entry_timeout=0", "negative_timeout=0")
"""sshfs options that make stat() through the mount fresh at once: sshfs's own directory and
attribute cache off, and the kernel's attribute, name and negative-lookup caches at 0."""


def _sshfs_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "sshfs tests need Linux"
    if os.geteuid() != 0:
        return "sshfs tests need root (sshd logs in as root through a private privsep dir)"
    for tool, package in ((SSHD, "openssh-server"), ("sshfs", "sshfs"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (a container needs --device /dev/fuse)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"can't open /dev/fuse: {e.strerror}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> Tracked:
    """Every live descendant of ``pid`` (from /proc/PID/task/*/children), to stop them later."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    tracked = Tracked([])
    # Not Tracked(found): one may exit (or be a zombie already) as we look.
    tracked.pids = {p: t for p in found if (t := start_time(p)) is not None}
    return tracked


def _stop(process: subprocess.Popen[bytes], tracked: Tracked) -> None:
    """SIGTERM ``process`` and the ``tracked`` PIDs, wait, SIGKILL what is left."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
    _signal(tracked, signal.SIGTERM)
    try:
        wait_for(lambda: not tracked.alive(), what=f"processes {tracked.alive()} to exit")
    finally:
        _signal(tracked, signal.SIGKILL)


def _signal(tracked: Tracked, sig: signal.Signals) -> None:
    for pid in tracked.alive():
        with contextlib.suppress(ProcessLookupError):  # it exited just now
            os.kill(pid, sig)


class SshServer:
    """A private sshd on 127.0.0.1, run in the foreground as our own child, and an ssh client
    config that reads nothing of the machine's (no known_hosts, no agent keys, no prompts)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.client_config = home / "ssh_config"
        self.log = home / "sshd.log"
        home.mkdir(mode=0o700)
        for key in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(home / key)],
                check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        (home / "authorized_keys").write_bytes((home / "client_key.pub").read_bytes())

    def _write_configs(self) -> None:
        (self.home / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\n"
            f"Port {self.port}\n"
            f"HostKey {self.home / 'host_key'}\n"
            f"AuthorizedKeysFile {self.home / 'authorized_keys'}\n"
            f"PidFile {self.home / 'sshd.pid'}\n"
            "UsePAM no\n"
            "StrictModes no\n"  # pytest's tmp dirs are not laid out the way sshd wants for ~/.ssh
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "Subsystem sftp internal-sftp\n"
        )
        # In place of ~/.ssh/config and /etc/ssh/ssh_config (sshfs's -o options name the rest).
        client = ["IdentitiesOnly yes", "GlobalKnownHostsFile /dev/null", "BatchMode yes"]
        self.client_config.write_text("\n".join([*client, "LogLevel ERROR", ""]))

    def start(self) -> None:
        for _ in range(5):  # the free port may be taken between our probe and sshd's bind
            self.port = _free_port()
            self._write_configs()
            sshd = [SSHD, "-f", str(self.home / "sshd_config"), "-D", "-e"]
            # A private /run with an empty sshd/ in it, seen by sshd alone; exec keeps the PID.
            script = (
                "mount -t tmpfs -o mode=0755,size=64k sshd-privsep /run"
                ' && mkdir -m 0755 /run/sshd && exec "$@"'
            )
            with open(self.log, "wb") as log:
                self.process = subprocess.Popen(
                    ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                     *sshd],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            if wait_for(self._answers, what=f"sshd on 127.0.0.1:{self.port}") == "up":
                return
            self.process.wait(timeout=15)
            if "Address already in use" not in self.log.read_text():
                break
        pytest.fail(f"sshd did not start: {self.log.read_text().strip()}")

    def _answers(self) -> str | None:
        """'up' once sshd sends its banner, 'exited' if it died, None while it starts."""
        assert self.process is not None
        if self.process.poll() is not None:
            return "exited"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                return "up" if s.recv(8).startswith(b"SSH-") else None
        except OSError:
            return None

    def stop(self) -> None:
        """Stop sshd and the per-connection sshd processes it forked (they outlive it)."""
        if self.process is not None:
            _stop(self.process, _descendants(self.process.pid))
            self.process = None


class SshfsMount:
    """sshfs mounting ``far`` (the server's side: change it directly) at ``mount``, through
    ``server``; run in the foreground as our own child, with ``options`` (default: FRESH)."""

    def __init__(self, server: SshServer, far: Path, mount: Path) -> None:
        self.server = server
        self.far = far
        self.mount = mount
        self.options: tuple[str, ...] = FRESH
        self.process: subprocess.Popen[bytes] | None = None
        self.log = server.home / "sshfs.log"

    def start(self, options: Sequence[str] | None = None) -> None:
        """Mount, with ``options`` (sshfs ``-o`` options) if given; wait until it answers."""
        if options is not None:
            self.options = tuple(options)
        ssh = (
            f"IdentityFile={self.server.home / 'client_key'},StrictHostKeyChecking=no,"
            f"UserKnownHostsFile=/dev/null,port={self.server.port}"
        )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["sshfs", "-f", "-F", str(self.server.client_config), "-o", ssh,
                 *(["-o", ",".join(self.options)] if self.options else []),
                 f"root@127.0.0.1:{self.far}", str(self.mount)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"sshfs exited with {process.returncode}: {self.log.read_text()}")
            if _mount_fstype(str(self.mount)) != "fuse.sshfs":
                return False
            try:
                os.stat(self.mount)
            except OSError:
                return False
            return True

        wait_for(up, what=f"the sshfs mount at {self.mount}")

    def unmount(self) -> None:
        """Unmount (lazily if busy) and wait for sshfs and its ssh to exit."""
        if self.process is None:
            return
        helpers = _descendants(self.process.pid)  # its ssh client
        if _mount_fstype(str(self.mount)) is not None:
            done = subprocess.run(
                ["fusermount3", "-u", str(self.mount)], capture_output=True, timeout=30
            )
            if done.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], timeout=30)
        with contextlib.suppress(subprocess.TimeoutExpired):  # then stopped below
            self.process.wait(timeout=15)
        _stop(self.process, helpers)
        self.process = None

    def remount(self, options: Sequence[str] | None = None) -> None:
        """Unmount and mount again at the same path (sshfs then numbers inodes afresh)."""
        self.unmount()
        self.start(options)


@pytest.fixture
def loopback_sshfs(tmp_path: Path) -> Iterator[SshfsMount]:
    """A live sshfs mount of ``.far`` at ``.mount`` through a private sshd, with caching off
    (:data:`FRESH`); ``.remount(options)`` mounts it again, e.g. with sshfs's defaults (``()``)."""
    why = _sshfs_unavailable()
    if why is not None:
        if IN_CI:
            pytest.fail(f"CI=true but sshfs mounts are unavailable: {why}")
        pytest.skip(f"sshfs mounts unavailable: {why}")
    server = SshServer(tmp_path / "ssh")
    far = tmp_path / "far"
    mount = tmp_path / "mount"
    far.mkdir()
    mount.mkdir()
    server.start()
    sshfs = SshfsMount(server, far.resolve(), mount.resolve())
    try:
        sshfs.start()
        yield sshfs
    finally:
        try:
            sshfs.unmount()
        finally:
            server.stop()
