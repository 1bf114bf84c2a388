"""``python -m xpnet.search ARGS`` = ``xpnet search ARGS`` (kept for old command lines; the command is
:mod:`xpnet.cli.search`, and its worker processes start as ``python -m xpnet search``)."""

import sys

from xpnet.cli.search import main

sys.exit(main())
