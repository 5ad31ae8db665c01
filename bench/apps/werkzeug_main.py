"""``bench_script.main`` under werkzeug's reloader, as ``run_simple(use_reloader=True)`` runs it.

``run_with_reloader`` lives in the private ``werkzeug._reloader`` (the public name in
``werkzeug.serving`` went away in werkzeug 2.1); it is what Flask's ``flask run --reload`` uses.
The first process only re-runs this script with ``WERKZEUG_RUN_MAIN=true`` until a child exits
with a status other than 3; the child runs ``main`` in a thread and the stat loop beside it.
"""

from __future__ import annotations

import bench_script  # type: ignore[import-not-found]
from werkzeug._reloader import run_with_reloader

if __name__ == "__main__":
    run_with_reloader(bench_script.main)
