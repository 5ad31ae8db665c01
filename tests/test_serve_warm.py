"""Warm imports: a standby imports the app's own modules ahead of time, and a change imports
again only the modules it reaches. Each trap is checked twice: by the response (never stale)
and by the reload's log line (which way it went). Real workers, real HTTP."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from asyncreload._serve.supervisor import ReloadStrategy

from .helpers import CLI, eventually
from .test_serve import serving

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    # What is tested here happens in the workers, which run uvicorn's own loop whatever the
    # supervisor's: asyncio, and trio for the first case only (the supervisor's side of it).
    return "asyncio"


MAIN = """\
from . import holder, models
from .cycle_a import cycle

async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # no lifespan: uvicorn's "auto" goes on without it
    from . import lazy  # at the first request only
    body = f"{models.NAME} {holder.HELD.kind} {cycle()} {lazy.VALUE} MAIN1"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})
"""

FILES = {
    "app/__init__.py": "",
    "app/models.py": 'NAME = "m1"\n\nclass User:\n    kind = NAME\n',
    # An unchanged module that holds an object of a changed one.
    "app/holder.py": "from .models import User\n\nHELD = User\n",
    "app/cycle_a.py": "from . import cycle_b\n\ndef cycle():\n    return cycle_b.VALUE\n",
    "app/cycle_b.py": 'from . import cycle_a  # noqa\n\nVALUE = "c1"\n',
    "app/lazy.py": 'VALUE = "l1"\n',
    "app/main.py": MAIN,
}


def save(root: Path, name: str, text: str) -> None:
    # Written whole and renamed into place, as editors do.
    tmp = root / f"{name}.tmp"
    tmp.write_text(text)
    tmp.replace(root / name)


class Site:
    def __init__(self, root: Path, where: str, caplog: pytest.LogCaptureFixture) -> None:
        self.root, self.where, self.caplog = root, where, caplog
        self.client = httpx.AsyncClient(timeout=30)

    def lines(self, what: str) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if what in r.getMessage()]

    async def body(self) -> str:
        response = await self.client.get(self.where, headers={"Connection": "close"})
        return response.text

    async def shows(self, text: str) -> None:
        """Wait until every part of ``text`` is in the response (never an older one after)."""
        seen: list[str] = []

        async def check() -> bool:
            seen.append(await self.body())
            return all(part in seen[-1] for part in text.split())

        with_deadline = eventually(lambda: seen and all(p in seen[-1] for p in text.split()),
                                   what=f"the response to show {text!r}",
                                   detail=lambda: f"last: {seen[-1:]}")  # fmt: skip
        # Poll the app while waiting.
        import anyio

        async with anyio.create_task_group() as tg:

            async def poll() -> None:
                while True:
                    await check()
                    await anyio.sleep(0.02)

            tg.start_soon(poll)
            await with_deadline
            tg.cancel_scope.cancel()

    async def warm(self, count: int) -> None:
        """Wait until a standby has imported ``count`` or more of the app's modules."""

        def ready() -> bool:
            return any(int(line.split(" imported ")[1].split()[0]) >= count
                       for line in self.lines("of the app's modules ahead of time"))  # fmt: skip

        await eventually(ready, what=f"a standby warm with {count} modules")

    async def edit(self, name: str, text: str, shows: str) -> str:
        """Save ``name``; once the app shows ``shows``, the reload's log line."""
        before = len(self.lines("reloaded in"))
        save(self.root, name, text)
        await self.shows(shows)
        await eventually(lambda: len(self.lines("reloaded in")) > before, what="the log line")
        return self.lines("reloaded in")[before]


@asynccontextmanager
async def site(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    files: dict[str, str] = FILES,
    shows: str = "m1 m1 c1 l1 MAIN1",
    **options: object,
) -> AsyncIterator[Site]:
    caplog.set_level(logging.DEBUG, logger="asyncreload.serve")
    (tmp_path / "app").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    async with serving(tmp_path, "app.main:app", **options) as where:
        served = Site(tmp_path, where, caplog)
        async with served.client:
            await served.shows(shows)
            yield served


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_change_imports_again_only_what_it_reaches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site(tmp_path, caplog) as app:
        await app.warm(7)  # the lazy module too, loaded at the first request
        line = await app.edit("app/main.py", MAIN.replace("MAIN1", "MAIN2"), "m1 MAIN2")
        assert "(1 module imported again: app.main)" in line
        # The unchanged holder holds the changed module's class: it is imported again too.
        models = FILES["app/models.py"].replace("m1", "m2")
        line = await app.edit("app/models.py", models, "m2 m2 c1 l1 MAIN2")
        assert "(3 modules imported again: app.models, app.holder, app.main)" in line
        # Circular imports: both ends, and whoever imports them.
        cycle_b = FILES["app/cycle_b.py"].replace("c1", "c2")
        line = await app.edit("app/cycle_b.py", cycle_b, "m2 c2 l1 MAIN2")
        assert "cycle_a" in line and "cycle_b" in line and "app.main" in line
        assert "app.models" not in line
        # A module imported lazily, in a function.
        line = await app.edit("app/lazy.py", 'VALUE = "l2"\n', "m2 c2 l2 MAIN2")
        assert "(1 module imported again: app.lazy)" in line


