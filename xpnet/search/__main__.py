"""``python -m xpnet.search ARGS`` = ``xpnet search ARGS`` (also how --workers starts its processes)."""

import sys

from xpnet.search.cli import main

sys.exit(main())
