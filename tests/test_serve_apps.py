"""``serve`` with the apps people run: a real Django project, Flask with Jinja templates, and
uvicorn's own choices of event loop, HTTP and WebSocket implementation. Real HTTP throughout."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import click
import httpx
import pytest

from .conftest import wait_for
from .helpers import CLI
from .test_serve import serving

pytestmark = pytest.mark.anyio

SESSION_VIEW = """
from django.http import HttpResponse

def session(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse({answer!r})

urlpatterns.append(path("session/", session))
"""


@pytest.fixture(scope="module")
def django_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by ``django-admin startproject`` and migrated (sessions live in SQLite)."""
    root = tmp_path_factory.mktemp("django")
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(root)],
                   check=True, timeout=120)  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=root, check=True,
                   timeout=120)  # fmt: skip
    return root


@pytest.fixture
def django_project(django_template: Path, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(django_template, project)
    set_session_answer(project, "d1")
    return project


def set_session_answer(project: Path, answer: str) -> None:
    urls = project / "mysite" / "urls.py"
    original = urls.read_text().split("\nfrom django.http import HttpResponse")[0]
    tmp = urls.with_suffix(".tmp")
    tmp.write_text(original + SESSION_VIEW.format(answer=answer))
    tmp.replace(urls)  # whole, as editors save


async def wait_answer(
    client: httpx.AsyncClient, url: str, answer: str, timeout: float = 30
) -> float:
    """Seconds until ``url`` answers ``answer`` (new connections, so no keep-alive is tested)."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        while (await client.get(url, headers={"Connection": "close"})).text != answer:
            pass
    return time.monotonic() - start


@pytest.mark.parametrize("app", ["mysite.asgi:application", "mysite.wsgi:application"])
async def test_django_sessions_and_admin_login_set_cookies_and_reload(
    django_project: Path, app: str
) -> None:
    # h11 (uvicorn without its [standard] extras) is strict about headers: uvicorn's own WSGI
    # middleware joined Set-Cookie values into one illegal header, and the reply was empty.
    strict = {"http": "h11"}
    async with (
        serving(django_project, app=app, uvicorn=strict) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        response = await client.get(where + "/session/")
        assert response.status_code == 200
        assert response.text == "d1"
        assert "sessionid=" in response.headers["set-cookie"]
        assert (await client.get(where + "/session/")).text == "d1"  # the session is read back
        login = await client.get(where + "/admin/login/")
        assert login.status_code == 200
        assert "csrftoken=" in login.headers["set-cookie"]
        assert b"csrfmiddlewaretoken" in login.content
        took = []
        for i in range(2, 5):
            set_session_answer(django_project, f"d{i}")
            took.append(await wait_answer(client, where + "/session/", f"d{i}"))
    print(f"django {app}: edit -> first new response {[round(t * 1000) for t in took]} ms")


FLASK_COOKIES = """\
from flask import Flask, make_response, session
app = Flask(__name__)
app.secret_key = "test"

@app.get("/")
def index():
    session["n"] = session.get("n", 0) + 1
    response = make_response({answer!r})
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response
"""


async def test_flask_responses_with_several_cookies(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(FLASK_COOKIES.format(answer="f1"))
    async with (
        serving(tmp_path, uvicorn={"http": "h11"}) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        response = await client.get(where + "/")
        assert response.text == "f1"
        cookies = response.headers.get_list("set-cookie")
        assert sorted(c.split("=")[0] for c in cookies) == ["a", "b", "session"]
        took = []
        for i in range(2, 5):
            tmp = tmp_path / "main.tmp"
            tmp.write_text(FLASK_COOKIES.format(answer=f"f{i}"))
            tmp.replace(tmp_path / "main.py")
            took.append(await wait_answer(client, where + "/", f"f{i}"))
    print(f"flask: edit -> first new response {[round(t * 1000) for t in took]} ms")


WHO_SERVES = """\
import asyncio, json, sys, warnings

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    frame, protocols = sys._getframe(), set()
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("uvicorn.protocols"):
            protocols.add(module)
        frame = frame.f_back
    loaded = [m for m in sys.modules if m.startswith("uvicorn.protocols.websockets.")]
    body = json.dumps({
        "loop": type(asyncio.get_running_loop()).__module__,
        "http": sorted(protocols),
        "ws": sorted(loaded),
    }).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workers_run_what_uvicorn_picks_and_print_no_warning(tmp_path: Path) -> None:
    """With uvicorn[standard]'s extras installed (uvloop, httptools, websockets), a worker runs
    on uvloop and httptools, loads the WebSocket implementation uvicorn's ``auto`` picks (and
    not the deprecated legacy one), and prints no warning."""
    pytest.importorskip("uvloop")
    pytest.importorskip("httptools")
    pytest.importorskip("websockets")
    (tmp_path / "main.py").write_text(WHO_SERVES)
    port = _free_port()
    cli = CLI("serve", "main:app", "--port", str(port), cwd=tmp_path)
    try:
        cli.wait_line(lambda s: "serving main:app" in s, stream="stderr")
        seen = json.loads(httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text)
        (tmp_path / "main.py").write_text(WHO_SERVES + "\n# edited\n")
        cli.wait_line(lambda s: "reloaded in" in s, stream="stderr")
    finally:
        cli.stop()
    assert seen["loop"].startswith("uvloop")
    assert seen["http"] == ["uvicorn.protocols.http.httptools_impl"]
    assert "uvicorn.protocols.websockets.websockets_sansio_impl" in seen["ws"]
    assert "uvicorn.protocols.websockets.websockets_impl" not in seen["ws"]
    assert not [line for line in cli.stderr if "Warning" in line], cli.stderr


def test_a_broken_edit_is_shown_as_a_traceback_of_several_lines(tmp_path: Path) -> None:
    """The CLI prints the short traceback of an app that fails to load line by line, not as one
    line with its newlines escaped to ``\\n``."""
    (tmp_path / "main.py").write_text(WHO_SERVES)
    cli = CLI("serve", "main:app", "--port", str(_free_port()), cwd=tmp_path)
    try:
        cli.wait_line(lambda s: "serving main:app" in s, stream="stderr")
        (tmp_path / "main.py").write_text("def broken(:\n")
        cli.wait_line(lambda s: s.startswith("SyntaxError"), stream="stderr")
    finally:
        cli.stop()
    failed = next(line for line in cli.stderr if "failed to load" in line)
    assert "\\n" not in failed, failed


# -- uvicorn's command line ---------------------------------------------------------------------


def _uvicorn_command() -> click.Command:
    import uvicorn.main  # noqa: F401 (the package's "main" attribute is the command, not the module)

    command = sys.modules["uvicorn.main"].main
    assert isinstance(command, click.Command)
    return command


def _as_config_gets(name: str, value: Any) -> Any:
    """A parsed option's value as ``uvicorn.Config`` gets it. ``--header NAME:VALUE`` is split
    as the option is read from uvicorn 0.55 on, in uvicorn's ``main()`` before (and in serve's
    own, after parsing): the same meaning, at two depths."""
    if name != "headers":
        return value
    return [tuple(h.split(":", 1)) if isinstance(h, str) else tuple(h) for h in value]


def _sample(param: click.Option, tmp_path: Path) -> list[str]:
    """Arguments that give ``param`` a value other than its default."""
    opt = param.opts[0]
    if param.is_flag:
        return [param.secondary_opts[0] if param.default and param.secondary_opts else opt]
    if isinstance(param.type, click.Choice):
        return [opt, next(c for c in param.type.choices if c != param.default)]
    if isinstance(param.type, click.Path):
        (tmp_path / "sample.conf").write_text("")
        return [opt, str(tmp_path / "sample.conf")]
    if isinstance(param.type, click.types.BoolParamType):
        return [opt, "false" if param.default else "true"]
    if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
        return [opt, "7"]
    return [opt, "X-Sample:1" if param.name == "headers" else "sample"]


def test_every_option_of_the_installed_uvicorn_is_accepted_with_its_meaning(
    tmp_path: Path,
) -> None:
    """Each option of ``uvicorn --help`` (read from the installed uvicorn, so a new release
    that adds one fails here) parses under ``serve`` to the value uvicorn parses it to, under
    the same name, which is the name of the ``uvicorn.Config`` argument it is passed as."""
    from uvicorn import Config

    from asyncreload._serve.supervisor import ServeConfig
    from asyncreload.cli.serve import serve_command

    ours = {o: p for p in serve_command.params for o in (*p.opts, *p.secondary_opts)}
    fields = {f.name for f in dataclasses.fields(ServeConfig)}
    config_args = inspect.signature(Config).parameters
    missing, different = [], []
    for param in _uvicorn_command().params:
        if not isinstance(param, click.Option) or param.name == "version":
            continue
        for opt in (*param.opts, *param.secondary_opts):
            if opt not in ours:
                missing.append(opt)
        if param.opts[0] not in ours:
            continue
        mine = ours[param.opts[0]]
        args = _sample(param, tmp_path)
        theirs_value = _uvicorn_command().make_context("uvicorn", ["m:a", *args]).params
        our_value = serve_command.make_context("serve", ["m:a", *args]).params
        ours_gets = _as_config_gets(param.name, our_value[mine.name])
        if mine.name != param.name or ours_gets != _as_config_gets(
            param.name, theirs_value[param.name]
        ):
            different.append((param.opts[0], our_value.get(mine.name), theirs_value[param.name]))
        # where the value goes: a serve setting, or the worker's uvicorn.Config
        assert param.name in fields | config_args.keys() | {"reload", "workers"}, param.name
    assert missing == []
    assert different == []


def test_uvicorns_environment_variables_work_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "main.py").write_text(WHO_SERVES)
    port = _free_port()
    monkeypatch.setenv("UVICORN_APP", "main:app")
    monkeypatch.setenv("UVICORN_PORT", str(port))
    monkeypatch.setenv("UVICORN_HEADERS", "X-From-Env:1")  # a multiple option: as uvicorn's
    with CLI("serve", cwd=tmp_path) as cli:
        cli.wait_line(lambda s: f"serving main:app at http://127.0.0.1:{port}" in s,
                      stream="stderr")  # fmt: skip
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
    assert response.headers["x-from-env"] == "1"
    monkeypatch.chdir(tmp_path)
    expected = _uvicorn_command().make_context("uvicorn", []).params
    # uvicorn reads the same variable
    assert _as_config_gets("headers", expected["headers"]) == [("X-From-Env", "1")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"no_such_option": 1}, "--no-such-option is not an option of the installed uvicorn"),
        ({"reload_dirs": ["x"]}, "reload_dirs is not one of the worker's uvicorn options"),
        ({"port": 1}, "port is not one of the worker's uvicorn options"),
    ],
)
def test_uvicorn_options_from_python_are_checked(options: dict[str, object], message: str) -> None:
    from asyncreload import ConfigError
    from asyncreload._serve.supervisor import ServeConfig

    with pytest.raises(ConfigError, match=message):
        ServeConfig(app="main:app", uvicorn=options).check()


