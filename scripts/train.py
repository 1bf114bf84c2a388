#!/usr/bin/env python3
"""Train a net: ``python scripts/train.py --help``. The same as the ``xpnet-train`` command."""

import sys
from pathlib import Path

# Run from a checkout without installing: make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpnet.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
