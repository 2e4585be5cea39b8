"""``python -m embplat`` is the ``platform`` command."""

from embplat.cli.app import main

main()
