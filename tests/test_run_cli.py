"""``asyncreload run`` end to end: a real asyncreload process, its command, signals, exit codes.

Orphans are checked by PID: every process asyncreload started is noted (with its start time, so a
reused PID can't pass for it) and must be gone by a deadline.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asyncreload._subreaper import descendants

from .conftest import wait_for
from .helpers import CLI
from .processes import Journal, Tracked, child_command, parent


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run asyncreload on each event loop (the CLI takes it from ASYNCRELOAD_BACKEND)."""
    monkeypatch.setenv("ASYNCRELOAD_BACKEND", request.param)
    return str(request.param)


def run(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncreload", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def starts(journal: Journal, n: int) -> dict[str, Any]:
    wait_for(lambda: len(journal.starts()) >= n, what=f"{n} start(s); journal: {journal.entries()}")
    return journal.starts()[n - 1]


# -- no orphans ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("backend")
def test_after_kill_9_of_asyncreload_no_descendant_survives(
    journal: Journal, watched: Path, tmp_path: Path
) -> None:
    command = child_command(journal, "grandchildren", "ignore-term")
    cli = CLI("run", "--grace", "1", "-w", str(watched), "--", *command, cwd=tmp_path)
    with cli:
        first = starts(journal, 1)
        tree = descendants(cli.process.pid)
        # the guard, the command, and its three grandchildren (one in its group, one that left
        # it with setsid(), one whose parent is gone); the shell used for that one may linger
        tracked = Tracked(tree)
        assert {first["pid"], *first["spawned"]} <= set(tree)
        assert len(tree) >= 5
        cli.process.send_signal(signal.SIGKILL)
        cli.process.wait(timeout=30)
        # the command ignores SIGTERM: the guard waits out the grace period, then SIGKILLs
        wait_for(lambda: not tracked.alive(), timeout=10, what="every descendant to be gone")


# A daemon: setsid() and a double fork (its parent exits), re-parented to the guard.
DAEMON = "setsid sh -c 'sleep 1003 & exit' && exec sleep 1000"


@pytest.mark.parametrize("victim", ["guard", "keeper"])
@pytest.mark.usefixtures("backend")
def test_if_the_guard_or_its_keeper_is_killed_nothing_survives_and_it_is_said_once(
    watched: Path, tmp_path: Path, victim: str
) -> None:
    with CLI("run", "-w", str(watched), "--", "sh", "-c", DAEMON, cwd=tmp_path) as cli:

        def running(argv: bytes) -> list[int]:
            return [p for p in descendants(cli.process.pid) if _cmdline(p) == argv]

        wait_for(lambda: running(b"sleep\x001000\x00") and running(b"sleep\x001003\x00"),
                 what="the command and its daemon")  # fmt: skip
        (command,), (daemon,) = running(b"sleep\x001000\x00"), running(b"sleep\x001003\x00")
        guard = parent(command)
        assert parent(daemon) == guard  # re-parented to the guard, the nearest subreaper
        target = guard if victim == "guard" else parent(guard)
        assert b"guard_program.py" in _cmdline(target)
        tracked = Tracked(descendants(cli.process.pid))
        killed = time.monotonic()
        os.kill(target, signal.SIGKILL)
        wait_for(lambda: daemon not in tracked.alive(), what="the daemon to be gone")
        gone = time.monotonic() - killed
        assert cli.process.wait(timeout=30) == 1
        assert tracked.alive() == []  # gone before asyncreload exits
    print(f"kill -9 of the {victim} -> daemon gone in {gone * 1000:.0f} ms", end=" ")
    errors = [line for line in cli.stderr if "error" in line or "unexpected" in line]
    assert errors == ["asyncreload: error: the guard process exited unexpectedly"], cli.stderr


@pytest.mark.usefixtures("backend")
def test_a_guard_killed_while_no_command_runs_ends_asyncreload_at_once(
    watched: Path, tmp_path: Path
) -> None:
    with CLI("run", "-w", str(watched), "--", "true", cwd=tmp_path) as cli:
        cli.wait_line(lambda s: "command exited with code 0" in s, stream="stderr")
        (guard,) = [
            p
            for p in descendants(cli.process.pid)
            if b"guard_program.py" in _cmdline(p) and parent(p) != cli.process.pid
        ]
        os.kill(guard, signal.SIGKILL)
        assert cli.process.wait(timeout=30) == 1  # not at the next change
    assert cli.stderr[-1] == "asyncreload: error: the guard process exited unexpectedly"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # gone meanwhile


@pytest.mark.usefixtures("backend")
def test_sigint_stops_the_command_gracefully_and_exits_with_its_status(
    journal: Journal, watched: Path, tmp_path: Path
) -> None:
    with CLI("run", "-w", str(watched), "--", *child_command(journal), cwd=tmp_path) as cli:
        first = starts(journal, 1)
        tracked = Tracked([first["pid"]])
        cli.process.send_signal(signal.SIGINT)
        assert cli.process.wait(timeout=30) == 0  # its SIGTERM handler exits with 0
    assert journal.entries("term")
    assert not tracked.alive()


def test_a_second_sigint_kills_at_once(journal: Journal, watched: Path, tmp_path: Path) -> None:
    command = child_command(journal, "stubborn")
    with CLI("run", "--grace", "60", "-w", str(watched), "--", *command, cwd=tmp_path) as cli:
        starts(journal, 1)
        cli.process.send_signal(signal.SIGINT)  # asks nicely: SIGTERM, which it shrugs off
        wait_for(lambda: journal.entries("term"), what="the stop signal to arrive")
        began = time.monotonic()
        cli.process.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
        assert cli.process.wait(timeout=30) == 128 + signal.SIGKILL
        assert time.monotonic() - began < 20  # not the 60 s grace period
    assert not [line for line in cli.stderr if "SIGKILL" in line]  # the user asked for it


@pytest.mark.usefixtures("backend")
def test_a_command_that_outlives_the_grace_period_is_killed_and_the_log_says_so(
    journal: Journal, watched: Path, tmp_path: Path
) -> None:
    command = child_command(journal, "ignore-term")
    with CLI("run", "--grace", "0.5", "-w", str(watched), "--", *command, cwd=tmp_path) as cli:
        pid = starts(journal, 1)["pid"]
        cli.process.send_signal(signal.SIGINT)
        assert cli.process.wait(timeout=30) == 128 + signal.SIGKILL
        line = cli.wait_line(lambda s: "SIGKILL" in s, stream="stderr")
    assert line == (
        f"asyncreload: warning: the command (pid {pid}) was still running 0.5 s after SIGTERM: "
        "killed it with SIGKILL"
    )


@pytest.mark.usefixtures("backend")
def test_when_only_a_process_the_command_started_needs_sigkill_the_warning_names_it(
    watched: Path, tmp_path: Path
) -> None:
    # The command stops on SIGTERM; a process it started in a session of its own ignores it.
    stray = "setsid sh -c 'trap \"\" TERM; exec sleep 1001' & exec sleep 1000"
    with CLI("run", "--grace", "0.5", "-w", str(watched), "--", "sh", "-c", stray) as cli:

        def stray_pid() -> int | None:
            found = [p for p in descendants(cli.process.pid) if _cmdline(p) == b"sleep\x001001\x00"]
            return found[0] if found else None

        pid = wait_for(stray_pid, what="the stray process to start")
        cli.process.send_signal(signal.SIGINT)
        assert cli.process.wait(timeout=30) == 128 + signal.SIGTERM  # the command's status
        line = cli.wait_line(lambda s: "SIGKILL" in s, stream="stderr")
    assert line == (
        f"asyncreload: warning: a process the command started, sleep (pid {pid}), was still "
        "running 0.5 s after SIGTERM: killed it with SIGKILL"
    )


@pytest.mark.usefixtures("backend")
def test_when_its_directory_is_removed_run_keeps_running_and_starts_again_once_it_is_back(
    journal: Journal, watched: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    with CLI("run", "-w", str(watched), "--", *child_command(journal), cwd=project) as cli:
        assert starts(journal, 1)["cwd"] == str(project)
        shutil.rmtree(project)
        (watched / "a.py").write_text("x")
        cli.wait_line(lambda s: "is gone" in s, stream="stderr")
        (watched / "b.py").write_text("x")  # while it is gone: no second line, and not lost
        project.mkdir()
        second = starts(journal, 2)

        def changed() -> set[str]:
            return {c["path"] for start in journal.starts()[1:] for c in start["changes"]}

        wait_for(lambda: str(watched / "b.py") in changed(), what="b.py in a start's changes")
        assert cli.process.poll() is None  # still running
    assert second["cwd"] == str(project)  # the directory by that name, made again
    assert second["restart"] == 1  # the quiet looks while it was gone started nothing
    assert str(watched / "a.py") in changed()
    assert [s for s in cli.stderr if "gone" in s or "back" in s] == [
        f"asyncreload: warning: can't start the command: {project} is gone; "
        "starting it once it is back",
        f"asyncreload: {project} is back: started the command again",
    ]
    assert not [s for s in cli.stderr if "Traceback" in s]


def test_sigterm_exits_with_128_plus_the_signal_that_ended_the_command(
    watched: Path, tmp_path: Path
) -> None:
    with CLI("run", "-w", str(watched), "--", "sleep", "1000", cwd=tmp_path) as cli:
        wait_for(lambda: len(descendants(cli.process.pid)) >= 2, what="the command to start")
        cli.process.send_signal(signal.SIGTERM)
        assert cli.process.wait(timeout=30) == 128 + signal.SIGTERM


@pytest.mark.usefixtures("backend")
def test_sighup_restarts_and_a_change_restarts_with_one_log_line(
    journal: Journal, watched: Path, tmp_path: Path
) -> None:
    with CLI("run", "-w", str(watched), "--", *child_command(journal), cwd=tmp_path) as cli:
        starts(journal, 1)
        cli.process.send_signal(signal.SIGHUP)
        assert starts(journal, 2)["changes"] == []
        (watched / "views.py").write_text("x")
        third = starts(journal, 3)
        assert third["restart"] == 2
        line = cli.wait_line(lambda s: "after 1 change" in s, stream="stderr")
    assert any(s.endswith(" on request") for s in cli.stderr)
    # asyncreload: restarted in 12 ms (stop 4 + start 8) after 1 change: watched/views.py
    assert line.startswith("asyncreload: restarted in ")
    assert " ms (stop " in line
    assert line.endswith("after 1 change: watched/views.py")


def test_on_exit_exit_and_quiet(tmp_path: Path) -> None:
    done = run("run", "-q", "--on-exit", "exit", "--", "sh", "-c", "exit 3", cwd=tmp_path)
    assert done.returncode == 3
    assert done.stderr == ""


def test_shell_and_clear(tmp_path: Path) -> None:
    done = run("run", "--on-exit=exit", "--shell", "--clear", "--", "echo a | tr a b", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == "\x1b[H\x1b[2J\x1b[3Jb\n"


@pytest.mark.parametrize(
    ("words", "printed"),
    [
        (["printf '[%s]\\n' 'a b'"], "[a b]\n"),  # one word: the script
        (["printf", "[%s]\\n", "a b"], "[a]n[b]n"),  # several: one script, joined with spaces
        (["echo", "$ASYNCRELOAD_RESTART", "&&", "echo", "b"], "0\nb\n"),  # each keeps its syntax
    ],
)
def test_with_shell_the_log_line_says_what_runs(
    words: list[str], printed: str, tmp_path: Path
) -> None:
    done = run("run", "--on-exit=exit", "--shell", "--", *words, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed
    line = next(s for s in done.stderr.splitlines() if "; running " in s)
    logged = shlex.split(line.split("; running ", 1)[1])
    assert logged[:2] == ["/bin/sh", "-c"]
    # the command line from the log, run as it is, does what asyncreload's command did
    again = subprocess.run(
        logged, capture_output=True, text=True, cwd=tmp_path, timeout=30,
        env={**os.environ, "ASYNCRELOAD_RESTART": "0"},
    )  # fmt: skip
    assert again.stdout == printed


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--", "no-such-command-x"], 127, "asyncreload: error: command not found: no-such-com"),
        (["--", "./data.txt"], 126, "asyncreload: error: command not executable: ./data.txt"),
        (["--", "./binary"], 126, "command not executable: ./binary (exec format error)"),
        (["--bogus", "--", "true"], 2, "No such option '--bogus'"),
        (["--signal", "SIGNOPE", "--", "true"], 2, "unknown signal: 'SIGNOPE'"),
        (["--grace", "-1", "--", "true"], 2, "Invalid value for '--grace'"),
        (["--on-exit", "later", "--", "true"], 2, "Invalid value for '--on-exit'"),
        (["-w", "/no/such/dir", "--", "true"], 2, "path to watch does not exist: /no/such/dir"),
        ([], 2, "missing COMMAND"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    args: list[str], status: int, message: str, tmp_path: Path
) -> None:
    (tmp_path / "data.txt").write_text("not a program")
    (tmp_path / "binary").write_bytes(b"\x7fELF garbage")
    (tmp_path / "binary").chmod(0o755)
    done = run("run", *args, cwd=tmp_path)
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no traceback


def test_options_after_the_command_belong_to_the_command(tmp_path: Path) -> None:
    done = run("run", "--on-exit", "exit", "sh", "-c", "exit 5", "--bogus", cwd=tmp_path)
    assert done.returncode == 5


# -- configuration -------------------------------------------------------------------------------


def test_pyproject_configures_run_and_the_command_line_wins(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n'
        "[tool.asyncreload]\n"
        "command = \"sh -c 'exit 6'\"\n"
        'on-exit = "exit"\n'
        "grace = 0.5\n"
        'watch = ["src"]\n'
    )
    (tmp_path / "src").mkdir()
    sub = tmp_path / "src"
    done = run("run", cwd=sub)  # found from a subdirectory
    assert done.returncode == 6
    assert f"watching {tmp_path / 'src'};" in done.stderr
    done = run("run", "--", "sh", "-c", "exit 7", cwd=sub)
    assert done.returncode == 7
    done = run("run", "--on-exit", "exit", "-w", ".", "--", "sh", "-c", "exit 8", cwd=tmp_path)
    assert done.returncode == 8
    assert "watching .;" in done.stderr


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("grace = 'soon'", "grace: expected a number"),
        ("grace = nan", "grace: must be a non-negative number of seconds, not nan"),
        ("debounce = -5", "debounce: must be a non-negative number of milliseconds, not -5"),
        ("max-wait = inf", "max-wait: must be a positive number of milliseconds, not inf"),
        ("on_exit = 'later'", 'on_exit: expected "wait", "restart" or "exit"'),
        ("watcher = ['src']", "unknown key 'watcher'"),
        ("signal = 'NOPE'", "unknown signal"),
    ],
)
def test_bad_configuration_is_a_usage_error(table: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.asyncreload]\n{table}\n")
    done = run("run", "--", "true", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("document", ["tool = 3", "[[tool]]\nx = 1", "[tool.black]\nx ="])
def test_an_unreadable_pyproject_stops_run_only_when_it_is_needed(
    document: str, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(document + "\n")
    done = run("run", cwd=tmp_path)  # the command would come from the file: it must be read
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"asyncreload: error: {tmp_path / 'pyproject.toml'}: can't read")
    assert len(done.stderr.strip().splitlines()) == 1
    # The command line says everything: one warning, and the command runs.
    done = run("run", "--on-exit", "exit", "--", "sh", "-c", "exit 9", cwd=tmp_path)
    assert done.returncode == 9, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"asyncreload: warning: {tmp_path / 'pyproject.toml'}: can't read it "
        f"({warnings[0].split('(', 1)[1].rsplit(')', 1)[0]}); ignored"
    ]
    assert "Traceback" not in done.stderr


# -- the terminal --------------------------------------------------------------------------------


class Terminal:
    """``sh -c COMMAND`` under script(1): a real pseudo-terminal, typed into and read from."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        # SIGHUP back to its default: a test run started under nohup (a CI job, say) would pass
        # its "ignore" down to the shell, which then outlives the hang-up of its terminal.
        self.process = subprocess.Popen(
            ["env", "--default-signal=HUP", "script", "-qfec", command, "/dev/null"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )  # fmt: skip
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.seen = b""

    def read_until(self, text: bytes, timeout: float = 20) -> None:
        self.read_match(re.escape(text), timeout)

    def read_match(self, pattern: bytes, timeout: float = 20) -> re.Match[bytes]:
        """Read until what was read matches ``pattern``; the match."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.seen)) is None:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.stdout], [], [], max(left, 0))
            chunk = os.read(self.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                raise AssertionError(f"no {pattern!r} in {self.seen!r}")
            self.seen += chunk
        return found

    def type(self, keys: bytes) -> None:
        self.stdin.write(keys)
        self.stdin.flush()

    def hang_up(self) -> None:
        """Kill script(1): its end of the pseudo-terminal closes, as when a window is closed."""
        self.process.kill()
        self.process.wait(timeout=30)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stdin.close()
        self.stdout.close()


def asyncreload_and_guard(guard: int) -> list[int]:
    """asyncreload's PID, the keeper's (the guard's parent) and the guard's, from the guard's."""
    keeper = parent(guard)
    return [parent(keeper), keeper, guard]


def run_in_a_terminal(tmp_path: Path, code: str) -> Terminal:
    """``asyncreload run`` under script(1), of a Python app: ``code``, then sleep forever."""
    app = tmp_path / "app.py"
    # Short sleeps: a signal that lands after CPython's last check for signals and before a
    # sleep starts is acted on only when the sleep ends (seen in CI: a sleep(1000) outlived the
    # grace period after Ctrl-C and was killed, exit 137).
    app.write_text(code + "import time\nwhile True:\n    time.sleep(0.05)\n")
    inner = f"{sys.executable} -m asyncreload run -- {sys.executable} {app}; echo EXIT=$?"
    return Terminal(inner, tmp_path)


ON_CTRL_C = {
    # Python's default: KeyboardInterrupt, then death by SIGINT, which a shell reports as 130
    "dies": ("", 130),
    # a server that shuts down cleanly on SIGINT (Django's runserver, uvicorn): asyncreload
    # hears of the Ctrl-C from its sentinel in the command's process group, and exits too
    "exits 0": ("import signal, sys\nsignal.signal(2, lambda *_: sys.exit(0))\n", 0),
}


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
@pytest.mark.parametrize("on_ctrl_c", sorted(ON_CTRL_C))
@pytest.mark.usefixtures("backend")
def test_the_command_gets_the_terminal_and_ctrl_c_ends_asyncreload(
    tmp_path: Path, on_ctrl_c: str
) -> None:
    """Under a real pseudo-terminal (script(1)): input() reads what's typed; Ctrl-C ends it all."""
    prelude, status = ON_CTRL_C[on_ctrl_c]
    code = (
        prelude + "import os\n"
        "name = input('name? ')\n"
        "print('hello', name, os.tcgetpgrp(0) == os.getpgrp(), flush=True)\n"
    )
    with run_in_a_terminal(tmp_path, code) as terminal:
        terminal.read_until(b"name? ")
        terminal.type(b"bob\n")
        terminal.read_until(b"hello bob True")  # it read the terminal, as its foreground group
        terminal.type(b"\x03")  # Ctrl-C
        terminal.read_until(b"EXIT=")
        terminal.stdin.close()
        terminal.process.wait(timeout=30)
    assert f"EXIT={status}".encode() in terminal.seen  # asyncreload exits with its status


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
@pytest.mark.parametrize("on_sighup", ["dies", "ignores it"])
@pytest.mark.usefixtures("backend")
def test_when_the_terminal_hangs_up_asyncreload_and_the_command_end(
    tmp_path: Path, on_sighup: str
) -> None:
    """The session leader is ``sh -c``, which does not pass SIGHUP on to asyncreload's job: the
    kernel signals only the foreground group (the command's), where the sentinel hears it."""
    prelude = "import signal\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    code = (prelude if on_sighup == "ignores it" else "") + (
        "import os\nprint(f'<guard {os.getppid()}>', flush=True)\n"
    )
    with run_in_a_terminal(tmp_path, code) as terminal:
        guard = int(terminal.read_match(rb"<guard (\d+)>")[1])
        tracked = Tracked([*asyncreload_and_guard(guard), *descendants(guard)])
        try:
            terminal.hang_up()
            wait_for(lambda: not tracked.alive(), timeout=30, what="everything to end after it")
        finally:
            for pid in tracked.alive():  # failed: leave nothing behind (the guard ends the rest)
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(
    shutil.which("script") is None or shutil.which("bash") is None,
    reason="needs script(1) and bash for a terminal with job control",
)
@pytest.mark.usefixtures("backend")
def test_ctrl_z_stops_the_whole_job_and_fg_gives_the_command_the_terminal_again(
    tmp_path: Path,
) -> None:
    """An interactive bash (job control) under script(1), as in a terminal window."""
    app = tmp_path / "app.py"
    app.write_text(
        "import os, signal\n"
        "signal.signal(signal.SIGCONT, lambda *_: print('<continued>', flush=True))\n"
        "print('<ready>', flush=True)\n"
        "line = input()\n"
        "print('got', line, os.tcgetpgrp(0) == os.getpgrp(), flush=True)\n"
    )
    command = f"{sys.executable} -m asyncreload run --on-exit exit -- {sys.executable} {app}"
    shell = "bash --norc --noprofile -i"
    with Terminal(shell, tmp_path, env={"PS1": "$ ", "HISTFILE": "/dev/null"}) as terminal:
        terminal.type(command.encode() + b"\n")
        terminal.read_until(b"<ready>")
        terminal.type(b"\x1a")  # Ctrl-Z
        terminal.read_until(b"Stopped")  # bash saw its job stop: the prompt is back
        terminal.type(b"fg\n")
        terminal.read_until(b"<continued>")
        terminal.type(b"bob\n")
        terminal.read_until(b"got bob True")  # it reads the terminal, as its foreground group
        terminal.type(b"echo EXIT=$((100 + $?))\n")  # what it prints differs from what's typed
        terminal.read_until(b"EXIT=1")
        terminal.type(b"exit\n")
        terminal.process.wait(timeout=30)
    assert b"EXIT=100" in terminal.seen, terminal.seen  # asyncreload exited with the command's 0


@pytest.mark.skipif(
    shutil.which("script") is None or shutil.which("bash") is None,
    reason="needs script(1) and bash for a terminal with job control",
)
@pytest.mark.usefixtures("backend")
def test_after_bg_a_restart_leaves_the_terminal_to_the_shell(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import os, time\n"
        "print(f'<ready {os.environ[\"ASYNCRELOAD_RESTART\"]} {os.getppid()}>', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    command = f"{sys.executable} -m asyncreload run -w {tmp_path} -- {sys.executable} {app}"
    shell = "bash --norc --noprofile -i"
    with Terminal(shell, tmp_path, env={"HISTFILE": "/dev/null"}) as terminal:
        terminal.type(command.encode() + b"\n")
        guard = int(terminal.read_match(rb"<ready 0 (\d+)>")[1])
        tracked = Tracked(asyncreload_and_guard(guard))
        terminal.type(b"\x1a")  # Ctrl-Z
        terminal.read_until(b"Stopped")
        terminal.type(b"bg\n")
        terminal.read_until(b"&")  # bash: [1]+ ... &
        (tmp_path / "views.py").write_text("x")
        terminal.read_until(b"<ready 1 ")  # restarted in the background
        # The shell still reads the terminal: the new command did not take it.
        terminal.type(b"echo SHELL=$((40 + 2))\n")
        terminal.read_until(b"SHELL=42")
        terminal.type(b"kill %1\n")
        wait_for(lambda: not tracked.alive(), timeout=30, what="asyncreload to end on kill %1")
        terminal.type(b"exit\n")
        terminal.process.wait(timeout=30)
