"""``serve``: real worker processes, real sockets, real HTTP requests through reloads."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from asyncreload._serve.supervisor import ReloadStrategy, ServeConfig, ServeError, serve_async

from .conftest import FuseMount, wait_for
from .helpers import CLI, eventually
from .processes import children, is_zombie

ASGI_APP = """\
import os
VERSION = {version!r}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    if scope["path"] == "/stream":
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        while True:  # an endless stream (SSE-like): only a kill ends it
            await send({{"type": "http.response.body", "body": b"tick\\n", "more_body": True}})
            import asyncio
            await asyncio.sleep(0.05)
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": body}})
"""

FLASK_APP = """\
import os
from flask import Flask
VERSION = {version!r}
app = Flask(__name__)

@app.get("/")
def index():
    return f"{{VERSION}} {{os.getpid()}}"
"""

pytestmark = pytest.mark.anyio


def spawning(pidfile: Path) -> str:
    """App code that starts a process which double-forks out of the worker's process group (a
    background job started by a shell), and writes its PID to ``pidfile``."""
    command = f"setsid sleep 1000 >/dev/null 2>&1 & echo $! > {pidfile}"
    return f"import subprocess\nsubprocess.run(['sh', '-c', {command!r}], check=True)\n"


def write_app(directory: Path, version: str, template: str = ASGI_APP) -> None:
    # Written whole and renamed into place, as editors do: a worker never imports half a file.
    tmp = directory / ".main.py.tmp"
    tmp.write_text(template.format(version=version))
    tmp.replace(directory / "main.py")


@asynccontextmanager
async def serving(app_dir: Path, app: str = "main:app", **options: object) -> AsyncIterator[str]:
    options = {"port": 0, **options}  # any free port, unless one is given
    config = ServeConfig(app=app, app_dir=str(app_dir), **options)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        where = await tg.start(serve_async, config)
        try:
            yield where
        finally:
            tg.cancel_scope.cancel()


async def get(client: httpx.AsyncClient, where: str, path: str = "/") -> str:
    # A new connection each time ("Connection: close"): what is tested is that the listening
    # socket never refuses, not how a client copes with a keep-alive connection closing.
    response = await client.get(where + path, headers={"Connection": "close"})
    response.raise_for_status()
    return response.text


async def wait_version(
    client: httpx.AsyncClient, where: str, version: str, timeout: float = 30
) -> float:
    """Seconds until the app answers with ``version`` (failing after ``timeout``)."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        while not (await get(client, where)).startswith(version + " "):
            pass
    return time.monotonic() - start


@pytest.mark.parametrize("strategy", [ReloadStrategy.OVERLAP, ReloadStrategy.RESTART])
async def test_continuous_requests_through_20_reloads_never_fail(
    tmp_path: Path, strategy: ReloadStrategy
) -> None:
    # The restart strategy too: its old worker stops (no hand-over), and a request it had just
    # accepted must still be answered, not cut by uvicorn's shutdown.
    write_app(tmp_path, "v0")
    answers: list[str] = []
    errors: list[BaseException] = []
    async with (
        serving(tmp_path, strategy=strategy) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):

        async def hammer() -> None:
            while True:
                try:
                    answers.append((await get(client, where)).split()[0])
                except httpx.HTTPError as e:
                    errors.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(hammer)
            for i in range(1, 21):
                write_app(tmp_path, f"v{i}")
                await wait_version(client, where, f"v{i}")
            tg.cancel_scope.cancel()
    assert errors == []
    assert set(answers) <= {f"v{i}" for i in range(21)}
    assert len(answers) > 40


async def test_a_syntax_error_keeps_the_old_version_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_app(tmp_path, "good")
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as client:
        assert (await get(client, where)).startswith("good ")
        (tmp_path / "main.py").write_text("def broken(:\n")
        await eventually(lambda: any("failed to load" in r.getMessage() for r in caplog.records))
        failure = next(r.getMessage() for r in caplog.records if "failed to load" in r.getMessage())
        assert "SyntaxError" in failure
        assert "main.py" in failure
        assert "importlib" not in failure  # the short traceback: the user's frames only
        for _ in range(5):
            assert (await get(client, where)).startswith("good ")
        write_app(tmp_path, "fixed")
        took = await wait_version(client, where, "fixed")
    assert took < 5  # typically ~0.1 s; the bound is for a loaded CI machine


