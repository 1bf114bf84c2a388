"""``python -m xpnet doctor`` (or ``xpnet-doctor``): what xpnet can run on here, and what to do if CUDA can't.

The facts and the advice come from :mod:`xpnet.diagnosis` (see there for what is checked);
this module is the command: its flags, the report as text or JSON, and the exit status.

Exit status: 0 when at least the CPU backend works (xpnet can train, if only on the CPU), 1 when it does
not, and 2 with ``--require-cuda`` when no CUDA device works.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from xpnet.cli._common import first_line
from xpnet.diagnosis import diagnose, format_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xpnet doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--require-cuda", action="store_true",
                        help="exit 2 unless at least one CUDA device passes the check")
    args = parser.parse_args(argv)
    try:
        rep = diagnose()
    except Exception as exc:  # e.g. NumPy itself does not import
        print(f"xpnet doctor: xpnet's CPU backend cannot be set up: {first_line(exc)}", file=sys.stderr)
        print("  reinstall the dependencies: pip install -r backends/cpu.txt && pip install --no-deps .",
              file=sys.stderr)
        return 1
    if args.json:
        data = asdict(rep) | {"cpu_ok": rep.cpu_ok, "cuda_ok": rep.cuda_ok}
        print(json.dumps(data, indent=2, default=str))
    else:
        print(format_report(rep))
    if not rep.cpu_ok:
        return 1
    if args.require_cuda and not rep.cuda_ok:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
