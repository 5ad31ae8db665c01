"""The command line: real subprocesses, read line by line with deadlines."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from asyncreload._watch import config as _config
from asyncreload.cli import _exit_for_group
from asyncreload.filters import DEFAULT_IGNORE_DIRS, DEFAULT_IGNORE_GLOBS

from .conftest import FuseMount
from .helpers import CLI, DEADLINE


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncreload", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_watch_json_reports_events_and_stat_in_one_run(
    fuse_mount: FuseMount, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    with CLI("watch", "--json", "--poll-interval", "0.1", str(local), str(fuse_mount.mount)) as cli:
        cli.wait_ready()
        (local / "app.py").write_text("x")
        cli.wait_change(local / "app.py", source="events")
        (fuse_mount.backing / "far.py").write_text("x")
        cli.wait_change(fuse_mount.mount / "far.py", source="stat")
    for line in cli.stdout:  # every line is one JSON batch in the documented shape
        for change in json.loads(line)["changes"]:
            assert set(change) == {"change", "path", "source"}
            assert change["change"] in ("added", "modified", "deleted")
            assert change["source"] in ("stat", "events")


def test_watch_readable_output_and_clean_exit_on_sigterm(tmp_path: Path) -> None:
    cli = CLI("watch", cwd=tmp_path)
    cli.wait_ready()
    (tmp_path / "page.html").write_text("x")
    cli.wait_line(lambda s: "page.html" in s and "(events)" in s)
    cli.process.send_signal(signal.SIGTERM)
    # Waited for, not stop()ped: stop() would send a second SIGTERM if the first one's clean
    # shutdown were still under way, and that one ends it at once (exit -15).
    assert cli.process.wait(timeout=DEADLINE) == 0
    cli.stop()
    assert any(s.startswith("[") and "1 change" in s for s in cli.stdout)
    assert "  added     page.html  (events)" in cli.stdout


STRICT_STDOUT = {"PYTHONIOENCODING": "utf-8"}  # no surrogateescape: an unencodable name raises
STRANGE = {b"\xff.py": "$'\\xff.py'", b"a\nb\x1b[31m.py": "$'a\\nb\\e[31m.py'"}
"""Names that are no UTF-8, or that would break the line format and steer the terminal, and how
the text output shows them."""


def _strictly_json(line: str) -> dict[str, object]:
    """``line`` parsed as a strict JSON parser would: no lone surrogates in any string."""
    parsed = json.loads(line)
    for change in parsed["changes"]:
        for value in change.values():
            value.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
    return parsed  # type: ignore[no-any-return]


def test_strange_names_are_escaped_in_text_and_lossless_in_json(
    tmp_path: Path, events_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in STRICT_STDOUT.items():
        monkeypatch.setenv(key, value)
    for as_json in (False, True):
        watched = tmp_path / f"json-{as_json}"
        watched.mkdir()
        with CLI("watch", *(["--json"] if as_json else []), cwd=watched) as cli:
            cli.wait_ready()
            for name in STRANGE:
                with open(os.fsencode(watched) + b"/" + name, "w"):
                    pass
            if events_backend == "watchfiles":
                # It can't take such a name: the target is reported changed and then polled.
                cli.wait_line(lambda s: "isn't UTF-8" in s and "polling it" in s, stream="stderr")
                cli.wait_line(lambda s, top=str(watched): top in s)
            later = os.fsencode(watched) + b"/later-\xfe.py"
            with open(later, "w"):
                pass  # and the watcher goes on, whichever way it now watches
            if as_json:
                cli.wait_line(lambda s: "later-" in s)
                changes = [c for line in cli.stdout for c in _strictly_json(line)["changes"]]
                exact = {base64.b64decode(c["path_bytes"]) for c in changes if "path_bytes" in c}
                assert later in exact
                if events_backend != "watchfiles":
                    assert os.fsencode(watched) + b"/\xff.py" in exact
            else:
                cli.wait_line(lambda s: "  $'later-\\xfe.py'  (" in s)
                if events_backend != "watchfiles":
                    for text in STRANGE.values():
                        cli.wait_line(lambda s, text=text: s.endswith(f"{text}  (events)"))
            assert cli.process.poll() is None, cli.stderr
        assert not [s for s in cli.stdout if "\x1b" in s]
        assert not [s for s in cli.stderr if "Traceback" in s or "\x1b" in s]


def test_explain_shows_a_strange_root_escaped_and_exactly_in_json(
    tmp_path: Path, events_backend: str
) -> None:
    root = os.fsencode(tmp_path) + b"/\xffroot"
    os.mkdir(root)
    env = {**os.environ, **STRICT_STDOUT}
    args = [sys.executable, "-m", "asyncreload", "explain", os.fsdecode(root)]
    text = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"$'{tmp_path}/\\xffroot'  ")
    plan = subprocess.run([*args, "--json"], env=env, capture_output=True, timeout=60, check=True)
    target = json.loads(plan.stdout.decode("utf-8"))["targets"][0]  # strict UTF-8
    assert base64.b64decode(target["path_bytes"]) == root
    assert target["path"] == f"{tmp_path}/\ufffdroot"


def test_watch_into_head_ends_quietly_once_head_is_done(tmp_path: Path) -> None:
    # `asyncreload watch --json | head -n1`: a real pipe into a real head.
    watch = subprocess.Popen(
        [sys.executable, "-m", "asyncreload", "watch", "--json", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        head = subprocess.Popen(["head", "-n1"], stdin=watch.stdout, stdout=subprocess.PIPE)
        assert watch.stdout is not None and watch.stderr is not None
        watch.stdout.close()  # head holds the only reading end now
        assert watch.stderr.readline().startswith("asyncreload: watching ")
        (tmp_path / "app.py").write_text("x")
        first, _ = head.communicate(timeout=DEADLINE)
        assert json.loads(first)["changes"][0]["path"] == str(tmp_path / "app.py")
        # No further change is made: watch notices the closed pipe by itself.
        assert watch.wait(timeout=DEADLINE) == 141  # 128 + SIGPIPE, as `yes | head -n1` ends
        assert watch.stderr.read() == ""  # no traceback, nothing at all
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        watch.stderr.close()  # type: ignore[union-attr]


def test_explain_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before explain writes a line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "asyncreload", "explain", str(tmp_path)],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch", "/no/such/dir"], "path to watch does not exist: /no/such/dir"),
        (["watch", "--poll", "/no/such/mount", "."], "--poll path does not exist"),
        (["watch", "--bogus"], "No such option '--bogus'"),
        (["watch", "--poll-interval", "soon"], "'soon' is not a number"),
        (["watch", "--poll-interval", "0"], "'--poll-interval': must be a positive number of sec"),
        (["watch", "--poll-interval", "nan"], "number of seconds, not nan"),
        (["watch", "--poll-cpu", "0"], "'--poll-cpu': must be a number of percent of one core"),
        (["run", "--poll-cpu", "250", "--", "true"], "above 0 and up to 100, not 250"),
        # in the unit typed: milliseconds, not the seconds they become
        (["watch", "--debounce", "-5"], "non-negative number of milliseconds, not -5"),
        (["watch", "--max-wait", "inf"], "'--max-wait': must be a positive number of millisec"),
        (["run", "--grace", "nan", "--", "true"], "'--grace': must be a non-negative number"),
        (["serve", "--timeout-graceful-shutdown", "inf", "m:app"], "seconds, not inf"),
        (["watch", "--debounce", "5000", "--max-wait", "10"], "must not be shorter than"),
        (["explain", "/no/such/dir"], "does not exist"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asyncreload: error: ")
    assert message in lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ASYNCRELOAD_FORCE_POLLING", "maybe", "expected 1/0, true/false, yes/no"),
        ("ASYNCRELOAD_EVENTS_BACKEND", "fsevents", "expected inotify or watchfiles"),
    ],
)
def test_bad_environment_is_a_usage_error(
    variable: str, value: str, message: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncreload", "watch"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", variable: value,
             **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"asyncreload: error: {variable}={value!r}: {message}"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ASYNCRELOAD_DEBOUNCE", "-5", "must be a non-negative number of milliseconds, not -5"),
        ("ASYNCRELOAD_POLL_INTERVAL", "nan", "must be a positive number of seconds, not nan"),
        (
            "ASYNCRELOAD_POLL_CPU",
            "inf",
            "must be a number of percent of one core, above 0 and up to 100, not inf",
        ),
        ("ASYNCRELOAD_POLL", "/no/such/mount", "path does not exist: /no/such/mount"),
    ],
)
def test_bad_environment_names_the_variable_and_its_unit(
    variable: str, value: str, message: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncreload", "watch"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", variable: value,
             **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"asyncreload: error: {variable} {message}"


README = Path(__file__).parent.parent / "README.md"


def _readme_items(label: str) -> set[str]:
    """The `backticked` names of the README's default-ignores item that starts with ``label``."""
    text = README.read_text()
    start = text.index(f"\n- {label}")
    ends = [text.find(mark, start + 1) for mark in ("\n- ", "\n\n")]
    block = text[start : min(e for e in ends if e != -1)]
    return set(re.findall(r"`([^`]+)`", block))


