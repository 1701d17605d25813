"""Runs a benchmark by name:
`python -m benchmarks annotations|backfill|e2e|install|ops|read|transforms …`."""

from __future__ import annotations

import sys
from importlib import import_module

# Imported only when chosen: each benchmark pulls in what it measures (Dagster, pandas, ...).
BENCHMARKS = {
    "annotations": "benchmarks.annotations",
    "backfill": "benchmarks.backfill",
    "e2e": "benchmarks.e2e",
    "install": "benchmarks.install",
    "ops": "benchmarks.ops",
    "read": "benchmarks.read",
    "transforms": "benchmarks.transforms",
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        names = " | ".join(BENCHMARKS)
        sys.exit(f"usage: python -m benchmarks {{{names}}} [options]  (--help for options)")
    sys.argv[0] = f"python -m benchmarks {args[0]}"  # argparse's usage line shows this
    import_module(BENCHMARKS[args[0]]).main(args[1:])


if __name__ == "__main__":
    main()
