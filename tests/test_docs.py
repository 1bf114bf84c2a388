"""The documentation is true: every Python example in README.md and docs/*.md runs, and no relative link is dead.

A page's ```python blocks run in order in one namespace (a page reads like a notebook), in a fresh process whose
working folder is a temporary one, on the same data the suite uses. A block that is not meant to run says so
on its fence, ```python no-run: <why>, and says why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mnist_dir

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")

RUNNER = """\
import json, sys
namespace = {"__name__": "__docs__"}
for block in json.load(open(sys.argv[1])):
    exec(compile(block["code"], f"{block['page']}, python block at line {block['line']}", "exec"), namespace)
"""


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def python_blocks(page: Path) -> list[dict[str, object]]:
    """Each ```python block of ``page``: its code, its fence line and what follows ``python`` on the fence."""
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        lang, _, info = m.group(1).strip().partition(" ")
        if lang == "python":
            found.append({"page": name(page), "line": text.count("\n", 0, m.start()) + 1, "info": info.strip(),
                          "code": m.group(2)})
    return found


def without_code(text: str) -> str:
    """The page with fenced blocks and inline code blanked out (a link-like string in code is no link)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return re.sub(r"`[^`\n]*`", "``", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", without_code(page.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.replace("`", "").lower()).replace(" ", "-") for h in heads}


def data_env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", XPNET_OFFLINE="1", PYTHONPATH=str(ROOT))
    found = mnist_dir()
    if found is not None:  # a folder holding mnist/ (and fashion-mnist/ where there is one), as CI has
        env["XPNET_DATA_DIR"] = str(found.parent if found.name == "mnist" else found)
    return env


RUNNABLE = [p for p in PAGES if any(not b["info"] for b in python_blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=name)
def test_every_python_example_runs(page: Path, tmp_path: Path) -> None:
    blocks = [b for b in python_blocks(page) if not b["info"]]
    env = data_env()
    if any('"fashion-mnist"' in str(b["code"]) for b in blocks):
        base = Path(env.get("XPNET_DATA_DIR", "/nonexistent"))
        if not (base / "fashion-mnist").is_dir():
            pytest.skip("the example loads Fashion-MNIST: set XPNET_DATA_DIR to a folder holding fashion-mnist/")
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "run_blocks.py").write_text(RUNNER)
    proc = subprocess.run([sys.executable, "run_blocks.py", "blocks.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name(page)}: an example failed\n{proc.stderr[-3000:]}"


def test_a_block_that_does_not_run_says_why() -> None:
    for page in PAGES:
        for b in python_blocks(page):
            info = str(b["info"])
            if info:
                assert re.fullmatch(r"no-run: \S.*", info), f"{b['page']}:{b['line']}: ```python {info!r}: " \
                                                             "only 'no-run: <why>' may follow python on a fence"


def dead_links(page: Path) -> list[str]:
    dead = []
    for target in LINK.findall(without_code(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... are not checked here
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            dead.append(f"{target} (no such file: {dest.relative_to(ROOT) if ROOT in dest.parents else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            dead.append(f"{target} (no heading #{anchor} in {name(dest)})")
    return dead


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_point_at_something(page: Path) -> None:
    assert dead_links(page) == [], f"{name(page)} links to what is not there"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(without_code((ROOT / "README.md")
                                                                                      .read_text()))}
    orphans = [name(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert orphans == [], "pages under docs/ that the README does not link"
