#!/usr/bin/env python3
"""``make gpu-bundle``: everything a short, offline GPU host needs for the GPU proof, in one folder.

The GPU hosts the proof runs on have Python 3.12 with CuPy, NumPy, PyTorch, pytest, matplotlib and tqdm, but no
package registry, no MNIST and not array-api-compat, array-api-strict or xpnet. Run here (PyPI reachable,
XPNET_DATA_DIR holding MNIST), this writes ``gpu-bundle/`` (git-ignored, at most 48 MiB):

- ``wheels/``: array-api-compat and array-api-strict at the versions backends/ pins, for CPython 3.12 on
  manylinux x86_64 (``pip download --only-binary=:all:``), and xpnet itself (``pip wheel --no-deps .``);
- ``mnist/``: the four MNIST .gz files, checked against the published MD5 sums;
- ``src/``: the checkout's tracked files minus the package and the pictures (the tests and scripts the check
  runs; xpnet itself comes from its wheel);
- ``run.sh`` (scripts/gpu_bundle_run.sh): installs the wheels into a temp folder and runs the staged check,
  leaving the report in the folder its first argument names; ``manifest.json``: what is inside, with hashes.

The folder is built beside its destination and renamed into place: a failed build leaves the old one intact.
Bad input (no MNIST, a failed download, too big) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 48 * 2**20
PYTHON_VERSION, PLATFORM = "3.12", "manylinux2014_x86_64"
PINNED = (("array-api-compat", "backends/cpu.txt"), ("array-api-strict", "backends/test.txt"))
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")
SKIP_FROM_SRC = re.compile(r"^(xpnet/|.*\.png$)")


class BundleError(Exception):
    """What stops the bundle from being built, in one line."""


def pinned_version(name: str, lock: str) -> str:
    m = re.search(rf"^{re.escape(name)}==([^\s\\]+)", (ROOT / lock).read_text(), re.MULTILINE)
    if not m:
        raise BundleError(f"{lock} pins no {name} (run make lock)")
    return m.group(1)


def mnist_source() -> Path:
    base = os.environ.get("XPNET_DATA_DIR")
    if not base:
        raise BundleError("XPNET_DATA_DIR is not set: point it at a folder holding mnist/ (the four .gz files)")
    for d in (Path(base) / "mnist", Path(base)):
        if all((d / f).is_file() for f in MNIST_FILES):
            return d
    raise BundleError(f"XPNET_DATA_DIR={base}: neither it nor its mnist/ holds all of {', '.join(MNIST_FILES)}")


def published_md5() -> dict[str, str]:
    """File name -> the published MD5 of its .gz, as xpnet's downloader checks it."""
    sys.path.insert(0, str(ROOT))
    from xpnet.data.sources import MNIST

    return {f.gz_name: f.gz_md5 for f in MNIST.files}


def _run(cmd: list[str], what: str) -> None:
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip() or run.stdout.strip() or f"exit {run.returncode}").splitlines()[-1]
        raise BundleError(f"{what} failed: {last}")


def add_wheels(dest: Path) -> None:
    dest.mkdir()
    wanted = [f"{name}=={pinned_version(name, lock)}" for name, lock in PINNED]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
          "--python-version", PYTHON_VERSION, "--implementation", "cp", "--platform", PLATFORM, "-d", str(dest),
          *wanted], f"pip download {' '.join(wanted)}")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), "."], "pip wheel .")


def add_mnist(dest: Path) -> None:
    src, md5 = mnist_source(), published_md5()
    dest.mkdir()
    for name in MNIST_FILES:
        digest = hashlib.md5((src / name).read_bytes()).hexdigest()
        if md5.get(name) != digest:
            raise BundleError(f"{src / name}: MD5 {digest} is not the published {md5.get(name, '?')}")
        shutil.copyfile(src / name, dest / name)


def add_src(dest: Path, skip: tuple[Path, ...] = ()) -> str:
    """The checkout's files (tracked, and new ones git does not ignore) the check runs: tests, scripts, their
    data; returns the commit they come from."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        raise BundleError(f"{ROOT} is not a git checkout: the bundle copies its tracked files")
    for rel in filter(None, listed.stdout.split("\0")):
        path = (ROOT / rel).resolve()
        if SKIP_FROM_SRC.match(rel) or not path.is_file() or any(path.is_relative_to(d) for d in skip):
            continue  # (skip: the bundle being built and the old one, where git does not ignore them)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip()


def manifest(folder: Path, commit: str) -> dict[str, object]:
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size,
                                          "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
             for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_relative_to(folder / "src")}
    return {"commit": commit, "python": PYTHON_VERSION, "platform": PLATFORM, "files": files}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(out: Path) -> Path:
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the bundle is for copying around
    try:
        add_mnist(tmp / "mnist")  # first: the cheap check of what the user must provide
        add_wheels(tmp / "wheels")
        commit = add_src(tmp / "src", skip=(tmp, out, out.with_name(f".{out.name}.old")))
        shutil.copy2(ROOT / "scripts" / "gpu_bundle_run.sh", tmp / "run.sh")
        (tmp / "run.sh").chmod(0o755)
        (tmp / "manifest.json").write_text(json.dumps(manifest(tmp, commit), indent=2) + "\n")
        size = folder_bytes(tmp)
        if size > MAX_BYTES:
            raise BundleError(f"the bundle is {size / 2**20:.1f} MiB, over the {MAX_BYTES // 2**20} MiB limit")
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_bundle.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "gpu-bundle", help="the bundle folder (default gpu-bundle/)")
    args = p.parse_args(argv)
    try:
        out = build(args.out)
    except BundleError as exc:
        print(f"gpu_bundle.py: {exc}", file=sys.stderr)
        return 2
    print(f"gpu_bundle.py: {out} ({folder_bytes(out) / 2**20:.1f} MiB); on the GPU host: bash {out.name}/run.sh "
          "REPORT_DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
