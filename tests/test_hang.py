"""Mounts that hang: a real bindfs mount whose daemon is SIGSTOPped, the way an sshfs or NFS server
that stops answering looks from here (a stat blocks in the kernel until it answers); and a real
sshfs mount whose sftp server is SIGSTOPped, the way a hung sshfs server really looks: sshfs has
taken the request and waits for the server, so the kernel lets no signal end the wait.

The daemon is always SIGCONTed in the fixture's teardown, before the mount is unmounted, and by
a watchdog at the latest :data:`MAX_STOP` after it stopped. While it is stopped, the test itself
never touches the mount point: only the backing directory.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import anyio
import pytest

from asyncreload._watch.poll import Sweeper
from asyncreload.filters import PathFilter

from .conftest import FuseMount, wait_for
from .helpers import CLI, DEADLINE, eventually
from .processes import Journal, child_command, is_zombie

EXIT_SOON = 5.0
"""SIGINT to exit, at most (the promise is about a second; CI machines are 2 noisy cores)."""


MAX_STOP = 90.0
"""The longest a daemon stays stopped, whatever the test does: a watchdog thread continues it then.
A process whose request the daemon had already taken when it stopped waits for the answer in a
way no signal ends (not SIGKILL, not the test timeout's SIGALRM), so without the watchdog such a
wait in the test process, or behind a pipe it reads, would hold the whole run."""


@dataclass
class Hang:
    """The FUSE daemon of a mount, stopped and continued on request (and by a watchdog)."""

    pid: int
    stopped_at: float | None = None
    watchdog: threading.Timer | None = None

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped_at = time.monotonic()
        self.watchdog = threading.Timer(MAX_STOP, os.kill, (self.pid, signal.SIGCONT))
        self.watchdog.daemon = True
        self.watchdog.start()

    def resume(self) -> float:
        """Continue the daemon; how long it was stopped."""
        self.release()
        assert self.stopped_at is not None
        return time.monotonic() - self.stopped_at

    def release(self) -> None:
        """Continue the daemon, stopped or not, and call off the watchdog."""
        os.kill(self.pid, signal.SIGCONT)
        if self.watchdog is not None:
            self.watchdog.cancel()


def _always_released(h: Hang) -> Iterator[Hang]:
    try:
        yield h
    finally:
        h.release()  # always: a stopped daemon can't even be unmounted
        CLI.reap_leftovers()  # a CLI that could not exit while the daemon was stopped


@pytest.fixture
def hang(fuse_mount: FuseMount) -> Iterator[Hang]:
    assert fuse_mount.process is not None
    yield from _always_released(Hang(fuse_mount.process.pid))


@pytest.fixture
def hung_server(sshfs_mount: FuseMount) -> Iterator[Hang]:
    """The sftp server behind a real sshfs mount: stopped, sshfs holds every request it took."""
    yield from _always_released(Hang(sshfs_mount.server_pid))


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run asyncreload on each event loop (the CLI takes it from ASYNCRELOAD_BACKEND)."""
    monkeypatch.setenv("ASYNCRELOAD_BACKEND", request.param)
    return str(request.param)


def blocked_in_fuse(pid: int) -> bool:
    """True if a thread of ``pid`` waits for a FUSE daemon's answer (read from its wchan)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/wchan") as f:
                if "request_wait_answer" in f.read():
                    return True
        except OSError:
            continue
    return False


def catches(pid: int, signum: int) -> bool:
    """True once ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command_line(
    command: str, local: Path, mount: Path, journal: Journal, app_dir: Path
) -> tuple[str, ...]:
    if command == "watch":
        return ("watch", "--poll-interval", "0.1", str(local), str(mount))
    if command == "run":
        return ("run", "-w", str(local), "-w", str(mount), "--", *child_command(journal))
    (app_dir / "main.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'lifespan':\n"
        "        while (await receive())['type'] != 'lifespan.shutdown':\n"
        "            await send({'type': 'lifespan.startup.complete'})\n"
        "        await send({'type': 'lifespan.shutdown.complete'})\n"
    )
    return (
        "serve", "main:app", "--port", str(free_port()), "--app-dir", str(app_dir),
        "--reload-dir", str(app_dir), "--reload-dir", str(mount), "--poll-interval", "0.1",
    )  # fmt: skip


def ready_line(command: str) -> Callable[[str], bool]:
    return {
        "watch": lambda s: s.startswith("asyncreload: watching "),
        "run": lambda s: "asyncreload: watching " in s and "; running " in s,
        "serve": lambda s: "serving main:app at http://" in s,
    }[command]


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("when", ["at start", "mid-sweep"])
@pytest.mark.parametrize("command", ["watch", "run", "serve"])
def test_ctrl_c_ends_it_within_a_second_while_a_mount_hangs(
    command: str, when: str, hang: Hang, fuse_mount: FuseMount, tmp_path: Path, journal: Journal
) -> None:
    local, app_dir = tmp_path / "local", tmp_path / "app"
    local.mkdir()
    app_dir.mkdir()
    args = command_line(command, local, fuse_mount.mount, journal, app_dir)
    if when == "at start":
        hang.stop()  # the planning stat of the mount, then its first sweep, block
    with CLI(*args, cwd=tmp_path) as cli:
        if when == "mid-sweep":
            cli.wait_line(ready_line(command), stream="stderr")
            hang.stop()
        wait_for(lambda: blocked_in_fuse(cli.process.pid), what="a thread stuck in the mount")
        # serve stops its workers first: uvicorn's graceful shutdown, 3 s at most by default.
        limit = EXIT_SOON + (3.0 if command == "serve" else 0.0)
        took, code, _ = interrupt(cli, hang, limit)
    assert took < limit, f"{command} took {took:.1f} s to exit after SIGINT"
    assert code in (0, 130), cli.stderr
    assert not [line for line in cli.stderr if "Traceback" in line], cli.stderr
    print(f"{command} {when}: SIGINT to exit (or to the line saying why not) {took:.2f} s")


def signal_once_caught(cli: CLI, signum: int) -> tuple[float, int]:
    """Send ``signum`` once ``cli`` handles it (before, it would kill outright): seconds to the
    exit, and the exit code."""
    name = signal.Signals(signum).name
    wait_for(lambda: catches(cli.process.pid, signum), what=f"a {name} handler")
    began = time.monotonic()
    cli.process.send_signal(signum)
    code = cli.process.wait(timeout=DEADLINE)
    return time.monotonic() - began, code


def held_by_the_kernel(pid: int) -> bool:
    """True if ``pid`` has ended but for a thread the kernel keeps waiting for a FUSE answer."""
    return is_zombie(pid) and blocked_in_fuse(pid)


class Held(NamedTuple):
    line: str
    """The line that said why."""
    exit_after_resume: float
    """Seconds from continuing the daemon to the exit."""


class Interrupted(NamedTuple):
    took: float
    """Seconds from SIGINT to the exit, or to the line saying why it can't exit yet."""
    code: int
    held: Held | None
    """What the kernel's hold looked like, if the process was held."""


def interrupt(cli: CLI, hang: Hang, limit: float) -> Interrupted:
    """SIGINT to ``cli`` while ``hang`` is stopped: the process must exit, or say why it can't
    and then exit as soon as the daemon answers.

    A request the daemon took just before it stopped can't be abandoned by any means: the kernel
    holds the process until it is answered. A stopped bindfs rarely holds one (it answers in
    microseconds); a hung sshfs server holds every one. Either way the promise is the same:
    Ctrl-C is obeyed within ``limit``, or the process says in one line what it waits for."""
    began = time.monotonic()
    cli.process.send_signal(signal.SIGINT)
    deadline = began + limit + DEADLINE
    while (code := cli.process.poll()) is None and time.monotonic() < deadline:
        if held_by_the_kernel(cli.process.pid):
            line = cli.wait_line(lambda s: "asyncreload: warning: exiting once " in s,
                                 stream="stderr")  # fmt: skip
            took = time.monotonic() - began
            hang.resume()
            resumed = time.monotonic()
            code = cli.process.wait(timeout=DEADLINE)
            return Interrupted(took, code, Held(line, time.monotonic() - resumed))
        time.sleep(0.01)  # the poll interval of a wait with a deadline, as in wait_for
    assert code is not None, f"still running {limit + DEADLINE:.0f} s after SIGINT"
    return Interrupted(time.monotonic() - began, code, None)


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("when", ["at start", "mid-sweep"])
@pytest.mark.parametrize("command", ["watch", "run", "serve"])
def test_ctrl_c_on_a_hung_sshfs_server_says_what_it_waits_for_and_exits_when_it_answers(
    command: str,
    when: str,
    hung_server: Hang,
    sshfs_mount: FuseMount,
    tmp_path: Path,
    journal: Journal,
) -> None:
    local, app_dir = tmp_path / "local", tmp_path / "app"
    local.mkdir()
    app_dir.mkdir()
    mount = sshfs_mount.mount
    if when == "at start":
        hung_server.stop()
    with CLI(*command_line(command, local, mount, journal, app_dir), cwd=tmp_path) as cli:
        if when == "mid-sweep":
            cli.wait_line(ready_line(command), stream="stderr")
            hung_server.stop()
        wait_for(lambda: blocked_in_fuse(cli.process.pid), what="a thread stuck in the mount")
        limit = EXIT_SOON + (3.0 if command == "serve" else 0.0)
        took, code, held = interrupt(cli, hung_server, limit)
    # sshfs took the request: the process ends all but that thread, and says why it waits.
    assert held is not None, f"{command} exited though sshfs held its request: {cli.stderr}"
    line = held.line
    assert took < limit, f"{command}: {took:.1f} s from SIGINT to the line saying why"
    # The mount's path where the thread that waits is its sweep's (the start's plan reads all).
    what = str(mount) if when == "mid-sweep" else "the hung mount"
    assert line.startswith(f"asyncreload: warning: exiting once {what} answers: "), line
    assert code in (0, 130), cli.stderr
    assert not [s for s in cli.stderr if "Traceback" in s], cli.stderr
    print(f"{command} {when}: said why in {took:.2f} s; exited {held.exit_after_resume:.2f} s "
          "after the server was continued")  # fmt: skip


@pytest.mark.usefixtures("backend")
def test_sigterm_ends_watch_while_the_mount_hangs_at_start(
    hang: Hang, fuse_mount: FuseMount, tmp_path: Path
) -> None:
    hang.stop()
    with CLI("watch", str(fuse_mount.mount), cwd=tmp_path) as cli:
        wait_for(lambda: blocked_in_fuse(cli.process.pid), what="a thread stuck in the mount")
        took, code = signal_once_caught(cli, signal.SIGTERM)
        assert code in (0, 130)
        assert took < EXIT_SOON


@pytest.mark.usefixtures("backend")
def test_a_hung_mount_warns_once_delays_no_other_path_and_is_polled_at_pace_when_back(
    hang: Hang, fuse_mount: FuseMount, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    mount = fuse_mount.mount
    args = ("watch", "--json", "--poll-interval", "0.1", "--poll", str(local), str(local))
    with CLI(*args, str(mount), cwd=tmp_path) as cli:
        cli.wait_ready()
        hang.stop()
        wait_for(lambda: blocked_in_fuse(cli.process.pid), what="a sweep stuck in the mount")
        # Another polled path is swept by threads of its own: reported during the hang.
        began = time.monotonic()
        (local / "during.py").write_text("x")
        cli.wait_change(local / "during.py", source="stat")
        local_latency = time.monotonic() - began
        # ... and so is its hot set (the files changed last, checked between its sweeps).
        seen = len(cli.stdout)
        (local / "during.py").write_text("again")
        cli.wait_line(lambda s: cli.stdout.index(s) >= seen and "during.py" in s)
        warning = cli.wait_line(lambda s: "has not answered for" in s, stream="stderr")
        assert warning == (
            f"asyncreload: warning: {mount} has not answered for 5 s: the server may be down; "
            "watching everything else, and polling it again as soon as it answers"
        )
        hung_for = hang.resume()
        cli.wait_line(lambda s: s == f"asyncreload: {mount} answers again; polling it",
                      stream="stderr")  # fmt: skip
        wait_for(lambda: not blocked_in_fuse(cli.process.pid), what="the sweep to go on")
        # The hang's wall time is not work: the next sweep comes at the normal pace, not a pause
        # as long as the hang.
        began = time.monotonic()
        (fuse_mount.backing / "after.py").write_text("x")
        cli.wait_change(mount / "after.py", source="stat")
        after_latency = time.monotonic() - began
    assert local_latency < 3.0, local_latency
    assert hung_for >= 5.0
    assert after_latency < 2.5, f"{after_latency:.1f} s after a {hung_for:.1f} s hang"
    assert sum("has not answered" in s for s in cli.stderr) == 1, cli.stderr
    print(f"local path during the hang: {local_latency:.2f} s; after it: {after_latency:.2f} s")


@pytest.mark.anyio
async def test_a_cancelled_sweep_leaves_no_thread_behind_but_the_one_stuck_in_the_mount(
    hang: Hang, fuse_mount: FuseMount
) -> None:
    for i in range(8):
        (fuse_mount.backing / f"d{i}").mkdir()
        (fuse_mount.backing / f"d{i}" / "f.py").write_text("x")
    sweeper = Sweeper(str(fuse_mount.mount), PathFilter())
    first = await sweeper.sweep_parallel(None, workers=4)
    name = f"sweep {fuse_mount.mount}"

    def sweep_threads() -> int:
        return sum(t.name == name for t in threading.enumerate())

    hang.stop()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(sweeper.sweep_parallel, first.snapshot, workers=4))
        await eventually(lambda: blocked_in_fuse(os.getpid()), what="a sweep thread stuck")
        tg.cancel_scope.cancel()
    # The thread in the mount is abandoned; the ones waiting for work must not wait for ever.
    await eventually(lambda: sweep_threads() <= 1, what="the idle sweep threads to leave",
                     detail=lambda: f"{sweep_threads()} left")  # fmt: skip
    hang.resume()
    await eventually(lambda: sweep_threads() == 0, what="the stuck one to finish")


def test_serve_answers_and_reloads_while_a_reload_dir_on_sshfs_hangs(
    hung_server: Hang, sshfs_mount: FuseMount, tmp_path: Path, journal: Journal
) -> None:
    """Neither the supervisor (making a worker's spec) nor a worker (sorting its modules into
    the user's and the rest) may touch a watched directory: it may be the mount that hangs."""
    import httpx

    local, app_dir = tmp_path / "local", tmp_path / "app"
    local.mkdir()
    app_dir.mkdir()
    args = command_line("serve", local, sshfs_mount.mount, journal, app_dir)
    port = args[args.index("--port") + 1]
    app = app_dir / "main.py"

    def version(n: int) -> str:
        return (
            app.read_text().split("\n# version")[0]
            + "\n# version\n"
            + "    if scope['type'] == 'http':\n"
            + "        await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
            + f"        await send({{'type': 'http.response.body', 'body': b'v{n}'}})\n"
        )

    app.write_text(version(1))
    with CLI(*args, cwd=tmp_path) as cli, httpx.Client(timeout=DEADLINE) as client:
        cli.wait_line(ready_line("serve"), stream="stderr")
        hung_server.stop()
        wait_for(lambda: blocked_in_fuse(cli.process.pid), what="a sweep stuck in the mount")
        assert client.get(f"http://127.0.0.1:{port}/").text == "v1"
        app.write_text(version(2))

        def reloaded() -> bool:
            try:
                return client.get(f"http://127.0.0.1:{port}/").text == "v2"
            except httpx.HTTPError:
                return False

        wait_for(reloaded, timeout=DEADLINE, what="the new code to answer during the hang")
        hung_server.resume()


@pytest.mark.usefixtures("backend")
def test_explain_on_a_hung_mount_says_why_it_waits_and_ends_on_ctrl_c(
    hang: Hang, fuse_mount: FuseMount, tmp_path: Path
) -> None:
    hang.stop()
    with CLI("explain", str(fuse_mount.mount), cwd=tmp_path) as cli:
        wait_for(lambda: blocked_in_fuse(cli.process.pid), what="a thread stuck in the mount")
        line = cli.wait_line(lambda s: "no answer yet" in s, stream="stderr")
        took, code = signal_once_caught(cli, signal.SIGINT)
    assert line == (
        "asyncreload: warning: no answer yet after 5 s: a path may lie on a mount whose server "
        "does not answer (a hung sshfs or NFS server); Ctrl-C ends this"
    )
    assert took < EXIT_SOON, f"{took:.1f} s from SIGINT to exit"
    assert code == 130, cli.stderr
    assert not [s for s in cli.stderr if "Traceback" in s], cli.stderr
    assert cli.stdout == []
