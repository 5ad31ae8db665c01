"""The serve reload race (``_reload`` and the supervisor's standby), with fake workers that answer
as a script says: no processes, no sockets to the app; milliseconds a case. What only real
workers prove (no request ever fails, keep-alive hand-over, the socket kept) is in test_serve.py.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncreload._serve import supervisor as sv
from asyncreload._serve import worker_protocol as protocol
from asyncreload._types import Change, ChangeKind, Source

pytestmark = pytest.mark.anyio


class FakeProcess:
    def __init__(self) -> None:
        self.returncode: int | None = None
        self._exited = anyio.Event()

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class FakeWorker:
    """A worker whose answer to ``go`` is ``script``: "ready", "failed", "stale", "hang" (never
    answers), "die" (exits before it is ready), or "crash" (exits before it was even warm)."""

    count = 0

    def __init__(self, script: str, preload: list[str] | None) -> None:
        FakeWorker.count += 1
        self.pid = 10_000 + FakeWorker.count
        self.script = script
        self.preload = preload
        self.user: list[str] = []
        self.process = FakeProcess()
        self.ready_at: float | None = None
        self.sent: list[dict[str, Any]] = []
        self.killed = self.stopped = False
        self._send: MemoryObjectSendStream[dict[str, Any] | None]
        self._receive: MemoryObjectReceiveStream[dict[str, Any] | None]
        self._send, self._receive = anyio.create_memory_object_stream(10)
        self.started = 0.0
        self.warmed: anyio.Event | None = None
        self.said_standby = False
        if script != "crash":  # "crash": its interpreter fails before it is warm
            self._send.send_nowait(protocol.standby(self.pid))  # its imports are done at once

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["op"] != protocol.GO:
            return
        if self.script == "ready":
            self._send.send_nowait(protocol.ready(self.pid, 0.0))
        elif self.script == "failed":
            self._send.send_nowait(protocol.failed("SyntaxError: invalid syntax"))
        elif self.script == "stale":
            self._send.send_nowait(protocol.stale(["models"]))
        elif self.script in ("die", "crash"):
            self.process.exit(1)
            self._send.send_nowait(None)

    async def receive(self) -> dict[str, Any] | None:
        return await self._receive.receive()

    async def stop(self, grace: float, *, handover: bool = False) -> int:
        self.stopped = True
        return await self.kill()

    async def kill(self) -> int:
        self.killed = True
        self.process.exit(-9)
        self._send.send_nowait(None)
        return -9

    async def close(self) -> None:
        self._send.close()
        self._receive.close()


class Supervisor(sv._Supervisor):
    """The real supervisor, with workers made from ``scripts`` (one each, in order; "oserror":
    the spawn fails as when the app dir is gone)."""

    def __init__(self, config: sv.ServeConfig, sock: socket.socket, scripts: list[str]) -> None:
        super().__init__(config, sock)
        self.scripts = scripts
        self.spawned: list[FakeWorker] = []

    async def spawn(self, preload: list[str], user: list[str]) -> Any:
        script = self.scripts.pop(0) if self.scripts else "ready"
        if script == "oserror":
            raise FileNotFoundError(2, "No such file or directory")
        worker = FakeWorker(script, preload)
        self.spawned.append(worker)
        made.append(worker)
        return worker


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock
    for worker in made:
        worker._send.close()
        worker._receive.close()
    made.clear()


made: list[FakeWorker] = []
"""Every fake worker of the test, closed by the fixture."""


class Changes:
    """The watcher's stream: these batches, then nothing more (it never ends by itself)."""

    def __init__(self, *batches: tuple[Change, ...]) -> None:
        self.batches = list(batches)

    def __aiter__(self) -> Changes:
        return self

    async def __anext__(self) -> tuple[Change, ...]:
        if self.batches:
            return self.batches.pop(0)
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover


def make(tmp_path: Path, sock: socket.socket, *scripts: str, **config: Any) -> Supervisor:
    return Supervisor(sv.ServeConfig(app="main:app", app_dir=str(tmp_path), **config), sock,
                      list(scripts))  # fmt: skip


async def serving_then(supervisor: Supervisor, *scripts: str) -> FakeWorker:
    """Start serving; the workers after that answer as ``scripts`` say. The serving worker."""
    await reload(supervisor, ())
    old = supervisor.serving
    assert isinstance(old, FakeWorker)
    supervisor.standbys.standby = None  # the one warmed at the start would answer "ready"
    supervisor.scripts = list(scripts)
    return old