async def test_a_file_read_at_import_counts_as_its_modules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = {
        **FILES,
        "app/data.json": '{"greeting": "hello"}',
        "app/settings.py": "import json, pathlib\n"
        "DATA = json.loads((pathlib.Path(__file__).parent / 'data.json').read_text())\n",
        "app/main.py": MAIN.replace("from . import holder, models",
                                    "from . import holder, models, settings").replace(
            "MAIN1", "{settings.DATA['greeting']}"),
    }  # fmt: skip
    includes = ("*.py", "*.json")
    async with site(tmp_path, caplog, files, "m1 hello", reload_includes=includes) as app:
        await app.warm(8)
        line = await app.edit("app/data.json", '{"greeting": "bonjour"}', "m1 bonjour")
        assert "(2 modules imported again: app.settings, app.main)" in line


async def test_a_removed_module_is_a_full_re_import(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site(tmp_path, caplog) as app:
        await app.warm(7)
        (tmp_path / "app/cycle_b.py").unlink()
        await eventually(lambda: app.lines("failed to load"), what="the failure")
        assert "cycle_b" in app.lines("failed to load")[0]
        assert "m1 m1 c1 l1 MAIN1" in await app.body()  # the old version serves on
        line = await app.edit("app/cycle_b.py", FILES["app/cycle_b.py"].replace("c1", "c3"),
                              "m1 c3")  # fmt: skip
        assert "imported again" in line or "full re-import" in line
        assert app.lines("can't serve this change (app/cycle_b.py was removed)")


async def test_an_import_that_fails_over_the_kept_modules_goes_again_in_a_fresh_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A registry (unchanged, so kept) that refuses a second registration of the same name, as
    # SQLAlchemy's MetaData refuses a table defined twice.
    (tmp_path / "app").mkdir()
    (tmp_path / "app/registry.py").write_text(
        "NAMES = set()\n\ndef register(name):\n"
        "    if name in NAMES:\n        raise ValueError(f'{name} is registered already')\n"
        "    NAMES.add(name)\n"
    )
    models = "from . import registry\nregistry.register('user')\n" + FILES["app/models.py"]
    async with site(tmp_path, caplog, {**FILES, "app/models.py": models}) as app:
        await app.warm(8)
        line = await app.edit("app/models.py", models.replace("m1", "m4"), "m4 m4")
        assert "(full re-import: the import over the kept modules failed (ValueError))" in line
        assert not app.lines("failed to load")


async def test_a_syntax_error_in_the_changed_file_fails_and_the_old_version_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site(tmp_path, caplog) as app:
        await app.warm(7)
        save(tmp_path, "app/models.py", "NAME = (\n")
        await eventually(lambda: app.lines("failed to load"), what="the failure")
        assert "SyntaxError" in app.lines("failed to load")[0]
        assert not app.lines("full re-import")
        assert "m1 m1 c1 l1 MAIN1" in await app.body()


@pytest.mark.parametrize(
    "options", [{"warm_imports": False}, {"strategy": ReloadStrategy.RESTART}], ids=str
)
async def test_restart_strategy_and_no_warm_imports_import_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, options: dict[str, object]
) -> None:
    async with site(tmp_path, caplog, **options) as app:
        line = await app.edit("app/models.py", FILES["app/models.py"].replace("m1", "m5"), "m5")
        assert "imported again" not in line and "full re-import" not in line
        assert not app.lines("ahead of time")


APP_MODELS = """\
from django.db import models


class {model}(models.Model):
    name = models.CharField(max_length=20)
"""
APP_VIEWS = """\
from django.http import HttpResponse

from .models import {model}


def index(request):
    return HttpResponse("{answer} " + {model}.__name__)
"""
APP_URLS = """\
from django.urls import path

from . import views

urlpatterns = [path("", views.index)]
"""


