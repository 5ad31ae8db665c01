"""The framing both child protocols use, and the words of each (pure functions: no processes)."""

from __future__ import annotations

import pytest

from asyncreload import _wire
from asyncreload._run import guard_protocol
from asyncreload._serve import worker_protocol


def test_a_bad_line_is_dropped_and_what_follows_it_is_read() -> None:
    lines = _wire.Lines()
    lines.feed(b'not json\n[1, 2]\n{"op": "kill"}\n')
    with pytest.raises(ValueError, match="Expecting value"):
        lines.next()
    with pytest.raises(ValueError, match="not a message"):
        lines.next()
    assert lines.next() == guard_protocol.kill()
    assert lines.next() is None


def test_a_line_over_the_limit_is_refused_and_dropped() -> None:
    lines = _wire.Lines(limit=10)
    lines.feed(b'{"op": "spawn", "argv"')
    with pytest.raises(ValueError, match="longer than 10 bytes"):
        lines.next()
    lines.feed(b'{"op":"go"}\n')
    assert lines.next() == {"op": "go"}


def test_each_message_is_one_line_and_reads_back_as_it_was_made() -> None:
    messages = [
        guard_protocol.spawn(["echo", "a\nb"], {"K": "v"}, None, foreground=True),
        guard_protocol.stop(15, 5.0, signalled=False),
        guard_protocol.resume(foreground=False),
        worker_protocol.hello(["sqlalchemy"]),
        worker_protocol.go({"app": "main:app"}, ["/app/main.py"]),
        worker_protocol.stop(handover=True),
        worker_protocol.failed("Traceback...\nSyntaxError"),
    ]
    lines = _wire.Lines()
    wire = b"".join(_wire.encode(m) for m in messages)
    assert wire.count(b"\n") == len(messages)
    for i in range(0, len(wire), 7):  # as a socket may cut it
        lines.feed(wire[i : i + 7])
    read = []
    while (message := lines.next()) is not None:
        read.append(message)
    assert read == messages
