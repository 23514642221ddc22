"""Profile building coolie's Dagster definitions: ``python -m benchmarks.profile_defs [N] [--min-share F]``.

Runs pyinstrument over ``build_definitions`` + ``get_repository_def()`` for the generated catalog
of N dataflows (default 5000, see :mod:`benchmarks.catalogs`) and prints the call tree, keeping
frames that take at least ``--min-share`` of the time. Sampling slows pure-Python code down, so
read shares, not seconds.
"""

import argparse
import os
from pathlib import Path

from benchmarks.catalogs import write_catalog


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=5000)
    parser.add_argument("--min-share", type=float, default=0.03)
    parser.add_argument("--work", type=Path, default=Path(".bench"))
    args = parser.parse_args(argv)
    from pyinstrument import Profiler

    os.environ.pop("COOLIE_CATALOG", None)
    from coolie_dagster.definitions import build_definitions

    catalog = write_catalog(args.work.resolve() / "catalogs", args.n)
    profiler = Profiler(interval=0.005)
    profiler.start()
    build_definitions(catalog).get_repository_def()
    profiler.stop()
    tree = profiler.output_text(unicode=False, color=False, show_all=False, time="percent_of_total")
    for line in tree.splitlines():
        share = line.strip("|`- ").split(" ", 1)[0].rstrip("%")
        try:
            keep = float(share) / 100 >= args.min_share
        except ValueError:
            keep = True
        if keep:
            print(line)


if __name__ == "__main__":
    main()
