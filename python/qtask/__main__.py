"""``python -m qtask``: the same as the ``qtask`` command."""

from .cli import main

raise SystemExit(main())
