"""The benchmark harness: asyncreload side by side with the peers (``python -m bench``).

The data flow, by module: ``_trees`` writes the trees (``_fuse`` mounts some of them), ``_peers``
names the watchers, each of which runs in its own process (``runners/``, driven by
``_runner``); ``_measure`` takes the figures, ``_stats`` reduces them, ``_report`` writes the
table, and ``_cli`` runs the whole thing.
"""
