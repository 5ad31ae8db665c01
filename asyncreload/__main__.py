"""``python -m asyncreload``: the same as the ``asyncreload`` command."""

from .cli import main

if __name__ == "__main__":
    main()