def test_a_header_without_a_colon_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncreload", "serve", "main:app", "--header", "X-No-Value"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "'--header': must be NAME:VALUE, not 'X-No-Value'" in result.stderr


def test_version_is_uvicorns_line() -> None:
    result = subprocess.run([sys.executable, "-m", "asyncreload", "serve", "--version"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.startswith("Running uvicorn ")


WHO_CONFIG = """\
import asyncio, gc, json, sys
import uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    config = next(o for o in gc.get_objects() if isinstance(o, uvicorn.Config))
    frame, protocols = sys._getframe(), set()
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("uvicorn.protocols"):
            protocols.add(frame.f_globals["__name__"])
        frame = frame.f_back
    body = json.dumps({
        "config": {k: v for k, v in vars(config).items() if k != "encoded_headers"
                   and isinstance(v, (int, float, str, bool, list, type(None)))},
        "loop": type(asyncio.get_running_loop()).__module__,
        "http": sorted(protocols),
        "ws": getattr(config.ws_protocol_class, "__module__", None),
    }).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""

LOG_CONFIG = """\
{"version": 1, "disable_existing_loggers": false,
 "handlers": {"file": {"class": "logging.FileHandler", "filename": "%s"}},
 "loggers": {"uvicorn.error": {"handlers": ["file"], "level": "INFO"}}}
"""


def test_uvicorn_options_reach_each_workers_config_and_take_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A uvicorn command line, run by serve: the worker's uvicorn.Config holds what uvicorn's
    own parsing gives, and it shows: TLS, headers, the loop, the HTTP and WebSocket modules."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(WHO_CONFIG)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    log_file = tmp_path / "worker.log"
    (tmp_path / "logging.json").write_text(LOG_CONFIG % log_file)
    port = _free_port()
    args = ["--port", str(port), "--app-dir", "app", "--reload-dir", "app",
            "--loop", "asyncio", "--http", "h11", "--ws", "none", "--ws-max-size", "1234",
            "--ws-ping-interval", "3.5", "--ws-ping-timeout", "4.5",
            "--ws-per-message-deflate", "false", "--header", "X-One:1", "--header", "X-Two:2",
            "--no-server-header", "--no-date-header", "--no-use-colors",
            "--timeout-keep-alive", "9", "--limit-concurrency", "50",
            "--limit-max-requests", "1000", "--backlog", "100",
            "--h11-max-incomplete-event-size", "9999",
            "--ssl-keyfile", str(key.relative_to(tmp_path)),
            "--ssl-certfile", str(cert.relative_to(tmp_path)),
            "--log-config", "logging.json"]  # fmt: skip
    monkeypatch.chdir(tmp_path)  # where both commands are run: relative paths are from here
    expected = _uvicorn_command().make_context("uvicorn", ["main:app", *args]).params
    cli = CLI("serve", "main:app", *args, "--workers", "3", cwd=tmp_path)
    try:
        cli.wait_line(lambda s: f"at https://127.0.0.1:{port}" in s, stream="stderr")
        response = httpx.get(f"https://127.0.0.1:{port}/", verify=False, timeout=30)
    finally:
        cli.stop()
    seen = json.loads(response.text)
    config = seen["config"]
    for name in ("loop", "http", "ws", "ws_max_size", "ws_ping_interval", "ws_ping_timeout",
                 "ws_per_message_deflate", "server_header", "date_header", "use_colors",
                 "timeout_keep_alive", "limit_concurrency", "limit_max_requests",
                 "h11_max_incomplete_event_size"):  # fmt: skip
        assert config[name] == expected[name], name
    assert config["headers"] == [["X-One", "1"], ["X-Two", "2"]]
    assert config["ssl_certfile"] == str(cert)  # relative to where serve was started
    assert response.headers["x-one"] == "1"
    assert response.headers["x-two"] == "2"
    assert "server" not in response.headers
    assert "date" not in response.headers
    assert seen["loop"].startswith("asyncio")
    assert seen["http"] == ["uvicorn.protocols.http.h11_impl"]
    assert seen["ws"] is None  # --ws none: no WebSocket implementation
    assert "Application startup complete" in log_file.read_text()  # --log-config's handler
    assert any('"workers" flag is ignored when reloading is enabled.' in line
               for line in cli.stderr)  # fmt: skip


def test_the_readme_table_names_every_uvicorn_option() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("| uvicorn option | `asyncreload serve` |")[1].split("\n\n")[0]
    named = set(re.findall(r"`(--[a-z0-9-]+)", table))
    options = {p.opts[0] for p in _uvicorn_command().params if isinstance(p, click.Option)}
    assert sorted(options - named) == []


# -- templates and the env file -----------------------------------------------------------------

FLASK_TEMPLATES = """\
import os
from flask import Flask, render_template
app = Flask(__name__)

@app.get("/")
def index():
    return render_template("page.html", greeting=os.environ.get("GREETING", "-"))
"""


def save(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def test_a_jinja_template_edit_shows_on_the_next_request(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(FLASK_TEMPLATES)
    (tmp_path / "templates").mkdir()
    page = tmp_path / "templates" / "page.html"
    page.write_text("<p>t1</p>")
    async with serving(tmp_path) as where, httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(where + "/")).text == "<p>t1</p>"
        took = []
        for i in range(2, 5):
            save(page, f"<p>t{i}</p>")
            took.append(await wait_answer(client, where + "/", f"<p>t{i}</p>"))
    print(f"jinja template edit -> new page {[round(t * 1000) for t in took]} ms")


async def test_a_django_template_edit_shows_on_the_next_request(django_project: Path) -> None:
    (django_project / "mysite" / "templates").mkdir()
    page = django_project / "mysite" / "templates" / "page.html"
    page.write_text("<p>{{ 'dj1' }}</p>")
    urls = django_project / "mysite" / "urls.py"
    save(urls, urls.read_text() + (
        "from django.views.generic import TemplateView\n"
        "urlpatterns.append(path('page/', TemplateView.as_view(template_name='page.html')))\n"
    ))  # fmt: skip
    settings = django_project / "mysite" / "settings.py"
    text = settings.read_text()
    assert "'DIRS': []" in text
    # debug off, as in production settings: Django then caches templates for good
    text = text.replace("'DIRS': []", "'DIRS': [BASE_DIR / 'mysite' / 'templates']")
    save(settings, text + "DEBUG = False\nALLOWED_HOSTS = ['127.0.0.1']\n")
    async with (
        serving(django_project, app="mysite.asgi:application") as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        assert (await client.get(where + "/page/")).text == "<p>dj1</p>"
        save(page, "<p>{{ 'dj2' }}</p>")
        took = await wait_answer(client, where + "/page/", "<p>dj2</p>")
    print(f"django template edit -> new page {round(took * 1000)} ms")


async def test_the_env_file_is_watched_and_re_read(tmp_path: Path) -> None:
    pytest.importorskip("dotenv", reason="--env-file needs python-dotenv")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(FLASK_TEMPLATES)
    (app_dir / "templates").mkdir()
    (app_dir / "templates" / "page.html").write_text("{{ greeting }}")
    env = tmp_path / "config.env"  # outside the watched directory: watched all the same
    env.write_text("GREETING=hello\n")
    async with (
        serving(app_dir, env_file=str(env)) as where,
        httpx.AsyncClient(timeout=30) as client,
    ):
        assert (await client.get(where + "/")).text == "hello"
        save(env, "GREETING=bonjour\n")
        await wait_answer(client, where + "/", "bonjour")


def test_the_readme_django_run_recipe_survives_session_writes(django_project: Path) -> None:
    """``asyncreload run -- python manage.py runserver --noreload``: each session request writes
    db.sqlite3 (and its journal) in the watched tree; that must not restart the server."""
    port = _free_port()
    command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    with CLI("run", "--", *command, cwd=django_project) as cli:
        url = f"http://127.0.0.1:{port}/session/"
        wait_for(lambda: _answers(url), timeout=60, what="runserver to answer")
        with httpx.Client(timeout=30) as client:
            answers = [client.get(url).status_code for _ in range(20)]
        time.sleep(1)  # proving an absence: no restart comes after the writes
    assert answers == [200] * 20
    assert not [line for line in cli.stderr if "restarted" in line], cli.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
