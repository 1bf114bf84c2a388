"""``python -m xpnet COMMAND [ARGS]``: the same as the ``xpnet`` command (see :mod:`xpnet.cli`)."""

from __future__ import annotations

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
