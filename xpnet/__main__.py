"""``python -m xpnet COMMAND [ARGS]``: the same commands as the console scripts.

    python -m xpnet doctor [--json] [--require-cuda]   what runs here (= xpnet-doctor)
    python -m xpnet train [ARGS]                       train a model (= xpnet-train)
"""

from __future__ import annotations

import sys

USAGE = __doc__.strip().splitlines()
COMMANDS = ("doctor", "train")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print("\n".join(USAGE))
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "doctor":
        from xpnet.doctor import main as doctor

        return doctor(rest)
    if command == "train":
        from xpnet.cli import main as train

        return int(train(rest) or 0)
    print(f"python -m xpnet: unknown command {command!r}; expected one of: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
