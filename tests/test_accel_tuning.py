"""Host tuning (xpnet.accel.tuning): BLAS threads and glibc's malloc, both the application's call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xpnet.accel import tuning


def test_blas_thread_count_can_be_read_and_set() -> None:
    info = tuning.blas_info()
    if info["threads"] is None:
        pytest.skip(f"NumPy's BLAS is not one xpnet can reach ({info['name']})")
    old = info["threads"]
    try:
        assert tuning.set_blas_threads(1)
        assert tuning.blas_info()["threads"] == 1
    finally:
        tuning.set_blas_threads(old)


def test_keep_freed_host_memory_is_idempotent_and_can_be_refused(tmp_path: Path) -> None:
    first = tuning.keep_freed_host_memory()
    assert first is tuning.keep_freed_host_memory()
    assert tuning.host_memory_kept() is first
    root = str(Path(__file__).resolve().parents[1])
    code = ("from xpnet.accel import tuning; import xpnet.nets; "
            "print(tuning.host_memory_kept(), tuning.keep_freed_host_memory())")
    for env_value, want in (("0", "False False"), ("1", "False True")):
        env = {"XPNET_KEEP_FREED_MEMORY": env_value, "PATH": "/usr/bin:/bin", "PYTHONPATH": root}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                             check=True)
        assert out.stdout.strip() == want  # importing xpnet never tunes the allocator; asking does
