"""The tiny programs the restart and serve measurements run under each reloader.

They are copied into a fresh project directory for each reloader (``_reloaders.write_project``):
``restart_script.py`` as ``bench_script.py`` (it imports ``bench_version.py``, which the harness
writes and edits), ``werkzeug_main.py`` beside it, and the two apps, ``main.py`` (ASGI) and
``flask_app.py`` (WSGI), whose ``VERSION = ...`` line each edit rewrites.

The heavy measurement's sites are generated, not copied: ``heavy.py`` writes the FastAPI package
(150 models, 40 tables, 300 routes) and ``django_site.py`` makes a Django site with Django's own
``startproject`` and ``startapp``.
"""
