"""Run the benchmarks: `python -m tests.bench [module ...]` (default: every bench_*.py).

Each bench module exposes `main() -> None`, prints its own table and ratios against a
baseline measured in the same run. Nothing here is asserted: machines are noisy.
"""

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    here = Path(__file__).parent
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )
    for name in names:
        print(f"== {name} ==", flush=True)
        importlib.import_module(f"tests.bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
