"""``serve --live-reload``: a real headless Chromium follows real reloads; the middleware's rules
(which responses get the script, and how) are tested alone below, on asyncio (the workers')."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asyncreload import _subreaper
from asyncreload._browser_script import SCRIPT
from asyncreload._run.live import listening_ports
from asyncreload._serve import live

from .browser import Browser, NoBrowser, Page
from .conftest import IN_CI, wait_for
from .helpers import CLI
from .sites import FASTAPI_SITE
from .test_serve import FLASK_APP, write_app
from .test_serve import serving as serve_with

pytestmark = pytest.mark.anyio

HTML_APP = """\
import os
VERSION = {version!r}
PAGE = '''<!doctype html><html><head><title>{{version}}</title></head><body>
<script>sessionStorage.loads = Number(sessionStorage.loads || 0) + 1</script>
<h1>{{version}}</h1></body></html>'''

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/api":
        body, kind = b'{{"version": "' + VERSION.encode() + b'"}}', b"application/json"
    else:
        body, kind = PAGE.format(version=VERSION).encode(), b"text/html; charset=utf-8"
    length = str(len(body)).encode()
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-type", kind), (b"content-length", length)]}})
    await send({{"type": "http.response.body", "body": body}})
"""


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Browser]:
    try:
        started = Browser(tmp_path / "profile")
    except NoBrowser as e:
        if IN_CI:
            pytest.fail(f"{e}: .ci/run installs it")
        pytest.skip(str(e))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def browser(chromium: Browser) -> Iterator[Page]:
    page = chromium.page()
    try:
        yield page
    finally:
        page.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serving(app_dir: Path, port: int = 0, **options: Any) -> AbstractAsyncContextManager[str]:
    return serve_with(app_dir, port=port, live_reload=True, **options)


async def in_thread(function: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args)


async def test_the_page_refreshes_once_the_new_code_answers(tmp_path: Path, browser: Page) -> None:
    write_app(tmp_path, "v1", HTML_APP)
    async with serving(tmp_path) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "v1")
        await in_thread(browser.wait_for, "sessionStorage.loads", "1")
        for version, loads in (("v2", "2"), ("v3", "3")):
            write_app(tmp_path, version, HTML_APP)
            await in_thread(browser.wait_for, "document.title", version)
            # Once per reload: never before the new code answers (it would show the old page
            # again, or an error page), never twice.
            assert await in_thread(browser.evaluate, "sessionStorage.loads") == loads
        # What is not a page is as the app made it.
        async with httpx.AsyncClient(timeout=30) as client:
            api = await client.get(where + "/api")
        assert api.json() == {"version": "v3"}
        assert api.headers["content-length"] == str(len(api.content))


async def test_a_failed_reload_shows_the_error_over_the_old_page_until_the_fix(
    tmp_path: Path, browser: Page
) -> None:
    overlay = "document.getElementById('__asyncreload_error')"
    write_app(tmp_path, "good", HTML_APP)
    async with serving(tmp_path) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "good")
        (tmp_path / "main.py").write_text("def broken(:\n")
        await in_thread(browser.wait_for, f"{overlay} !== null", True)
        shown = await in_thread(browser.evaluate, f"{overlay}.textContent")
        assert "SyntaxError" in shown and "main.py" in shown
        # Not a refresh: the old version's page, loaded once.
        assert await in_thread(browser.evaluate, "sessionStorage.loads") == "1"
        assert await in_thread(browser.evaluate, "document.title") == "good"
        write_app(tmp_path, "fixed", HTML_APP)
        await in_thread(browser.wait_for, "document.title", "fixed")
        assert await in_thread(browser.evaluate, f"{overlay} === null") is True


async def test_a_tab_left_open_reloads_when_the_server_is_back(
    tmp_path: Path, browser: Page
) -> None:
    write_app(tmp_path, "first run", HTML_APP)
    port = free_port()
    async with serving(tmp_path, port) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "first run")
    # The server is gone; the tab keeps trying. The next one serves other code.
    write_app(tmp_path, "second run", HTML_APP)
    async with serving(tmp_path, port):
        await in_thread(browser.wait_for, "document.title", "second run")


async def test_a_wsgi_page_gets_the_script_too(tmp_path: Path, browser: Page) -> None:
    flask_page = FLASK_APP.replace(
        'return f"{{VERSION}} {{os.getpid()}}"',
        'return f"<html><head><title>{{VERSION}}</title></head><body>{{VERSION}}</body></html>"',
    )
    write_app(tmp_path, "flask 1", flask_page)
    async with serving(tmp_path) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "flask 1")
        write_app(tmp_path, "flask 2", flask_page)
        await in_thread(browser.wait_for, "document.title", "flask 2")


# -- a page of each framework: its code, its template, its static files ---------------------

PAGE_TEMPLATE = """\
<!doctype html><html><head><title>{{ version }} HEADING</title>
<link rel="stylesheet" href="/static/site.css"></head><body>
<script>sessionStorage.loads = Number(sessionStorage.loads || 0) + 1</script>
<h1>HEADING</h1><input id="typed"><script src="/static/app.js"></script></body></html>
"""


FLASK_SITE = """\
from flask import Flask, jsonify, render_template

