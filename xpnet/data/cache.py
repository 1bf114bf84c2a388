"""The decoded cache for image folders and archives: uint8 arrays keyed by what they were made from.

Decoding 60,000 pictures takes minutes; reading their arrays back takes a fraction of a second.
The key lists every source file's path, size and modification time plus the options that shape
the arrays (image size, channels, split), so a changed, added or removed file, or another
``--image-size``, makes a new entry instead of reusing a stale one. Entries are plain ``.npz``
(read with ``allow_pickle=False``) written atomically, so an interrupted write leaves no entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.data._files import atomic_path
from xpnet.data.sources import cache_root

logger = logging.getLogger("xpnet.data")

CACHE_FORMAT = 1
ARRAYS = ("x_train", "t_train", "x_test", "t_test", "classes")


def file_stamps(paths: Iterable[Path]) -> list[list[Any]]:
    """(path, size, mtime in ns) of each file, in the order given: what the cache key is made of."""
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def make_key(kind: str, stamps: list[list[Any]], options: dict[str, Any]) -> str:
    return json.dumps({"format": CACHE_FORMAT, "kind": kind, "options": options, "files": stamps},
                      sort_keys=True)


def entry_path(kind: str, key: str) -> Path:
    """One file per key: ``<cache>/decoded/<kind>-<sha256 of the key>.npz``."""
    return cache_root() / "decoded" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def read(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``key``, or None; an unreadable entry is removed, never trusted."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"][()]) != key:
                return None  # a hash collision in 80 bits: treat as a miss
            arrays = {k: z[k] for k in ARRAYS}
    except Exception as exc:  # our own file: any failure means rebuild it
        logger.warning("decoded cache %s is corrupt (%s: %s); decoding again", path, exc.__class__.__name__, exc)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return None
    return arrays


def write(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` under ``key``; a cache we cannot write only costs the next run a decode."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), **{k: arrays[k] for k in ARRAYS})
    except OSError as exc:
        logger.warning("could not write the decoded cache %s (%s); later runs will decode again", path, exc)
