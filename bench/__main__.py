"""python -m bench NAME [ARGS]: run one benchmark; `python -m bench` lists them."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "quality": "validation loss of `charnn train` with the defaults at a time budget",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        for name, what in BENCHMARKS.items():
            print(f"  {name:<10} {what}")
        return
    name = sys.argv[1]
    if name not in BENCHMARKS:
        sys.exit(f"bench: unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}")
    importlib.import_module(f"bench.{name}").main(sys.argv[2:])


if __name__ == "__main__":
    main()