VERSION = {version!r}
app = Flask(__name__)

@app.get("/")
def index():
    return render_template("page.html", version=VERSION)

@app.get("/api")
def api():
    return jsonify(version=VERSION)
"""

DJANGO_VIEWS = """\
from django.http import JsonResponse
from django.shortcuts import render

VERSION = {version!r}

def index(request):
    return render(request, "page.html", {{"version": VERSION}})

def api(request):
    return JsonResponse({{"version": VERSION}})
"""

DJANGO_PROJECT = {
    "mysite/__init__.py": "",
    "mysite/settings.py": """\
SECRET_KEY = "not a secret: a test"
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = ["django.contrib.staticfiles", "pages"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
STATIC_URL = "/static/"
DATABASES = {}
USE_TZ = True
""",
    "mysite/urls.py": """\
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path
from pages import views

urlpatterns = [path("", views.index), path("api", views.api), *staticfiles_urlpatterns()]
""",
    "mysite/wsgi.py": """\
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
""",
    "pages/__init__.py": "",
}


@dataclass(frozen=True)
class Site:
    app: str
    code: str
    """The module that holds VERSION."""
    code_text: str
    base: str
    """Where templates/ and static/ are."""
    api_body: str
    """/api's body, byte for byte, as the framework makes it (for "v2")."""
    files: dict[str, str] = field(default_factory=dict)

    def write_code(self, root: Path, version: str) -> None:
        save(root / self.code, self.code_text.format(version=version))

    def write_template(self, root: Path, heading: str) -> None:
        save(root / self.base / "templates/page.html", PAGE_TEMPLATE.replace("HEADING", heading))

    def write_static(self, root: Path, name: str, text: str) -> None:
        save(root / self.base / "static" / name, text)

    def write(self, root: Path) -> None:
        for name, text in self.files.items():
            save(root / name, text)
        self.write_code(root, "v1")
        self.write_template(root, "one")
        self.write_static(root, "site.css", "h1 { color: rgb(0, 0, 0) }\n")
        self.write_static(root, "app.js", 'window.appVersion = "j1";\n')


SITES = {
    "fastapi": Site("main:app", "main.py", FASTAPI_SITE, ".", '{"version":"v2"}'),
    "flask": Site("main:app", "main.py", FLASK_SITE, ".", '{"version":"v2"}\n'),
    "django": Site(
        "mysite.wsgi:application",
        "pages/views.py",
        DJANGO_VIEWS,
        "pages",
        '{"version": "v2"}',
        DJANGO_PROJECT,
    ),
}


TITLE = "document.readyState === 'complete' ? document.title : null"
"""The page's title once it has loaded: before, its scripts may not have run (they wait for
its stylesheets)."""


def save(path: Path, text: str) -> None:
    # Whole, and renamed into place, as editors do.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.mark.parametrize("framework", list(SITES))
async def test_code_templates_and_static_files_each_reach_the_page(
    framework: str, tmp_path: Path, browser: Page
) -> None:
    site = SITES[framework]
    site.write(tmp_path)
    worker = "document.querySelector('script[data-worker]').dataset.worker"
    color = "getComputedStyle(document.querySelector('h1')).color"
    async with serving(tmp_path, app=site.app) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, TITLE, "v1 one")
        # The code: a new worker, and the page refreshes once.
        site.write_code(tmp_path, "v2")
        await in_thread(browser.wait_for, TITLE, "v2 one")
        assert await in_thread(browser.evaluate, "sessionStorage.loads") == "2"
        # A template: the same.
        site.write_template(tmp_path, "two")
        await in_thread(browser.wait_for, TITLE, "v2 two")
        assert await in_thread(browser.evaluate, "sessionStorage.loads") == "3"
        serving_worker = await in_thread(browser.evaluate, worker)
        # A stylesheet: swapped in place; what was typed stays, and no worker is started.
        await in_thread(browser.evaluate, "document.getElementById('typed').value = 'kept'")
        site.write_static(tmp_path, "site.css", "h1 { color: rgb(1, 2, 3) }\n")
        await in_thread(browser.wait_for, color, "rgb(1, 2, 3)")
        typed = await in_thread(browser.evaluate, "document.getElementById('typed').value")
        assert typed == "kept"
        assert await in_thread(browser.evaluate, "sessionStorage.loads") == "3"
        # Another static file: the page reloads, from the same worker.
        site.write_static(tmp_path, "app.js", 'window.appVersion = "j2";\n')
        await in_thread(browser.wait_for, "window.appVersion", "j2")
        assert await in_thread(browser.evaluate, "sessionStorage.loads") == "4"
        assert await in_thread(browser.evaluate, worker) == serving_worker
        # JSON is as the framework made it, byte for byte.
        async with httpx.AsyncClient(timeout=30) as client:
            api = await client.get(where + "/api")
        assert api.content == site.api_body.encode()
        assert api.headers.get("content-length", str(len(api.content))) == str(len(api.content))