def edit(tmp_path: Path, name: str = "main.py") -> tuple[Change, ...]:
    return (Change(ChangeKind.MODIFIED, str(tmp_path / name), Source.EVENTS),)


async def reload(supervisor: Supervisor, batch: tuple[Change, ...], changes: Any = None) -> Any:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            newer = await sv._reload(supervisor, tg, batch, changes or Changes())
            tg.cancel_scope.cancel()
    return newer


async def test_the_start_serves_the_standby_and_warms_the_next(
    tmp_path: Path, listening: Any
) -> None:
    supervisor = make(tmp_path, listening)
    assert await reload(supervisor, ()) is None
    first, standby = supervisor.spawned
    assert supervisor.serving is first and first.ready_at is not None
    assert [m["op"] for m in first.sent] == [protocol.GO]
    assert standby.sent == []  # warm, waiting for "go"


async def test_a_reload_serves_the_new_worker_and_stops_the_old_with_a_hand_over(
    tmp_path: Path, listening: Any
) -> None:
    supervisor = make(tmp_path, listening)
    await reload(supervisor, ())
    old = supervisor.serving
    assert await reload(supervisor, edit(tmp_path)) is None
    assert supervisor.serving is not old and old is not None and old.stopped


async def test_the_restart_strategy_stops_the_old_worker_before_the_new_loads(
    tmp_path: Path, listening: Any
) -> None:
    supervisor = make(tmp_path, listening, strategy=sv.ReloadStrategy.RESTART)
    old = await serving_then(supervisor, "hang")  # the next worker never gets ready
    newer = edit(tmp_path, "views.py")
    assert await reload(supervisor, edit(tmp_path), Changes(newer)) == (
        *edit(tmp_path),
        *newer,
    )
    assert old.stopped  # before the new one was asked to load: nothing serves meanwhile


async def test_a_failed_import_keeps_the_old_version_serving(
    tmp_path: Path, listening: Any, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = make(tmp_path, listening)
    old = await serving_then(supervisor, "failed")
    assert await reload(supervisor, edit(tmp_path)) is None
    assert supervisor.serving is old and not old.stopped
    assert supervisor.spawned[-2].killed  # the worker that failed
    assert "SyntaxError" in caplog.text and "old version keeps serving" in caplog.text


async def test_a_standby_that_had_preloaded_a_changed_module_is_replaced_by_a_cold_one(
    tmp_path: Path, listening: Any
) -> None:
    supervisor = make(tmp_path, listening, "stale")
    await reload(supervisor, edit(tmp_path, "models.py"))
    stale, *_, fresh = [w for w in supervisor.spawned if protocol.GO in (m["op"] for m in w.sent)]
    assert stale.killed
    assert fresh.preload == [] and supervisor.serving is fresh


async def test_a_change_during_the_import_supersedes_it(tmp_path: Path, listening: Any) -> None:
    supervisor = make(tmp_path, listening, "hang")
    newer = edit(tmp_path, "views.py")
    assert await reload(supervisor, edit(tmp_path), Changes(newer)) == (*edit(tmp_path), *newer)
    assert supervisor.spawned[0].killed and supervisor.serving is None


async def test_a_worker_that_dies_before_it_is_ready_is_reported(
    tmp_path: Path, listening: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    supervisor = make(tmp_path, listening, "die")
    assert await reload(supervisor, ()) is None
    assert supervisor.serving is None
    assert "exited (code 1) before it was ready" in caplog.text


async def test_a_standby_that_died_before_it_was_warm_is_replaced_once(
    tmp_path: Path, listening: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Started as the app dir's mount died, its interpreter could not import: not the app's
    # fault, so the reload goes on with a fresh worker, once.
    supervisor = make(tmp_path, listening, "crash")
    fresh = await reload(supervisor, ())
    assert fresh is None and supervisor.serving is supervisor.spawned[1]
    twice = make(tmp_path, listening, "crash", "crash")
    assert await reload(twice, ()) is None and twice.serving is None
    assert "exited (code 1) before it was ready" in caplog.text


async def test_a_worker_that_cant_be_started_is_said_for_each_edit_and_the_old_one_serves(
    tmp_path: Path, listening: Any, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = make(tmp_path, listening)
    old = await serving_then(supervisor, "oserror", "oserror", "oserror")
    assert await reload(supervisor, edit(tmp_path)) is None
    assert await reload(supervisor, edit(tmp_path)) is None
    assert supervisor.serving is old
    warnings = [r.getMessage() for r in caplog.records if "can't start a worker" in r.getMessage()]
    assert len(warnings) == 2  # one line for each edit that could not be served
    assert all("the current worker keeps serving" in w for w in warnings)
