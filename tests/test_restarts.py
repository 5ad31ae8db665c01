"""The restart loop's rules (``_run/restarts.py``), for every order of events: pure, no
processes. What only real processes prove is in test_run.py and test_run_cli.py."""

from __future__ import annotations

from typing import Any

import pytest

from asyncreload._run.restarts import Step, Then, Wake, step

CHANGE = ("/p/app.py",)


def decide(wake: Wake, **state: Any) -> Step:
    given: dict[str, Any] = {
        "running": True,
        "stop_requested": False,
        "restart_requested": False,
        "exit_ends_run": False,
    }
    return step(wake, **{**given, **state})


def test_a_change_restarts() -> None:
    assert decide(Wake(batch=CHANGE)) == Step(Then.RESTART, why="change")


def test_an_exit_and_a_change_in_the_same_instant_restart_once_and_say_the_exit() -> None:
    assert decide(Wake(batch=CHANGE, exited=True)) == Step(Then.RESTART, exited=True, why="change")


def test_an_exit_alone_waits_for_a_change_or_the_backoff() -> None:
    assert decide(Wake(exited=True)) == Step(Then.WAIT, exited=True)
    assert decide(Wake(timed_out=True), running=False) == Step(Then.RESTART, why="exit")


def test_a_restart_asked_for_restarts_and_says_so() -> None:
    assert decide(Wake(), restart_requested=True) == Step(Then.RESTART, why="request")
    # A change that came with it is what the log names.
    assert decide(Wake(batch=CHANGE), restart_requested=True).why == "change"


def test_changes_kept_from_while_the_directory_was_gone_name_the_restart() -> None:
    wake = Wake(timed_out=True)
    assert decide(wake, running=False, changes_pending=True).why == "change"


@pytest.mark.parametrize("also", [{}, {"batch": CHANGE}, {"exited": True}, {"suspended": True}])
def test_ctrl_c_wins_over_everything_that_came_with_it(also: dict[str, Any]) -> None:
    # Ctrl-C reached the command already: it is not signalled again, and a Ctrl-Z in the same
    # instant doesn't stop our job on the way out.
    assert decide(Wake(interrupted=True, **also)) == Step(
        Then.FINISH, had_child=True, signalled=True
    )


def test_a_hang_up_still_sends_the_stop_signal() -> None:
    # A server run with nohup in mind may ignore the SIGHUP.
    assert decide(Wake(interrupted=True), hangup=True).signalled is False


def test_an_exit_the_terminal_caused_finishes_without_a_second_signal() -> None:
    wake = Wake(exited=True, batch=CHANGE)
    assert decide(wake, by_terminal=True) == Step(Then.FINISH, had_child=True, signalled=True)


def test_with_on_exit_exit_the_commands_exit_ends_the_run_even_with_a_change() -> None:
    assert decide(Wake(exited=True, batch=CHANGE), exit_ends_run=True) == Step(Then.EXIT)
    # Without an exit, on_exit=exit restarts on changes like the others.
    assert decide(Wake(batch=CHANGE), exit_ends_run=True).then is Then.RESTART


def test_a_stop_asked_for_wins_over_a_change() -> None:
    assert decide(Wake(batch=CHANGE), stop_requested=True) == Step(Then.FINISH, had_child=True)


def test_a_stop_as_the_command_exits_returns_no_returncode_but_says_the_exit() -> None:
    assert decide(Wake(exited=True), stop_requested=True) == Step(
        Then.FINISH, exited=True, had_child=False
    )


def test_ctrl_z_is_dealt_with_first_and_the_rest_still_applies() -> None:
    assert decide(Wake(suspended=True)) == Step(Then.WAIT, suspend=True)
    assert decide(Wake(suspended=True, batch=CHANGE)) == Step(
        Then.RESTART, suspend=True, why="change"
    )
    assert decide(Wake(suspended=True), stop_requested=True) == Step(
        Then.FINISH, suspend=True, had_child=True
    )
