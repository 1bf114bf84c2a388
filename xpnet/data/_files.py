"""Atomic file writes: a file under its final name is always complete.

Downloads, IDX files and the decoded cache are first written to a temporary
file in the same folder and renamed over the final name only once they are
complete (and verified). An interrupted or failed write leaves nothing a later
run could mistake for good data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".part"


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it to ``dest`` if the block succeeds.

    Any exception in the block (KeyboardInterrupt included) removes the
    temporary file and propagates, so ``dest`` is either untouched or complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TEMP_SUFFIX, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes 0600 files; data files are not secrets.
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(dest: Path, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically; return ``dest``."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(dest)


def digest(data: bytes, algorithm: str) -> str:
    """Hex digest of ``data`` ('md5' or 'sha256'); MD5 only for matching published sums."""
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
