"""``serve`` under faults: busy keep-alive clients through reloads, code outside the app dir,
an app that hangs or dies, a supervisor killed, an app dir that goes away, and bad options.
Real worker processes, real sockets, real HTTP."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from asyncreload import ConfigError, ServeConfig

from .conftest import FuseMount, wait_for
from .helpers import CLI, eventually
from .processes import Tracked, children
from .test_serve import ASGI_APP, get, serving, wait_version, write_app

pytestmark = pytest.mark.anyio

CLIENTS = 100
RELOADS = 10


async def test_busy_keep_alive_clients_never_fail_through_10_reloads(tmp_path: Path) -> None:
    write_app(tmp_path, "v0")
    answered = 0
    errors: list[str] = []
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as probe:
        await wait_version(probe, where, "v0")

        async def client(pause: float) -> None:
            nonlocal answered
            # Its own pool, keep-alive (httpx's default): one connection reused for every request.
            async with httpx.AsyncClient(timeout=30) as c:
                while True:
                    try:
                        (await c.get(where)).raise_for_status()
                        answered += 1
                    except httpx.HTTPError as e:
                        errors.append(repr(e))
                    await anyio.sleep(pause)

        async with anyio.create_task_group() as tg:
            for _ in range(CLIENTS):
                tg.start_soon(client, 0)  # busy: the next request as soon as the answer is in
            tg.start_soon(client, 0.01)  # and one that polls every 10 ms
            await eventually(lambda: answered > CLIENTS, what="every client to be answered")
            for i in range(1, RELOADS + 1):
                write_app(tmp_path, f"v{i}")
                await wait_version(probe, where, f"v{i}")
                before = answered
                await eventually(lambda b=before: answered > b + CLIENTS, what="more answers")
            tg.cancel_scope.cancel()
    assert errors == [], f"{len(errors)} of {answered + len(errors)} failed: {errors[:3]}"


async def test_a_module_outside_the_app_dir_in_a_watched_dir_is_never_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir, lib = tmp_path / "app", tmp_path / "lib"
    app_dir.mkdir()
    lib.mkdir()
    (lib / "mylib.py").write_text("VALUE = 'lib1'\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(lib), os.environ.get("PYTHONPATH", "")]))
    template = "from mylib import VALUE\n" + ASGI_APP.replace("{version!r}", "VALUE + {version!r}")
    write_app(app_dir, "-a1", template)
    async with (
        serving(app_dir, reload_dirs=[str(app_dir), str(lib)]) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        await wait_version(client, where, "lib1-a1")
        # A reload first: the standby started after it is warmed with the modules the serving
        # worker reported, which is where mylib used to be counted as third-party.
        write_app(app_dir, "-a2", template)
        await wait_version(client, where, "lib1-a2")
        await anyio.sleep(0.5)  # (not a wait: gives a stale standby time to preload mylib)
        (lib / "mylib.py").write_text("VALUE = 'lib2'\n")
        await wait_version(client, where, "lib2-a2")


def test_a_preload_that_failed_half_way_leaves_nothing_half_imported(tmp_path: Path) -> None:
    # A standby preloads uvicorn while the app dir (on sys.path) sits on a mount that just died:
    # an import deep inside raised ENOTCONN after uvicorn.logging had loaded. Python dropped
    # uvicorn but kept uvicorn.logging, so the uvicorn imported again lacked that attribute and
    # the worker failed in uvicorn.Config once the mount was back (a CI run, py310).
    pkg = tmp_path / "pkg"  # uvicorn: __init__ imports config, which imports logging
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.config import Config\n")
    (pkg / "logging.py").write_text("LEVEL = 5\n")
    (pkg / "config.py").write_text(
        "import os\n"
        "from pkg.logging import LEVEL\n"
        "if os.path.exists(os.environ['MOUNT_DEAD']):\n"
        "    raise OSError(107, 'Transport endpoint is not connected')\n"
        "Config = object\n"
    )
    dead = tmp_path / "dead"
    dead.touch()
    code = (
        "import os, sys\n"
        "from asyncreload._serve.worker_program import _preload\n"
        "_preload(['pkg'])\n"  # fails, as the import did on the dead mount
        "os.remove(os.environ['MOUNT_DEAD'])\n"  # the mount is back
        "import pkg\n"
        "print(pkg.logging.LEVEL)\n"  # as logging.config.dictConfig finds uvicorn.logging
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "MOUNT_DEAD": str(dead),
             "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
        check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "5\n"), done.stderr


async def test_a_standby_that_preloaded_a_changed_module_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir, lib, vendor = tmp_path / "app", tmp_path / "lib", tmp_path / "vendor"
    for d in (app_dir, lib, vendor):
        d.mkdir()
    (lib / "mylib.py").write_text("VALUE = 'lib1'\n")
    # Third-party code (not watched, so preloaded in the standby) that imports the user's mylib.
    (vendor / "thirdparty.py").write_text("import mylib\n")
    path = os.pathsep.join([str(vendor), str(lib), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    template = "import thirdparty\n" + ASGI_APP.replace(
        "{version!r}", "thirdparty.mylib.VALUE + {version!r}"
    )
    write_app(app_dir, "-a1", template)
    async with (
        serving(app_dir, reload_dirs=[str(app_dir), str(lib)]) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        await wait_version(client, where, "lib1-a1")
        write_app(app_dir, "-a2", template)  # the next standby preloads thirdparty, so mylib
        await wait_version(client, where, "lib1-a2")
        await anyio.sleep(0.5)  # (not a wait: gives the standby time to preload)
        (lib / "mylib.py").write_text("VALUE = 'lib2'\n")
        await wait_version(client, where, "lib2-a2")


async def test_an_error_in_a_watched_dir_outside_the_app_dir_keeps_its_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app_dir, lib = tmp_path / "app", tmp_path / "lib"
    app_dir.mkdir()
    lib.mkdir()
    (lib / "mylib.py").write_text("VALUE = 'lib1'\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(lib), os.environ.get("PYTHONPATH", "")]))
    write_app(app_dir, "x", "import mylib\n" + ASGI_APP)
    async with (
        serving(app_dir, reload_dirs=[str(app_dir), str(lib)]) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        await wait_version(client, where, "x")
        (lib / "mylib.py").write_text("def broken():\n    return 1 / 0\nbroken()\n")
        await eventually(lambda: any("failed to load" in r.getMessage() for r in caplog.records))
    failure = next(r.getMessage() for r in caplog.records if "failed to load" in r.getMessage())
    assert "mylib.py" in failure and "return 1 / 0" in failure, failure
    assert "ZeroDivisionError" in failure


HANG = "while True:\n    pass\n"


async def test_a_hang_at_start_is_cured_by_a_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncreload")
    marker = tmp_path.parent / f"{tmp_path.name}.importing"  # outside the watched directory
    (tmp_path / "main.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n" + HANG
    )
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as client:
        await eventually(marker.exists, what="the hanging import to begin")
        write_app(tmp_path, "fixed")
        took = await wait_version(client, where, "fixed", timeout=20)
    assert took < 20  # typically ~0.1 s after the save
    assert any("starting over" in r.getMessage() for r in caplog.records)


def _pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_kill_9_of_the_supervisor_during_a_hanging_import_leaves_no_worker(tmp_path: Path) -> None:
    pids = tmp_path.parent / f"{tmp_path.name}.pids"  # outside the watched directory
    (tmp_path / "main.py").write_text(
        f"import os\nwith open({str(pids)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
        + HANG
    )
    cli = CLI("serve", "main:app", "--port", "0", "--app-dir", str(tmp_path), cwd=tmp_path)
    try:
        wait_for(lambda: _pids_in(pids), timeout=30, what="the hanging import")
        workers = Tracked(children(cli.process.pid))  # the one importing, and the standby
        assert _pids_in(pids)[0] in workers.pids
        cli.process.send_signal(signal.SIGKILL)
        cli.process.wait(timeout=30)
        wait_for(lambda: not workers.alive(), timeout=10, what="the workers to die")
    finally:
        cli.stop()


async def test_a_serving_worker_that_dies_is_replaced_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dying = ASGI_APP.replace(
        '    body = f"',
        '    if scope["path"] == "/die":\n        os._exit(3)\n    body = f"',
    )
    write_app(tmp_path, "v1", dying)
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as client:
        first = int((await get(client, where)).split()[1])
        await anyio.sleep(1.5)  # (not a wait: older than a crash loop, so it is replaced)
        with pytest.raises(httpx.HTTPError):
            await get(client, where, "/die")
        with anyio.fail_after(10):  # no save: the standby takes over
            answer = await get(client, where)
    assert answer.startswith("v1 ")
    assert int(answer.split()[1]) != first
    assert any("a new one takes over" in r.getMessage() for r in caplog.records)


def test_an_app_dir_moved_away_keeps_serving_and_reloads_when_back(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    write_app(app_dir, "m1")
    port = _free_port()
    cli = CLI("serve", "main:app", "--port", str(port), "--app-dir", str(app_dir), cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/"
    try:
        cli.wait_line(lambda s: "serving main:app" in s, stream="stderr", timeout=30)
        assert httpx.get(url, timeout=30).text.startswith("m1 ")
        app_dir.rename(tmp_path / "moved")
        cli.wait_line(lambda s: "keeps serving" in s, stream="stderr", timeout=30)
        for _ in range(5):
            assert httpx.get(url, timeout=30).text.startswith("m1 ")
        (tmp_path / "moved").rename(app_dir)
        write_app(app_dir, "m2")
        wait_for(lambda: httpx.get(url, timeout=30).text.startswith("m2 "), timeout=30,
                 what="the reload once the app dir is back")  # fmt: skip
        assert cli.process.poll() is None
    finally:
        cli.stop()
    ours = [line for line in cli.stderr if line.startswith("asyncreload:")]
    assert len([line for line in ours if "keeps serving" in line]) == 1, ours
    assert not any("Traceback" in line or "ExceptionGroup" in line for line in cli.stderr)


async def test_an_app_dir_on_a_dead_mount_keeps_serving_and_reloads_when_remounted(
    fuse_mount: FuseMount, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "trigger.py").write_text("")
    write_app(fuse_mount.backing, "d1")
    async with (
        serving(fuse_mount.mount, reload_dirs=[str(fuse_mount.mount), str(lib)],
                watcher={"poll_interval": 0.1}) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):  # fmt: skip
        await wait_version(client, where, "d1")
        fuse_mount.kill()  # ENOTCONN from here on
        (lib / "trigger.py").write_text("# 1\n")  # a change: the reload that can't happen
        await eventually(lambda: any("keeps serving" in r.getMessage() for r in caplog.records))
        assert (await get(client, where)).startswith("d1 ")
        fuse_mount.remount()
        write_app(fuse_mount.backing, "d2")
        (lib / "trigger.py").write_text("# 2\n")
        await wait_version(client, where, "d2")
    warned = [r for r in caplog.records if "keeps serving" in r.getMessage()]
    assert len(warned) == 1
    # ENOTCONN once the FUSE server is gone; ECONNABORTED for a call made as it was dying (a
    # standby started at that moment can't enter the app dir).
    dead = ("Transport endpoint is not connected", "Software caused connection abort")
    assert any(e in warned[0].getMessage() for e in dead), warned[0].getMessage()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncreload", "serve", "main:app", "--port", "0", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=env,
    )  # fmt: skip


def _one_line_exit_2(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_uds_on_a_regular_file_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    write_app(tmp_path, "x")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    _one_line_exit_2(_serve_cli("--uds", str(notes), cwd=tmp_path), "is not a socket")
    assert notes.read_text() == "mine\n"


def test_uds_on_a_directory_is_refused(tmp_path: Path) -> None:
    write_app(tmp_path, "x")
    (tmp_path / "d").mkdir()
    _one_line_exit_2(_serve_cli("--uds", str(tmp_path / "d"), cwd=tmp_path), "is a directory")
    assert (tmp_path / "d").is_dir()


def test_uds_replaces_a_stale_socket(tmp_path: Path) -> None:
    write_app(tmp_path, "u1")
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # bound, then closed: a dead server's file
        stale.bind(str(path))
    cli = CLI("serve", "main:app", "--uds", str(path), "--app-dir", str(tmp_path), cwd=tmp_path)
    try:
        cli.wait_line(lambda s: "serving main:app" in s, stream="stderr", timeout=30)
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, timeout=30) as client:
            assert client.get("http://app/").text.startswith("u1 ")
    finally:
        cli.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fd", "99"], "--fd 99 is not an open file descriptor"),
        # The CLI checks numbers by the one rule of _config (as for every command); ServeConfig
        # checks them again for library callers (test_serve_config_checks_its_timeouts).
        (
            ["--timeout-graceful-shutdown", "nan"],
            "'--timeout-graceful-shutdown': must be a non-negative number of seconds, not nan",
        ),
        (
            ["--timeout-graceful-shutdown", "-1"],
            "'--timeout-graceful-shutdown': must be a non-negative number of seconds, not -1",
        ),
        (
            ["--reload-delay", "inf"],
            "'--reload-delay': must be a non-negative number of seconds, not inf",
        ),
    ],
)
def test_bad_socket_and_timeout_options_are_one_line_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    write_app(tmp_path, "x")
    _one_line_exit_2(_serve_cli(*args, cwd=tmp_path), message)


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeout_graceful_shutdown", math.nan), ("timeout_graceful_shutdown", -1.0),
     ("reload_delay", math.inf)],
)  # fmt: skip
def test_serve_config_checks_its_timeouts(field: str, value: float, tmp_path: Path) -> None:
    config = ServeConfig("main:app", app_dir=str(tmp_path), **{field: value})
    with pytest.raises(ConfigError, match="must be a number of seconds >= 0"):
        config.check()


def test_fd_that_is_not_a_socket_is_one_line_exit_2(tmp_path: Path) -> None:
    write_app(tmp_path, "x")
    with open(tmp_path / "main.py") as f:
        result = subprocess.run(
            [sys.executable, "-m", "asyncreload", "serve", "main:app", "--fd", str(f.fileno())],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, pass_fds=(f.fileno(),),
        )  # fmt: skip
    _one_line_exit_2(result, "is not a socket")


def test_env_file_without_python_dotenv_is_one_line_exit_2(tmp_path: Path) -> None:
    write_app(tmp_path, "x")
    (tmp_path / ".env").write_text("A=1\n")
    shadow = tmp_path / "shadow"  # `import dotenv` fails, as where python-dotenv isn't installed
    shadow.mkdir()
    (shadow / "dotenv.py").write_text("raise ImportError('No module named dotenv')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")]),
    }
    result = _serve_cli("--env-file", ".env", cwd=tmp_path, env=env)
    _one_line_exit_2(result, "--env-file needs python-dotenv")


if not sys.platform.startswith("linux"):  # pragma: no cover
    pytestmark = [pytestmark, pytest.mark.skip("Linux process semantics")]
