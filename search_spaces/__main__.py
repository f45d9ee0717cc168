"""``python -m search_spaces KIND --config JSON|@FILE --out DIR``: see :mod:`search_spaces.cli`."""

from search_spaces.cli import main

raise SystemExit(main())