async def test_an_edit_at_the_same_size_in_the_same_second_is_not_served_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # the workers cache bytecode
    write_app(tmp_path, "s1")
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as client:
        assert (await get(client, where)).startswith("s1 ")  # main.py's bytecode is cached now
        before = (tmp_path / "main.py").stat()
        write_app(tmp_path, "s2")
        os.utime(tmp_path / "main.py", ns=(before.st_atime_ns, before.st_mtime_ns))
        assert (tmp_path / "main.py").stat().st_size == before.st_size
        await wait_version(client, where, "s2")


async def test_an_open_stream_does_not_block_the_reload(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    async with (
        serving(tmp_path, timeout_graceful_shutdown=1.0) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        old_pid = int((await get(client, where)).split()[1])
        async with client.stream("GET", where + "/stream") as stream:
            lines = stream.aiter_lines()
            assert await lines.__anext__() == "tick"
            start = time.monotonic()
            write_app(tmp_path, "v2")
            await wait_version(client, where, "v2")

            def old_worker_gone() -> bool:
                return not os.path.exists(f"/proc/{old_pid}") or is_zombie(old_pid)

            await anyio.to_thread.run_sync(lambda: wait_for(old_worker_gone, timeout=20))
            stopped_after = time.monotonic() - start
            with pytest.raises(httpx.HTTPError):  # the stream was cut when its worker was killed
                async for _ in lines:
                    pass
    assert stopped_after < 1.0 + 1.0 + 5  # graceful timeout + a second of slack + CI headroom


async def test_a_change_during_a_slow_import_supersedes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncreload")
    app_dir, marker = tmp_path / "app", tmp_path / "importing"  # the marker is not watched
    app_dir.mkdir()
    write_app(app_dir, "v1")
    # An import that takes a minute (a big project's), saying when it has begun and in which pid.
    slow = f"import os, pathlib, time\npathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
    slow += "time.sleep(60)\n"
    async with serving(app_dir) as where, httpx.AsyncClient(timeout=30) as client:
        assert (await get(client, where)).startswith("v1 ")
        write_app(app_dir, "slow", slow + ASGI_APP)
        await eventually(lambda: marker.exists() and marker.read_text(), what="the slow import")
        slow_pid = int(marker.read_text())
        assert (await get(client, where)).startswith("v1 ")  # the old version serves meanwhile
        write_app(app_dir, "v2")
        took = await wait_version(client, where, "v2")
        await eventually(lambda: is_zombie(slow_pid), what="the superseded worker's end")
    assert took < 20  # not after the slow import's minute: typically ~0.1 s
    assert any("starting over" in r.getMessage() for r in caplog.records)


async def test_what_the_app_started_ends_with_its_worker_on_reload(tmp_path: Path) -> None:
    app_dir, pidfile = tmp_path / "app", tmp_path / "spawned.pid"
    app_dir.mkdir()
    write_app(app_dir, "v1", spawning(pidfile) + ASGI_APP)
    async with serving(app_dir) as where, httpx.AsyncClient(timeout=30) as client:
        assert (await get(client, where)).startswith("v1 ")
        spawned = int(pidfile.read_text())
        assert not is_zombie(spawned)
        write_app(app_dir, "v2")
        await wait_version(client, where, "v2")
        await eventually(lambda: is_zombie(spawned), what="the old worker's background job to end")


async def test_restart_strategy_reloads_too(tmp_path: Path) -> None:
    write_app(tmp_path, "a")
    async with (
        serving(tmp_path, strategy=ReloadStrategy.RESTART) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        assert (await get(client, where)).startswith("a ")
        write_app(tmp_path, "b")
        await wait_version(client, where, "b")


async def test_a_flask_app_is_served_as_wsgi_and_reloads(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    write_app(tmp_path, "f1", FLASK_APP)
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as client:
        assert (await get(client, where)).startswith("f1 ")
        write_app(tmp_path, "f2", FLASK_APP)
        await wait_version(client, where, "f2")


@pytest.mark.parametrize("template", [ASGI_APP, FLASK_APP], ids=["asgi", "flask"])
async def test_an_app_on_the_backing_side_of_a_fuse_mount_reloads(
    fuse_mount: FuseMount, template: str
) -> None:
    if template is FLASK_APP:
        pytest.importorskip("flask")
    write_app(fuse_mount.backing, "far1", template)
    async with (
        serving(fuse_mount.mount, watcher={"poll_interval": 0.1}) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        assert (await get(client, where)).startswith("far1 ")
        write_app(fuse_mount.backing, "far2", template)  # the far side: no inotify event
        await wait_version(client, where, "far2")


async def test_an_app_that_fails_at_start_comes_up_when_fixed(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("raise RuntimeError('not yet')\n")
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as client:
        write_app(tmp_path, "up")
        await wait_version(client, where, "up")


async def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    write_app(tmp_path, "x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ServeConfig(app="main:app", app_dir=str(tmp_path), port=port)
        with pytest.raises(ServeError, match=f"127.0.0.1:{port} is in use"):
            await serve_async(config)


def test_the_worker_program_run_by_hand_says_how_it_is_run() -> None:
    # It is started by serve with two inherited descriptors; by hand it gave an IndexError.
    done = subprocess.run(
        [sys.executable, "-m", "asyncreload._serve.worker_program"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m asyncreload._serve.worker_program CONTROL_FD")
    assert "Traceback" not in done.stderr


def test_cli_serves_and_kill_9_leaves_no_worker(tmp_path: Path) -> None:
    pidfile = tmp_path.parent / f"{tmp_path.name}.pid"  # outside the watched directory
    write_app(tmp_path, "cli1", spawning(pidfile) + ASGI_APP)
    with socket.socket() as s:  # a free port for the CLI (it prints the URL too)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = CLI("serve", "main:app", "--port", str(port), "--app-dir", str(tmp_path), cwd=tmp_path)
    try:
        cli.wait_line(
            lambda s: f"serving main:app at http://127.0.0.1:{port}" in s, stream="stderr"
        )
        text = httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text
        assert text.startswith("cli1 ")
        worker = int(text.split()[1])
        standby = children(cli.process.pid) - {worker}
        assert standby  # the warm standby is there too
        spawned = int(pidfile.read_text())
        assert not is_zombie(spawned)
        cli.process.send_signal(signal.SIGKILL)
        cli.process.wait(timeout=30)
        for pid in {worker} | standby:
            wait_for(lambda pid=pid: is_zombie(pid), timeout=10, what=f"worker {pid} to die")
        wait_for(lambda: is_zombie(spawned), timeout=10, what="what the app started to die")
    finally:
        cli.stop()


def test_the_blocking_serve_function_serves_reloads_and_stops_on_sigint(tmp_path: Path) -> None:
    write_app(tmp_path, "lib1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = (
        "import asyncreload\n"
        f"asyncreload.serve('main:app', port={port}, app_dir={str(tmp_path)!r})\n"
        "print('returned', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"

    def answers(version: str) -> bool:
        try:
            return httpx.get(url, timeout=5).text.startswith(version + " ")
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: answers("lib1"), timeout=30, what="the app to answer")
        write_app(tmp_path, "lib2")
        wait_for(lambda: answers("lib2"), timeout=30, what="the reload")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert out.splitlines()[-1] == "returned"  # (after the access log lines)


def test_cli_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    write_app(tmp_path, "x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "asyncreload", "serve", "main:app", "--port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"asyncreload: error: 127.0.0.1:{port} is in use"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "main"], "MODULE:ATTRIBUTE"),
        (["serve", "main:app", "--interface", "cgi"], "'cgi' is not one of"),
        (["serve", "main:app", "--port", "http"], "'http' is not a valid integer"),
        (["serve", "main:app", "--app-dir", "/no/such/dir"], "--app-dir is not a directory"),
    ],
)
def test_cli_serve_bad_options_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncreload", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr


if not sys.platform.startswith("linux"):  # pragma: no cover
    pytestmark = [pytestmark, pytest.mark.skip("Linux process semantics")]
