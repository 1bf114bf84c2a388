"""scripts/gpu_bundle.py (``make gpu-bundle``) and the run.sh it ships: what an offline GPU host lacks, in one
folder of at most 48 MiB; run.sh refuses at once, in one line, where there is no GPU."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mnist_dir
from xpnet import backend
from xpnet.data.sources import MNIST

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_bundle.py"
WHEEL = re.compile(r"^(?P<dist>[A-Za-z0-9_.]+)-(?P<version>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


def _build(out: Path, data_dir: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XPNET_DATA_DIR"}
    if data_dir is not None:
        env["XPNET_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT.resolve():
        pytest.skip(f"{ROOT} is not a git checkout of its own (a bundle's copy): the builder copies a checkout")
    mnist = mnist_dir()
    if mnist is None:
        pytest.skip("real MNIST not found: set XPNET_DATA_DIR to a folder holding mnist/")
    out = tmp_path_factory.mktemp("bundle") / "gpu-bundle"
    run = _build(out, mnist)
    if run.returncode == 2 and run.stderr.startswith("gpu_bundle.py: pip download"):
        pytest.skip(f"no package registry reachable here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    return out


def _pin(name: str, lock: str) -> str:
    m = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "backends" / lock).read_text(), re.MULTILINE)
    assert m, f"backends/{lock} pins {name}"
    return m.group(1)


def test_the_wheels_are_what_the_host_lacks_for_python_312_on_linux(bundle: Path) -> None:
    wheels = {m["dist"]: m for p in (bundle / "wheels").iterdir() if (m := WHEEL.match(p.name))}
    assert sorted(p.name for p in (bundle / "wheels").iterdir()) == sorted(m.string for m in wheels.values())
    assert set(wheels) == {"array_api_compat", "array_api_strict", "xpnet"}
    assert wheels["array_api_compat"]["version"] == _pin("array-api-compat", "cpu.txt")
    assert wheels["array_api_strict"]["version"] == _pin("array-api-strict", "test.txt")
    for m in wheels.values():
        assert set(m["py"].split(".")) & {"py3", "cp312", "py312"}, m.string
        assert m["plat"] == "any" or ("manylinux" in m["plat"] and m["plat"].endswith("x86_64")), m.string


def _readme_sha256(folder: Path) -> dict[str, str]:
    """The SHA-256 column of the .gz table in the dataset's README, where it has one."""
    readmes = sorted(folder.glob("README*"))
    rows = re.findall(r"^\| (\S+\.gz) \| \d+ \| [0-9a-f]{32} \| ([0-9a-f]{64}) \|$",
                      readmes[0].read_text() if readmes else "", re.MULTILINE)
    return dict(rows)


def test_mnist_is_the_four_published_files(bundle: Path) -> None:
    files = {p.name: p.read_bytes() for p in (bundle / "mnist").iterdir()}
    assert set(files) == {f.gz_name for f in MNIST.files}
    for f in MNIST.files:
        assert hashlib.md5(files[f.gz_name]).hexdigest() == f.gz_md5
    source = mnist_dir()
    assert source is not None
    published = _readme_sha256(source)
    if not published:
        pytest.skip(f"no README with SHA-256 sums beside {source}")
    assert {name: hashlib.sha256(data).hexdigest() for name, data in files.items()} == published


def test_the_bundle_fits_and_says_what_is_inside(bundle: Path) -> None:
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size <= 48 * 2**20
    manifest = json.loads((bundle / "manifest.json").read_text())
    for rel, facts in manifest["files"].items():
        assert hashlib.sha256((bundle / rel).read_bytes()).hexdigest() == facts["sha256"]
    assert {"run.sh", "wheels/" + next((bundle / "wheels").glob("xpnet-*")).name} <= set(manifest["files"])
    assert (bundle / "src" / "scripts" / "gpu_check.py").is_file() and (bundle / "src" / "tests").is_dir()
    assert not (bundle / "src" / "xpnet").exists(), "xpnet comes from its wheel, not a second copy"
    assert not [p for p in (bundle / "src").rglob("*") if p.suffix in (".whl", ".gz")], "no bundle inside src/"
    assert os.access(bundle / "run.sh", os.X_OK)


def test_the_wheels_install_offline_and_xpnet_comes_from_its_wheel(bundle: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), *map(str, (bundle / "wheels").glob("*.whl"))], check=True, timeout=300)
    run = subprocess.run([sys.executable, "-c", "import array_api_strict, xpnet; print(xpnet.__file__)"],
                         capture_output=True, text=True, cwd=bundle / "src", timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).is_relative_to(site)


def test_run_sh_exits_2_at_once_in_one_line_without_a_gpu(bundle: Path, tmp_path: Path) -> None:
    ok, _, _ = backend.cuda_status()
    if ok:
        pytest.skip("CUDA is usable here: run.sh would run the check")
    for python in ("python3", sys.executable):  # one without CuPy (most likely), one with CuPy but no GPU
        run = subprocess.run(["bash", str(bundle / "run.sh"), str(tmp_path / "report")], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "GPU_PYTHON": python})
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("run.sh: cannot run here: "), run.stderr
        assert "lacks" in lines[0] or "CUDA" in lines[0]
        assert not (tmp_path / "report").exists(), "nothing is written when it cannot run"


def test_bad_data_is_one_line_and_nothing_written(tmp_path: Path) -> None:
    out = tmp_path / "gpu-bundle"
    run = _build(out, None)
    assert run.returncode == 2 and run.stderr.strip() == (
        "gpu_bundle.py: XPNET_DATA_DIR is not set: point it at a folder holding mnist/ (the four .gz files)")
    fake = tmp_path / "data" / "mnist"
    fake.mkdir(parents=True)
    for f in MNIST.files:
        (fake / f.gz_name).write_bytes(b"not mnist")
    run = _build(out, tmp_path / "data")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "is not the published" in run.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["data"], "no half-built bundle left"