@pytest.fixture(scope="module")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``django-admin startproject`` site with two ``startapp`` apps, each with a model, a
    view and its URLconf."""
    root = tmp_path_factory.mktemp("django-site")
    django = [sys.executable, "-m", "django"]
    subprocess.run([*django, "startproject", "mysite", str(root)], check=True, timeout=120)
    for app, model in (("polls", "Question"), ("blog", "Post")):
        subprocess.run([*django, "startapp", app], cwd=root, check=True, timeout=120)
        (root / app / "models.py").write_text(APP_MODELS.format(model=model))
        (root / app / "views.py").write_text(APP_VIEWS.format(model=model, answer=f"{app}1"))
        (root / app / "urls.py").write_text(APP_URLS)
    settings = root / "mysite" / "settings.py"
    text = settings.read_text()
    settings.write_text(text.replace("INSTALLED_APPS = [", 'INSTALLED_APPS = [\n    "polls",\n'
                                     '    "blog",', 1))  # fmt: skip
    urls = root / "mysite" / "urls.py"
    urls.write_text(urls.read_text().replace("from django.urls import path", "from django.urls "
                    "import include, path").replace("urlpatterns = [", 'urlpatterns = [\n    '
                    'path("polls/", include("polls.urls")),\n    path("blog/", '
                    'include("blog.urls")),', 1))  # fmt: skip
    return root


async def test_a_django_site_keeps_its_other_app_and_its_registry_warm(
    django_site: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "site"
    shutil.copytree(django_site, root)
    caplog.set_level(logging.DEBUG, logger="asyncreload.serve")
    async with serving(root, "mysite.wsgi:application") as where:
        app = Site(root, where + "/polls/", caplog)
        async with app.client:
            await app.shows("polls1 Question")
            assert (await app.client.get(where + "/blog/")).text == "blog1 Post"
            await app.warm(12)  # the URLconfs and views too, imported at the first requests
            views = APP_VIEWS.format(model="Question", answer="polls2")
            line = await app.edit("polls/views.py", views, "polls2 Question")
            # blog's modules, the models and the settings are kept. (The WSGI module is imported
            # again too: Django listed the app's directory as it set up.)
            assert (
                "(4 modules imported again: mysite.wsgi, polls.views, polls.urls, "
                "mysite.urls)" in line
            )
            assert (await app.client.get(where + "/blog/")).text == "blog1 Post"
            # A model lives in Django's app registry: never imported over it.
            models = APP_MODELS.format(model="Query")
            views = APP_VIEWS.format(model="Query", answer="polls3")
            save(root, "polls/views.py", views)
            line = await app.edit("polls/models.py", models, "polls3 Query")
            assert "full re-import: polls.models changed, and Django's app registry" in line


async def test_the_env_file_is_read_before_the_app_and_its_change_is_a_full_re_import(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("dotenv", reason="--env-file needs python-dotenv")
    env = tmp_path / "app.env"
    env.write_text("GREETING=hello\n")
    files = {  # read at import: uvicorn loads the file only after the app is imported
        **FILES,
        "app/models.py": "import os\n\nNAME = os.environ['GREETING']\n\n\nclass User:\n"
        "    kind = NAME\n",
    }
    async with site(tmp_path, caplog, files, "hello", env_file=str(env)) as app:
        await app.warm(7)
        line = await app.edit("app.env", "GREETING=bonjour\n", "bonjour")
        assert "(full re-import: app.env changed)" in line


@pytest.mark.parametrize("how", ["flag", "pyproject"])
def test_the_command_line_turns_warm_imports_off(tmp_path: Path, how: str) -> None:
    (tmp_path / "app").mkdir()
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    flags = ["--no-warm-imports"] if how == "flag" else []
    if how == "pyproject":
        (tmp_path / "pyproject.toml").write_text("[tool.asyncreload]\nwarm-imports = false\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with CLI("serve", "app.main:app", "--port", str(port), "-v", *flags, cwd=tmp_path) as cli:
        cli.wait_line(lambda s: "serving app.main:app" in s, stream="stderr")
        url = f"http://127.0.0.1:{port}/"
        assert "MAIN1" in httpx.get(url, timeout=30).text
        save(tmp_path, "app/main.py", MAIN.replace("MAIN1", "MAIN2"))
        line = cli.wait_line(lambda s: "reloaded in" in s, stream="stderr")
        assert "MAIN2" in httpx.get(url, timeout=30).text
    assert "imported again" not in line and "full re-import" not in line
    assert not any("ahead of time" in s for s in cli.stderr)


FLASK_FILES = {
    "app/__init__.py": "",
    "app/models.py": 'NAME = "f1"\n',
    "app/views.py": "from flask import Blueprint\n\nfrom . import models\n\n"
    'pages = Blueprint("pages", __name__)\n\n\n@pages.get("/")\ndef index():\n'
    '    return f"{models.NAME} VIEWS1"\n',
    "app/main.py": "from flask import Flask\n\nfrom .views import pages\n\n"
    "app = Flask(__name__)\napp.register_blueprint(pages)\n",
}


async def test_a_flask_app_served_as_wsgi_keeps_its_unchanged_modules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site(tmp_path, caplog, FLASK_FILES, "f1 VIEWS1") as app:
        await app.warm(4)
        views = FLASK_FILES["app/views.py"].replace("VIEWS1", "VIEWS2")
        line = await app.edit("app/views.py", views, "f1 VIEWS2")
        assert "(2 modules imported again: app.views, app.main)" in line
        line = await app.edit("app/models.py", 'NAME = "f2"\n', "f2 VIEWS2")
        assert "(3 modules imported again: app.models, app.views, app.main)" in line
