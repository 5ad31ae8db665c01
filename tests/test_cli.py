"""The command line: real subprocesses, read line by line with deadlines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch", "/no/such/dir"], "path to watch does not exist: /no/such/dir"),
        (["watch", "--poll", "/no/such/mount", "."], "--poll path does not exist"),
        (["watch", "--bogus"], "No such option '--bogus'"),
        (["watch", "--poll-interval", "soon"], "'soon' is not a valid float"),
        (["watch", "--poll-interval", "0"], "poll interval must be a positive number"),
        (["watch", "--poll-cpu", "0"], "poll CPU must be a percentage of one core"),
        (["run", "--poll-cpu", "250", "--", "true"], "(above 0, up to 100), not 250.0"),
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


def test_help_teaches(tmp_path: Path) -> None:
    top = run("--help").stdout
    assert "asyncreload explain" in top and "watch" in top
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


def test_console_script_is_installed() -> None:
    exe = shutil.which("asyncreload")
    if exe is None:
        pytest.skip("asyncreload is not on PATH (package not installed in this environment)")
    assert subprocess.run([exe, "--version"], capture_output=True, timeout=60).returncode == 0
