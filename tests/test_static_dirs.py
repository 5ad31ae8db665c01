"""Where an app keeps its static files, read off the loaded app (the worker's side of live
reload's asset updates); the frameworks' own objects, in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from flask import Blueprint, Flask
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount, Router
from starlette.staticfiles import StaticFiles

from asyncreload._serve.static_dirs import Place, find


def dirs(tmp_path: Path, *names: str) -> list[Path]:
    made = [tmp_path / n for n in names]
    for d in made:
        d.mkdir(parents=True)
    return made


def test_starlette_mounts_nested_and_behind_middleware(tmp_path: Path) -> None:
    top, nested = dirs(tmp_path, "static", "docs/assets")
    inner = Router(routes=[Mount("/assets", app=StaticFiles(directory=nested))])
    app = Starlette(
        routes=[
            Mount("/static", app=StaticFiles(directory=top)),
            Mount("/docs", app=inner),
        ]
    )
    expected = [Place(str(top), "/static/"), Place(str(nested), "/docs/assets/")]
    assert find(app) == expected
    assert find(GZipMiddleware(app)) == expected  # middleware keep the app as .app


def test_fastapi_mounts(tmp_path: Path) -> None:
    from fastapi import FastAPI

    (static,) = dirs(tmp_path, "static")
    app = FastAPI()
    app.mount("/static", StaticFiles(directory=static), name="static")
    assert find(app) == [Place(str(static), "/static/")]


def test_flask_static_folders_and_blueprints(tmp_path: Path) -> None:
    static, shop = dirs(tmp_path, "static", "shop/static")
    app = Flask("site", root_path=str(tmp_path))
    blueprint = Blueprint("shop", "shop", static_folder=str(shop), static_url_path="/files")
    app.register_blueprint(blueprint, url_prefix="/shop")
    assert find(app) == [Place(str(static), "/static/"), Place(str(shop), "/shop/files/")]


def test_what_is_missing_or_installed_is_left_out(tmp_path: Path) -> None:
    app = Flask("site", root_path=str(tmp_path))  # no static/ there
    assert find(app) == []
    installed = Path(sys.prefix) / "lib"
    if not installed.is_dir():
        pytest.skip(f"{installed} is not a directory")
    site = Starlette(routes=[Mount("/s", app=StaticFiles(directory=installed))])
    assert find(site) == []


def test_an_app_of_no_known_framework_has_none() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        pass

    assert find(app) == []
    assert find(object()) == []
