#!/usr/bin/env python3
"""Search hyper-parameters: ``python scripts/search.py --help``. The same as ``xpnet search``."""

import sys
from pathlib import Path

# Run from a checkout without installing: make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpnet.cli.search import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