def test_the_readme_lists_exactly_the_default_ignores() -> None:
    assert _readme_items("directories") == set(DEFAULT_IGNORE_DIRS)
    assert _readme_items("files") == set(DEFAULT_IGNORE_GLOBS)


def test_every_environment_variable_is_in_help_and_readme() -> None:
    watch_help = run("watch", "--help").stdout
    readme = README.read_text()
    for name in _config.ENVIRONMENT:
        assert name in watch_help
        assert f"`{name}=" in readme


def test_help_teaches(tmp_path: Path) -> None:
    top = run("--help").stdout
    assert "asyncreload explain" in top and "watch" in top
    commands = top[top.index("Commands:") :].splitlines()[1:5]
    assert [line.split()[0] for line in commands] == ["explain", "run", "serve", "watch"]
    assert not [line for line in commands if line.endswith("...")]  # whole summaries
    watch_help = run("watch", "--help").stdout
    for option in ("--poll PATH", "--events PATH", "--force-polling", "--poll-interval",
                   "--debounce MS", "--include GLOB", "--exclude GLOB", "--json"):  # fmt: skip
        assert option in watch_help
    assert "ASYNCRELOAD_FORCE_POLLING" in watch_help
    assert "ASYNCRELOAD_EVENTS_BACKEND" in watch_help
    assert run("--version").stdout.startswith("asyncreload, version ")


