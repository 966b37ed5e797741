"""``python -m bench.match``: see :mod:`bench.match.run`."""

from bench.match.run import main

main()