ASSETS_APP = """\
from pathlib import Path
VERSION = {version!r}
HERE = Path(__file__).parent
PAGE = '''<!doctype html><html><head><title>{{version}}</title>
<link rel="stylesheet" href="/assets/site.css"></head><body>
<script>sessionStorage.loads = Number(sessionStorage.loads || 0) + 1</script>
<h1>{{version}}</h1></body></html>'''

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"].startswith("/assets/"):
        body, kind = (HERE / scope["path"][1:]).read_bytes(), b"text/css"
    else:
        body, kind = PAGE.format(version=VERSION).encode(), b"text/html"
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-type", kind)]}})
    await send({{"type": "http.response.body", "body": body}})
"""


async def test_several_tabs_follow_and_a_named_static_dir_restyles_them(
    tmp_path: Path, chromium: Browser, browser: Page
) -> None:
    color = "getComputedStyle(document.querySelector('h1')).color"
    write_app(tmp_path, "v1", ASSETS_APP)
    save(tmp_path / "assets/site.css", "h1 { color: rgb(0, 0, 0) }\n")
    second = chromium.new_page()
    try:
        async with serving(tmp_path, static_dirs=[str(tmp_path / "assets")]) as where:
            tabs = (browser, second)
            for tab in tabs:
                await in_thread(tab.open, where)
                await in_thread(tab.wait_for, TITLE, "v1")
            save(tmp_path / "assets/site.css", "h1 { color: rgb(4, 5, 6) }\n")
            for tab in tabs:
                await in_thread(tab.wait_for, color, "rgb(4, 5, 6)")
                assert await in_thread(tab.evaluate, "sessionStorage.loads") == "1"
            write_app(tmp_path, "v2", ASSETS_APP)
            for tab in tabs:
                await in_thread(tab.wait_for, TITLE, "v2")
                assert await in_thread(tab.evaluate, "sessionStorage.loads") == "2"
    finally:
        second.close()


