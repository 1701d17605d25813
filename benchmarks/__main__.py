"""Runs a benchmark by name: `python -m benchmarks e2e …` or `… transforms …`."""

from __future__ import annotations

import sys

from benchmarks import e2e, transforms

BENCHMARKS = {"e2e": e2e.main, "transforms": transforms.main}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        names = " | ".join(BENCHMARKS)
        sys.exit(f"usage: python -m benchmarks {{{names}}} [options]  (--help for options)")
    sys.argv[0] = f"python -m benchmarks {args[0]}"  # argparse's usage line shows this
    BENCHMARKS[args[0]](args[1:])


if __name__ == "__main__":
    main()
