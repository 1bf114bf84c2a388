"""The README's library example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_library_example_runs(capsys) -> None:  # noqa: ANN001
    blocks = python_blocks()
    assert blocks, "README.md has no python example"
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme"})
    loss, acc = capsys.readouterr().out.split()
    assert float(loss) < 2.0 and 0.0 <= float(acc) <= 1.0
    assert float(acc) > 0.7  # it learns: chance is 0.1 for ten classes
