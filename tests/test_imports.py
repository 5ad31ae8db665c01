"""The warm standby's plan (``_serve/imports.py``): what a change reaches, and when the whole
app must be imported again. Pure: a record made by hand; the recorder itself runs in the real
workers of test_serve_warm.py."""

from __future__ import annotations

import importlib.machinery

from asyncreload._serve.imports import Full, Record, Warm, plan

P = "/p/app"


def record(**fields: object) -> Record:
    files = {
        "app": f"{P}/__init__.py",
        "app.db": f"{P}/db.py",
        "app.models": f"{P}/models.py",
        "app.routes": f"{P}/routes.py",
        "app.main": f"{P}/main.py",
    }
    importers = {
        "app.db": {"app.models"},
        "app.models": {"app.routes", "app.main"},
        "app.routes": {"app.main"},
    }
    made = Record(files=files, order=list(files), importers=importers)
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def decide(made: Record, *changed: str, exists: bool = True) -> Warm | Full:
    return plan(made, [f"{P}/{c}" for c in changed], exists=lambda _: exists, root="/p")


def test_the_change_and_every_importer_transitively_in_load_order() -> None:
    assert decide(record(), "db.py") == Warm(("app.db", "app.models", "app.routes", "app.main"))
    assert decide(record(), "routes.py") == Warm(("app.routes", "app.main"))
    assert decide(record(), "main.py") == Warm(("app.main",))


def test_a_file_nobody_imported_or_read_reaches_nothing() -> None:
    assert decide(record(), "templates/index.html") == Warm(())
    assert decide(record(), "scripts/seed.py") == Warm(())


def test_a_data_file_counts_as_its_readers_and_a_listed_directory_as_its_listers() -> None:
    made = record(
        readers={f"{P}/settings.json": {"app.db"}}, listers={f"{P}/plugins": {"app.routes"}}
    )
    assert decide(made, "settings.json") == Warm(("app.db", "app.models", "app.routes", "app.main"))
    assert decide(made, "plugins/new.py") == Warm(("app.routes", "app.main"))


def test_what_the_standby_wrote_itself_reaches_nothing() -> None:
    assert decide(record(wrote={f"{P}/models.py"}), "models.py") == Warm(())


def test_a_removed_module_is_a_full_re_import() -> None:
    assert decide(record(), "routes.py", exists=False) == Full("app/routes.py was removed")


def test_a_new_module_that_was_imported_in_vain_before_is_a_full_re_import() -> None:
    made = record(missing={"app.extra"})
    assert decide(made, "extra.py") == Full("app/extra.py is new, and was imported before in vain")
    assert decide(record(), "extra.py") == Warm(())  # nobody looked for it


def test_a_pinned_module_in_the_reach_is_a_full_re_import() -> None:
    made = record(pinned={"app.models": "Django's app registry holds its classes"})
    assert decide(made, "db.py") == Full(
        "app.models changed, and Django's app registry holds its classes"
    )
    assert decide(made, "routes.py") == Warm(("app.routes", "app.main"))


def test_a_c_extension_in_the_reach_is_a_full_re_import() -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    made = record()
    made.files["app.fast"] = f"{P}/fast{suffix}"
    made.importers["app.fast"] = {"app.main"}
    assert decide(made, f"fast{suffix}") == Full("app.fast is a C extension")
