"""``python -m bench``: run the benchmark (see bench/README.md)."""

from bench._cli import main

raise SystemExit(main())
