"""Runs a benchmark by name: `python -m benchmarks backfill|e2e|ops|transforms …`."""

from __future__ import annotations

import sys

from benchmarks import backfill, e2e, ops, transforms

BENCHMARKS = {
    "backfill": backfill.main,
    "e2e": e2e.main,
    "ops": ops.main,
    "transforms": transforms.main,
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        names = " | ".join(BENCHMARKS)
        sys.exit(f"usage: python -m benchmarks {{{names}}} [options]  (--help for options)")
    sys.argv[0] = f"python -m benchmarks {args[0]}"  # argparse's usage line shows this
    BENCHMARKS[args[0]](args[1:])


if __name__ == "__main__":
    main()
