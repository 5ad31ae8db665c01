"""The loop guard: driven by a fake clock (a pure state machine), then end to end: an app that
writes into its own tree under ``serve``, and a command that does under ``run``."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from asyncreload._loopguard import FOLLOW, LIMIT, WINDOW, LoopGuard, Verdict, exclude_glob

from .conftest import wait_for
from .helpers import CLI


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def looping(
    guard: LoopGuard, clock: Clock, path: str, times: int, gap: float = 0.1
) -> list[Verdict]:
    """``path`` changes ``gap`` s after each reload ends: what an app writing it at start does."""
    verdicts = []
    for _ in range(times):
        clock.now += gap
        verdict = guard.admit({path: clock.now})
        if verdict.paths:
            clock.now += 0.05  # the reload
            guard.settled()
        verdicts.append(verdict)
    return verdicts


def new_guard() -> tuple[LoopGuard, Clock]:
    clock = Clock()
    guard = LoopGuard(clock=clock)
    guard.settled()  # the first start
    return guard, clock


def test_a_path_that_keeps_causing_reloads_is_muted_after_the_limit() -> None:
    guard, clock = new_guard()
    verdicts = looping(guard, clock, "/p/gen.py", LIMIT + 3)
    reloads = [v for v in verdicts if v.paths]
    assert len(reloads) == LIMIT
    assert [v.muted for v in verdicts[:LIMIT]] == [()] * (LIMIT - 1) + [("/p/gen.py",)]
    assert guard.muted == {"/p/gen.py"}


def test_the_first_start_counts_as_a_reload_under_way() -> None:
    clock = Clock()
    guard = LoopGuard(clock=clock)
    clock.now += 5  # a slow first start: the change it caused comes before it is done
    assert guard.admit({"/p/gen.py": clock.now}).paths == ("/p/gen.py",)
    guard.settled()
    assert len([v for v in looping(guard, clock, "/p/gen.py", LIMIT) if v.paths]) == LIMIT - 1


def test_changes_long_after_each_reload_never_trip_it() -> None:
    """An editor's autosave every second: each save is a reload, however many."""
    guard, clock = new_guard()
    verdicts = looping(guard, clock, "/p/app.py", 50, gap=FOLLOW + 0.5)
    assert all(v.paths == ("/p/app.py",) for v in verdicts)
    assert guard.muted == set()


def test_what_counts_is_when_the_change_was_made_not_when_it_came() -> None:
    clock = Clock()
    guard = LoopGuard(clock=clock, follow=0.0)  # serve's: only changes made during a reload
    for _ in range(3 * LIMIT):  # a script that saves the moment each reload is done
        guard.settled()
        clock.now += 0.02  # its save comes 20 ms later...
        assert guard.admit({"/p/app.py": clock.now - 0.001}).paths  # ...made after the reload
    for _ in range(LIMIT):  # an app that writes at import: made during the reload
        made = clock.now + 0.01
        clock.now += 0.05
        guard.settled()
        clock.now += 0.02  # seen a moment after the reload was done
        verdict = guard.admit({"/p/gen.py": made})
    assert verdict.muted == ("/p/gen.py",)


def test_reloads_spread_wider_than_the_window_never_trip_it() -> None:
    guard, clock = new_guard()
    verdicts = []
    for _ in range(20):
        clock.now += WINDOW / (LIMIT - 1) + 0.01 - FOLLOW  # just over LIMIT - 1 per window
        verdicts += looping(guard, clock, "/p/gen.py", 1, gap=FOLLOW)
    assert all(v.paths for v in verdicts)


def test_an_edit_elsewhere_resumes_and_the_loop_is_muted_again_quietly() -> None:
    guard, clock = new_guard()
    looping(guard, clock, "/p/gen.py", LIMIT)
    clock.now += 3
    edit = guard.admit({"/p/app.py": clock.now})
    assert edit == Verdict(("/p/app.py",), (), ("/p/gen.py",))
    guard.settled()
    again = looping(guard, clock, "/p/gen.py", 3)
    assert [bool(v.paths) for v in again] == [True, False, False]  # one reload, then muted
    assert [v.muted for v in again] == [(), (), ()]  # said once already
    assert guard.muted == {"/p/gen.py"}


def test_a_batch_with_a_muted_path_and_another_reacts_to_both() -> None:
    guard, clock = new_guard()
    looping(guard, clock, "/p/gen.py", LIMIT)
    clock.now += 2
    verdict = guard.admit({"/p/gen.py": clock.now, "/p/app.py": clock.now})
    assert verdict.paths == ("/p/gen.py", "/p/app.py")


def test_once_the_loop_has_stopped_a_new_one_is_told_again() -> None:
    guard, clock = new_guard()
    assert looping(guard, clock, "/p/gen.py", LIMIT)[-1].muted == ("/p/gen.py",)
    clock.now += WINDOW + 1
    guard.admit({"/p/app.py": clock.now})
    guard.settled()
    assert looping(guard, clock, "/p/gen.py", LIMIT)[-1].muted == ("/p/gen.py",)


def test_paths_out_of_the_window_are_forgotten() -> None:
    guard, clock = new_guard()
    for i in range(1000):  # a checkout of 1,000 files, as one batch each during a reload
        guard.admit({f"/p/{i}.py": clock.now})
    clock.now += WINDOW + 1
    guard.admit({"/p/app.py": clock.now})
    assert list(guard._caused) == ["/p/app.py"]