def test_pyproject_turns_it_on_for_serve_and_run_leaves_it(tmp_path: Path) -> None:
    live_port = free_port()
    (tmp_path / "pyproject.toml").write_text(
        "[tool.asyncreload]\n"
        "live-reload = true\n"
        'static-dir = ["assets"]\n'
        # run's: serve leaves them
        "command = \"sh -c 'exit 3'\"\n"
        'on-exit = "exit"\n'
        f"live-reload-port = {live_port}\n"
    )
    (tmp_path / "assets").mkdir()
    write_app(tmp_path, "configured", HTML_APP)
    port = free_port()
    cli = CLI("serve", "main:app", "--port", str(port), cwd=tmp_path)
    try:
        cli.wait_line(
            lambda s: f"serving main:app at http://127.0.0.1:{port}" in s, stream="stderr"
        )
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text
        assert f'<script src="{SCRIPT}"' in page
    finally:
        cli.stop()
    # run takes its own keys from the same table, and leaves serve's.
    done = subprocess.run(
        [sys.executable, "-m", "asyncreload", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert f"http://127.0.0.1:{live_port}/__asyncreload__/live.js" in done.stderr


# -- run --live-reload-port: a server that run restarts ---------------------------------------

PAGE_SERVER = """\
import http.server
import sys

VERSION = {version!r}
PAGE = ("<!doctype html><html><head><title>" + VERSION + "</title></head><body>"
        "<script>sessionStorage.loads = Number(sessionStorage.loads || 0) + 1</script>"
        '<script src="http://127.0.0.1:' + sys.argv[2] + '/__asyncreload__/live.js"></script>'
        "</body></html>").encode()

class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Page).serve_forever()
"""


def answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_run_reloads_the_pages_once_the_restarted_server_listens(
    tmp_path: Path, browser: Page
) -> None:
    save(tmp_path / "server.py", PAGE_SERVER.format(version="run 1"))
    app_port, live_port = free_port(), free_port()
    cli = CLI(
        "run", "--live-reload-port", str(live_port), "--",
        sys.executable, "server.py", str(app_port), str(live_port), cwd=tmp_path,
    )  # fmt: skip
    try:
        line = cli.wait_line(lambda s: "live reload:" in s, stream="stderr")
        assert f'<script src="http://127.0.0.1:{live_port}/__asyncreload__/live.js">' in line
        wait_for(lambda: answers(app_port), timeout=30, what="the server to listen")
        browser.open(f"http://127.0.0.1:{app_port}/")
        browser.wait_for(TITLE, "run 1")
        for version, loads in (("run 2", "2"), ("run 3", "3")):
            save(tmp_path / "server.py", PAGE_SERVER.format(version=version))
            browser.wait_for(TITLE, version)
            assert browser.evaluate("sessionStorage.loads") == loads
    finally:
        cli.stop()


def test_run_says_in_one_line_when_the_live_reload_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "asyncreload", "run", "--live-reload-port", str(port),
             "--", "true"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"asyncreload: error: can't serve live reload on 127.0.0.1:{port}: Address already in use"
    )


def test_the_ports_a_process_tree_listens_on_are_read_from_proc() -> None:
    port = free_port()
    # A shell whose child listens: the port is the tree's, not only the first process's.
    listen = (f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); "
              "s.listen(); time.sleep(60)")  # fmt: skip
    tree = subprocess.Popen(["sh", "-c", f'{sys.executable} -c "{listen}"; :'])
    idle = subprocess.Popen(["sleep", "60"])
    try:
        wait_for(lambda: port in listening_ports(tree.pid), timeout=30, what="the port")
        assert listening_ports(tree.pid) == {port}
        assert listening_ports(idle.pid) == set()
    finally:
        for pid in _subreaper.descendants(tree.pid):
            os.kill(pid, signal.SIGKILL)
        for process in (tree, idle):
            process.kill()
            process.wait()


# -- the middleware alone ---------------------------------------------------------------------


