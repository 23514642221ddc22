"""Time to build Dagster definitions for a generated catalog: ``python -m benchmarks.dagster_load IMPL CATALOG``.

``IMPL`` is ``coolie`` (``coolie_dagster.definitions.build_definitions``), ``bare`` (plain
AssetSpecs, :mod:`benchmarks.bare_dagster`), ``bare_ops`` (one no-op asset op and one check op
per dataflow, no coolie) or ``bare_check_specs`` (one no-op asset op per dataflow, its checks as
``check_specs``: the baseline of the build-cost target). Imports happen before the clock; the figures are
``build_s`` (the ``Definitions`` object) and ``resolve_s`` (``get_repository_def()``: jobs,
asset graph, checks — what Dagster does before it can serve the location). ``seconds`` is their
sum. ``dagster definitions validate`` is timed separately, as a whole command, by the runner.
"""

import argparse
import os
import time
from pathlib import Path

import dagster as dg

from benchmarks.measure import emit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("impl", choices=("coolie", "bare", "bare_ops", "bare_check_specs"))
    parser.add_argument("catalog", type=Path)
    args = parser.parse_args(argv)
    if args.impl == "coolie":
        os.environ.pop("COOLIE_CATALOG", None)  # the module's own defs: the small demo catalog
        from coolie_dagster.definitions import build_definitions

        def build(path: Path) -> dg.Definitions:
            return build_definitions(path)
    else:
        from benchmarks.bare_dagster import build_bare_definitions

        def build(path: Path) -> dg.Definitions:
            return build_bare_definitions(
                path,
                executable=args.impl in ("bare_ops", "bare_check_specs"),
                inline_checks=args.impl == "bare_check_specs",
            )

    t0, c0 = time.perf_counter(), time.process_time()
    defs = build(args.catalog)
    t1 = time.perf_counter()
    repo = defs.get_repository_def()
    t2 = time.perf_counter()
    emit(
        {
            "impl": args.impl,
            "build_s": t1 - t0,
            "resolve_s": t2 - t1,
            "seconds": t2 - t0,
            "cpu_s": time.process_time() - c0,
            "assets": len(list(repo.asset_graph.get_all_asset_keys())),
        }
    )


if __name__ == "__main__":
    main()
