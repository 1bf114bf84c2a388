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


@pytest.mark.parametrize(("core", "pin", "flags", "says"), [
    ("Haswell", "Haswell", {"avx2", "avx512f"}, True),  # the CI VM: AVX-512 left unused
    ("Haswell", None, {"avx2", "avx512f"}, False),  # OpenBLAS's own choice: not ours to question
    ("SkylakeX", "SkylakeX", {"avx2", "avx512f"}, False),  # pinned, but to an AVX-512 kernel
    ("Haswell", "Haswell", {"avx2"}, False),  # the CPU has nothing more
])
def test_the_pin_note_speaks_only_when_a_pin_leaves_avx512_unused(core: str, pin: str | None, flags: set[str],
                                                                    says: bool) -> None:
    note = tuning.pin_note(core, pin, frozenset(flags))
    assert (note is not None) is says
    if says:
        assert note is not None and f"OPENBLAS_CORETYPE={pin}" in note and f"{core} kernel" in note


def test_blas_pin_and_cpu_flags_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert tuning.blas_pin() == "Haswell"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert tuning.blas_pin() is None
    if Path("/proc/cpuinfo").exists():
        assert tuning.cpu_flags(), "a Linux CPU lists some flags"