async def respond(
    headers: list[tuple[bytes, bytes]], *chunks: bytes, path: str = "/", static: str = ""
) -> list[dict[str, Any]]:
    """What the client gets when the app sends ``headers`` and ``chunks`` through live reload
    (for a request of ``path``, with static files under the URL ``static``)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": i < len(chunks) - 1})  # fmt: skip

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    await live.LiveReload(app, [static])({"type": "http", "path": path}, receive, send)
    return sent


def body(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def header(sent: list[dict[str, Any]], name: bytes) -> bytes | None:
    return dict(sent[0]["headers"]).get(name)


HTML = [(b"content-type", b"text/html; charset=utf-8")]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_page_gets_the_script_before_its_last_body_end_and_a_right_length() -> None:
    page = b"<html><body><p>a</p><!-- </body> in a comment --></BODY ></html>"
    sent = await respond(
        [*HTML, (b"content-length", str(len(page)).encode())], page[:20], page[20:]
    )
    got = body(sent)
    assert got.startswith(page[: page.rindex(b"</BODY")] + b"<script src=")
    assert got.endswith(b"</script></BODY ></html>")
    assert header(sent, b"content-length") == str(len(got)).encode()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_page_without_a_body_end_gets_it_before_the_head_end() -> None:
    got = body(await respond(HTML, b"<html><head><title>t</title></head>"))
    assert b"<script src=" in got and got.endswith(b"</script></head>")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("headers", "chunks"),
    [
        ([(b"content-type", b"application/json")], [b'{"a": "</body>"}']),
        ([*HTML, (b"content-encoding", b"gzip")], [b"\x1f\x8b</body>"]),
        (HTML, [b"<div hx-swap-oob='true'>a fragment</div>"]),
        ([(b"content-type", b"text/plain")], [b"</body>"]),
    ],
    ids=["json", "compressed", "fragment", "text"],
)
async def test_what_is_not_a_whole_page_passes_through_as_it_was(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    assert body(await respond(headers, *chunks)) == b"".join(chunks)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_page_too_long_to_hold_streams_on_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "MAX_BUFFERED", 10)
    chunks = [b"<html><body>", b"0123456789", b"more", b"</body></html>"]
    sent = await respond(HTML, *chunks)
    assert body(sent) == b"".join(chunks)
    assert header(sent, b"content-length") is None  # not a length it could know


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_static_files_are_asked_for_again_unless_the_app_says_how_to_cache_them() -> None:
    css = [(b"content-type", b"text/css"), (b"last-modified", b"Tue, 01 Dec 2026 10:00:00 GMT")]
    got = await respond(css, b"h1 {}", path="/static/site.css", static="/static/")
    assert header(got, b"cache-control") == b"no-cache"
    assert body(got) == b"h1 {}"
    own = [*css, (b"cache-control", b"max-age=60")]
    got = await respond(own, b"h1 {}", path="/static/site.css", static="/static/")
    assert header(got, b"cache-control") == b"max-age=60"
    # Not a static file: as the app made it.
    got = await respond(css, b"h1 {}", path="/style", static="/static/")
    assert header(got, b"cache-control") is None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_once_handed_over_a_page_asked_on_an_old_connection_goes_to_the_new_worker() -> None:
    # The browser may send the reload on a keep-alive connection to the old worker: it sends it
    # to the same URL again, which the browser asks on a new connection, which the new worker
    # accepts (the old one no longer does).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HTML})
        await send({"type": "http.response.body", "body": b"<html><body>old</body></html>"})

    middleware = live.LiveReload(app)
    middleware.end_streams(handed_over=True)

    async def get(headers: list[tuple[bytes, bytes]], method: str = "GET") -> list[Any]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": method, "path": "/a", "query_string": b"b=1",
                 "headers": headers}  # fmt: skip
        await middleware(scope, receive, send)
        return sent

    navigation = [(b"sec-fetch-mode", b"navigate"), (b"sec-fetch-dest", b"document")]
    sent = await get(navigation)
    assert sent[0]["status"] == 307
    assert header(sent, b"location") == b"/a?b=1"
    assert header(sent, b"connection") == b"close"
    # What is not a navigation is the app's to answer, as before.
    assert (await get([(b"sec-fetch-mode", b"cors")]))[0]["status"] == 200
    assert (await get(navigation, method="POST"))[0]["status"] == 200