def test_explain_names_the_backend_and_the_reason(fuse_mount: FuseMount, tmp_path: Path) -> None:
    result = run("explain", str(tmp_path), "--poll", str(fuse_mount.backing))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("/")}
    assert "events" in rows[str(tmp_path)] and "local file system" in rows[str(tmp_path)]
    assert "stat" in rows[str(fuse_mount.mount)]
    assert "FUSE (bindfs) mount at" in rows[str(fuse_mount.mount)]
    assert f"override: --poll {fuse_mount.backing}" in rows[str(fuse_mount.backing)]
    assert "inotify limits: max_user_watches=" in result.stdout
    assert "kernel events read by: " in result.stdout


def test_explain_says_how_late_a_fuse_mount_may_show_a_change(
    fuse_mount: FuseMount, tmp_path: Path
) -> None:
    result = run("explain", str(fuse_mount.mount))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{fuse_mount.mount} ") and "stat" in lines[0]
    assert "may show up to 1 s late" in lines[1]
    assert "-o attr_timeout=0,entry_timeout=0" in lines[1]
    as_json = json.loads(run("explain", "--json", str(fuse_mount.mount), str(tmp_path)).stdout)
    delays = {t["path"]: t["delay"] for t in as_json["targets"]}
    assert "attr_timeout" in delays[str(fuse_mount.mount)]
    assert delays[str(tmp_path)] is None  # events: far-side changes are not looked for


def test_console_script_is_installed() -> None:
    exe = shutil.which("asyncreload")
    if exe is None:
        pytest.skip("asyncreload is not on PATH (package not installed in this environment)")
    assert subprocess.run([exe, "--version"], capture_output=True, timeout=60).returncode == 0