def test_exclude_glob_is_relative_to_the_deepest_root_and_quoted() -> None:
    assert exclude_glob("/p/app/gen.py", ["/p", "/p/app"]) == "gen.py"
    assert exclude_glob("/p/data/out.txt", ["/p/"]) == "data/out.txt"
    assert exclude_glob("/elsewhere/x.py", ["/p"]) == "x.py"
    assert exclude_glob("/p/it's.py", ["/p"]) == "'it'\"'\"'s.py'"


# -- end to end ---------------------------------------------------------------------------------

WRITES_AT_IMPORT = """\
import os, time
with open("generated.py", "w") as f:  # each start writes a module into the watched tree
    f.write(f"STAMP = {{time.time()!r}}\\n")
VERSION = {version!r}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": VERSION.encode()}})
"""

QUIET = 2.0
"""Seconds without a reload or restart that show the loop stopped (an absence: a fixed wait)."""


def reloads(cli: CLI) -> int:
    return sum("reloaded in" in line or "starting over" in line for line in cli.stderr)


def restarts(cli: CLI) -> int:
    return sum("restarted in" in line for line in cli.stderr)


def muted_then(cli: CLI, counted: Callable[[CLI], int]) -> str:
    """The loop guard's line, once the reaction to the batch that tripped it is logged too."""
    line = cli.wait_line(lambda s: "caused" in s, stream="stderr", timeout=60)
    before = counted(cli)  # the batch that tripped it is reacted to: one more reload
    wait_for(lambda: counted(cli) > before, timeout=30, what="the last reload")
    return line


def test_serve_stops_reloading_on_a_file_the_app_writes_at_import(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(WRITES_AT_IMPORT.format(version="v1"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with CLI("serve", "main:app", "--port", str(port), cwd=tmp_path) as cli:
        line = muted_then(cli, reloads)
        assert line == (
            f"asyncreload: warning: generated.py caused {LIMIT} reloads within {WINDOW:g} s: no "
            "longer reacting to it until something else changes (--reload-exclude generated.py "
            "stops it for good)"
        )
        let_through = reloads(cli)
        time.sleep(QUIET)  # proving an absence: no reload while the app keeps writing
        assert reloads(cli) == let_through
        url = f"http://127.0.0.1:{port}/"
        assert httpx.get(url, timeout=30).text == "v1"
        (tmp_path / "main.py").write_text(WRITES_AT_IMPORT.format(version="v2"))
        wait_for(lambda: httpx.get(url, timeout=30).text == "v2", timeout=30, what="v2")
        time.sleep(QUIET)  # the edit resumed generated.py, whose next write mutes it again
        after_edit = reloads(cli)
        time.sleep(QUIET)  # proving an absence again
        assert reloads(cli) == after_edit
    assert let_through == LIMIT
    assert after_edit - let_through <= 2  # the edit's reload, and at most one for generated.py
    assert sum("caused" in line for line in cli.stderr) == 1  # said once
    print(f"serve: the loop guard let {let_through} reloads through")


def test_run_stops_restarting_on_a_file_the_command_keeps_appending_to(tmp_path: Path) -> None:
    script = "while true; do echo x >> app.out; sleep 0.1; done"
    with CLI("run", "--shell", "--", script, cwd=tmp_path) as cli:
        line = muted_then(cli, restarts)
        assert line == (
            f"asyncreload: warning: app.out caused {LIMIT} restarts within {WINDOW:g} s: no "
            "longer reacting to it until something else changes (--exclude app.out stops it "
            "for good)"
        )
        let_through = restarts(cli)
        time.sleep(QUIET)  # proving an absence: the command runs on, appending, unrestarted
        assert restarts(cli) == let_through
        (tmp_path / "code.py").write_text("")
        cli.wait_line(lambda s: "restarted in" in s and "code.py" in s, stream="stderr")
    assert let_through == LIMIT
    print(f"run: the loop guard let {let_through} restarts through")


def test_an_edit_made_after_the_worker_was_ready_is_not_caused_by_the_reload() -> None:
    # serve: the new worker answers (the user sees the new page and saves again) a moment
    # before the supervisor hears its "ready". Those edits were made against the new code: a
    # quick hand, or a loaded machine that widens that moment, must never get them muted.
    guard = LoopGuard(clock=(clock := Clock()), follow=0.0)
    guard.settled()
    for _ in range(LIMIT + 2):
        clock.now += 0.1
        assert guard.admit({"/p/main.py": clock.now}).paths == ("/p/main.py",)
        ready = clock.now + 0.05  # the worker's "ready"
        clock.now = ready + 0.03  # the edit, made as the new version is seen...
        edit = clock.now
        clock.now += 0.02  # ...and only then does the supervisor hear the worker
        guard.settled(at=ready)
        assert edit > ready
    assert guard.muted == frozenset()


def test_settled_at_never_reaches_into_the_future() -> None:
    guard, clock = new_guard()
    verdicts = []
    for _ in range(LIMIT):
        clock.now += 0.1
        verdicts.append(guard.admit({"/p/out.py": clock.now}))
        guard.settled(at=clock.now + 60)  # a worker whose clock is ahead: now, not then
    assert verdicts[-1].muted == ("/p/out.py",)