_IN_A_DELETED_DIRECTORY = ["sh", "-c", 'rmdir "$PWD" && exec "$@"', "sh"]
"""A prefix that starts the command in its cwd after that directory was removed."""


@pytest.mark.parametrize(
    "args",
    [
        ["watch"],
        ["watch", "src"],
        ["explain"],
        ["run", "--", "true"],
        ["run", "-w", "{abs}", "--", "/bin/true"],
        ["serve", "main:app"],
        ["serve", "main:app", "--app-dir", "{abs}"],
    ],
)
def test_started_in_a_deleted_directory_each_command_says_so_in_one_line(
    tmp_path: Path, args: list[str]
) -> None:
    # run and serve need the directory even when every path is absolute: run starts the
    # command there, serve resolves its relative options there.
    gone, there = tmp_path / "gone", tmp_path / "there"
    gone.mkdir()
    there.mkdir()
    argv = [a.replace("{abs}", str(there)) for a in args]
    done = subprocess.run(
        [*_IN_A_DELETED_DIRECTORY, sys.executable, "-m", "asyncreload", *argv],
        cwd=gone, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (
        2,
        "asyncreload: error: the current directory no longer exists (it was deleted, or its "
        "file system unmounted): cd somewhere that exists\n",
    )


def test_watch_and_explain_of_absolute_paths_work_in_a_deleted_directory(tmp_path: Path) -> None:
    gone, there = tmp_path / "gone", tmp_path / "there"
    gone.mkdir()
    there.mkdir()
    explained = subprocess.run(
        [*_IN_A_DELETED_DIRECTORY, sys.executable, "-m", "asyncreload", "explain", str(there)],
        cwd=gone, capture_output=True, text=True, timeout=DEADLINE, check=True,
    )  # fmt: skip
    assert explained.stdout.startswith(f"{there}  events")
    gone.mkdir()  # for the next one to remove
    with CLI("watch", str(there), cwd=gone, prefix=_IN_A_DELETED_DIRECTORY) as cli:
        cli.wait_line(lambda s: s.startswith("asyncreload: watching"), stream="stderr")
        (there / "a.py").write_text("x")
        # Shown whole: there is no current directory to show it relative to.
        cli.wait_line(lambda s: s == f"  added     {there / 'a.py'}  (events)")
    assert not [s for s in cli.stderr if "Traceback" in s]


@pytest.mark.parametrize("others", [[], [RuntimeError("a bug")]])
def test_a_ctrl_c_wrapped_in_a_task_group_exits_130_and_nothing_else_is_hidden(
    others: list[BaseException],
) -> None:
    # On trio, a SIGINT that comes before the signal handlers are in place is raised inside a
    # task and reaches main() in a group: it printed that group's traceback (a CI run, py310).
    group = BaseExceptionGroup("from a task group", [KeyboardInterrupt(), *others])
    if others:
        with pytest.raises(BaseExceptionGroup):
            _exit_for_group(group)
    else:
        with pytest.raises(SystemExit) as exited:
            _exit_for_group(group)
        assert exited.value.code == 130


def test_watch_of_its_cwd_sees_the_directory_made_again_after_rm_rf(
    tmp_path: Path, events_backend: str
) -> None:
    # watch's own cwd holds the deleted directory: the kernel says nothing on its watch, and
    # os.getcwd() fails from then on; the path resolved at the start is what is watched.
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("x")
    with CLI("watch", "--poll-interval", "0.05", cwd=project) as cli:
        cli.wait_line(lambda s: s.startswith("asyncreload: watching"), stream="stderr")
        shutil.rmtree(project)
        cli.wait_line(lambda s: s == "  deleted   app.py  (events)")
        project.mkdir()
        (project / "there.py").write_text("x")
        cli.wait_line(lambda s: s == "  added     there.py  (stat)")
        (project / "later.py").write_text("x")
        cli.wait_line(lambda s: s == "  added     later.py  (stat)")
    assert f"asyncreload: warning: {project}: moved or deleted; polling it instead" in cli.stderr
    assert not [s for s in cli.stderr if "Traceback" in s]
