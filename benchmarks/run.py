"""Run every benchmark and print one table: ``python -m benchmarks.run`` (or ``make bench``).

Sections (``--only`` picks some):

* ``throughput`` — coolie's Polars path vs the strongest plain polars + deltalake script (streaming
  ``sink_delta``), bare and writing coolie's two system columns, for the cases of
  :mod:`benchmarks.throughput` at each ``--rows``: CPU time, wall time, peak RSS and their ratios;
* ``memory`` — a parquet->Delta append whose input is larger than ``--budget-mb`` in memory;
* ``noop`` — a run of ``--noop-dataflows`` incremental dataflows with nothing new (parquet
  sources: also with every file touched; Delta sources, ``incr_delta``: also with one new row in
  each), and the cost of one watermark lookup on a short and a long Delta log;
* ``dagster`` — building coolie's Definitions and passing ``dagster definitions validate`` for
  generated catalogs of ``--dataflows`` dataflows, next to bare-Dagster AssetSpecs.

Every measurement is a fresh interpreter (peak RSS per case; see :mod:`benchmarks.measure`).
Figures are the medians of ``--repeat`` runs, coolie and baselines interleaved. Data is generated with
a fixed seed under ``--work`` and kept between runs. ``--quick`` runs tiny sizes (a smoke test).
"""

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.catalogs import write_catalog
from benchmarks.measure import Measured, python_child, run_child

SECTIONS = ("throughput", "memory", "noop", "dagster")
CASE_LABELS = {
    "parquet_append": "parquet -> Delta append",
    "csv_append": "csv (typed) -> Delta append",
    "jsonl_append": "jsonl (typed) -> Delta append",
    "overwrite": "parquet -> Delta overwrite",
    "merge": "merge 10% changed rows",
    "replace_window": "replace_window one month",
    "incr_first": "incremental, first batch",
    "incr_next": "incremental, next batch (+10%)",
}
CPU_TARGET = 1.10
WALL_TARGET = 1.10
RSS_TARGET = 1.15
DAGSTER_TARGET = 1.3
BUILD_COST_TARGET = 1.5
"""coolie's location against the bare project of the same shape (checks as check_specs), issue 16."""


def _log(message: str) -> None:
    print(f"[bench {dt.datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _best(runs: list[Measured]) -> dict[str, Any]:
    """Medians of the repeats: wall time, CPU time (user + sys) and peak RSS."""
    return {
        "seconds": statistics.median(r.seconds for r in runs),
        "cpu_s": statistics.median(r.cpu_s for r in runs),
        "rss_mb": statistics.median(r.peak_rss_mb for r in runs),
        "rows": float(runs[0].report.get("rows", 0)),
        "cpu_runs": [round(r.cpu_s, 3) for r in runs],
        "rss_runs": [round(r.peak_rss_mb, 1) for r in runs],
    }


def _interleaved(
    impls: Sequence[str], repeat: int, measure: Callable[[str], Measured]
) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[Measured]] = {impl: [] for impl in impls}
    order = random.Random(f"{repeat}:{','.join(impls)}")  # seeded: the same plan on every machine
    for _ in range(repeat):
        # A new order each round: no implementation always runs first (or right after another).
        for impl in order.sample(list(impls), len(impls)):
            runs[impl].append(measure(impl))
    return {impl: _best(r) for impl, r in runs.items()}


# --------------------------------------------------------------------------- sections


def throughput(
    work: Path, sizes: Sequence[int], repeat: int, cases: Sequence[str] = tuple(CASE_LABELS)
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        _log(f"data for {n:,} rows")
        data = work / "data" / str(n)
        python_child("benchmarks.data", str(work / "data"), str(n))
        for case in (c for c in CASE_LABELS if c in cases):
            impls = ["coolie", "baseline_sys", "baseline"]
            impls += ["coolie_nosys"] if case in ("merge", "replace_window") else []
            _log(f"{case} at {n:,} rows: {', '.join(impls)} x{repeat}")
            scratch = work / "scratch"
            best = _interleaved(
                impls,
                repeat,
                lambda impl, case=case, data=data, scratch=scratch: python_child(  # type: ignore[misc]
                    "benchmarks.throughput", case, impl, str(data), str(scratch / f"{case}-{impl}")
                ),
            )
            shutil.rmtree(scratch, ignore_errors=True)
            rows.append({"case": case, "n": n, **{impl: best[impl] for impl in impls}})
    return rows


IMPORTS = {
    "polars, deltalake": "import polars, deltalake",
    "coolie_core.driver": "import coolie_core.driver",
    "coolie_core.driver, deltalake": "import coolie_core.driver, deltalake",  # what a run holds
    "coolie_core.cli": "import coolie_core.cli",
}


def imports(repeat: int) -> dict[str, dict[str, float]]:
    """Peak RSS and CPU seconds of a fresh interpreter that only imports (medians)."""
    runs: dict[str, list[Measured]] = {name: [] for name in IMPORTS}
    for _ in range(repeat):
        for name, code in IMPORTS.items():
            runs[name].append(run_child([sys.executable, "-c", code]))
    return {
        name: {
            "rss_mb": statistics.median(r.peak_rss_mb for r in rs),
            "cpu_s": statistics.median(r.cpu_s for r in rs),
        }
        for name, rs in runs.items()
    }


def memory(work: Path, n: int, budget_mb: int) -> dict[str, Any]:
    """One parquet->Delta append of ``n`` rows, more than ``budget_mb`` once in memory."""
    folder = work / "data" / f"big_{n}"
    _log(f"data for the memory case: {n:,} rows")
    python_child("benchmarks.data", str(work / "data"), str(n), "--big")
    size_mb = float((folder / "size_mb").read_text())
    result: dict[str, Any] = {"n": n, "input_mb": size_mb, "budget_mb": budget_mb}
    for impl in ("coolie", "baseline_sys"):
        _log(f"memory case: {impl}")
        scratch = work / "scratch"
        m = python_child("benchmarks.throughput", "parquet_append", impl, str(folder), str(scratch / impl))
        shutil.rmtree(scratch, ignore_errors=True)
        result[impl] = {"seconds": m.seconds, "rss_mb": m.peak_rss_mb}
    return result


def noop(work: Path, n: int, commits: Sequence[int]) -> dict[str, Any]:
    folder = work / f"noop_{n}"
    shutil.rmtree(folder, ignore_errors=True)
    _log(f"no-op: first load of {n} dataflows")
    first = python_child("benchmarks.noop", "setup", str(folder), str(n))
    _log("no-op: run with nothing new")
    unchanged = python_child("benchmarks.noop", "run", str(folder))
    _log("no-op: run after touching every source file")
    touched = python_child("benchmarks.noop", "run", str(folder), "--touch")
    shutil.rmtree(folder, ignore_errors=True)
    _log(f"no-op, Delta sources (incr_delta): first load of {n} dataflows")
    python_child("benchmarks.noop", "setup", str(folder), str(n), "--source", "delta")
    _log("incr_delta: run with nothing new")
    delta_unchanged = python_child("benchmarks.noop", "run", str(folder))
    _log("incr_delta: run after one new row in every source table")
    delta_next = python_child("benchmarks.noop", "run", str(folder), "--append")
    lookups = {}
    for k in commits:
        _log(f"watermark lookup on a log of {k} commits")
        lookups[k] = python_child("benchmarks.noop", "lookup", str(work / "logs"), str(k)).report["seconds"]
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "n": n,
        "first_s": first.seconds,
        "unchanged_s": unchanged.seconds,
        "unchanged_rss_mb": unchanged.peak_rss_mb,
        "unchanged_outcomes": unchanged.report.get("outcomes"),
        "touched_s": touched.seconds,
        "touched_outcomes": touched.report.get("outcomes"),
        "delta_unchanged_s": delta_unchanged.seconds,
        "delta_unchanged_cpu_s": delta_unchanged.cpu_s,
        "delta_unchanged_outcomes": delta_unchanged.report.get("outcomes"),
        "delta_next_s": delta_next.seconds,
        "delta_next_cpu_s": delta_next.cpu_s,
        "delta_next_outcomes": delta_next.report.get("outcomes"),
        "unchanged_cpu_s": unchanged.cpu_s,
        "touched_cpu_s": touched.cpu_s,
        "lookup_s": lookups,
    }


def dagster(work: Path, sizes: Sequence[int]) -> list[dict[str, Any]]:
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    cli = str(Path(sys.executable).with_name("dagster"))
    rows = []
    for n in sizes:
        catalog = write_catalog(work / "catalogs", n)
        row: dict[str, Any] = {"n": n}
        for impl in ("coolie", "bare", "bare_ops", "bare_check_specs"):
            _log(f"dagster {impl}: Definitions for {n} dataflows")
            m = python_child("benchmarks.dagster_load", impl, str(catalog))
            row[impl] = {**m.report, "seconds": m.seconds, "cpu_s": m.cpu_s, "rss_mb": m.peak_rss_mb}
            _log(f"dagster {impl}: definitions validate for {n} dataflows")
            module, env = (
                ("coolie_dagster.definitions", {"COOLIE_CATALOG": str(catalog)})
                if impl == "coolie"
                else (
                    "benchmarks.bare_dagster",
                    {
                        "BENCH_CATALOG": str(catalog),
                        "BENCH_EXECUTABLE": {"bare_ops": "1", "bare_check_specs": "checks"}.get(impl, ""),
                    },
                )
            )
            v = run_child(
                [cli, "definitions", "validate", "-m", module],
                env={**env, "DAGSTER_HOME": str(home), "COOLIE_STATE_DIR": str(work / "state")},
            )
            row[impl]["validate_s"] = v.wall_s
            row[impl]["validate_rss_mb"] = v.peak_rss_mb
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- table


def _ok(passed: bool) -> str:
    return "yes" if passed else "**no**"


def _rate(rows: float, seconds: float) -> str:
    rate = rows / seconds if seconds > 0 else 0.0
    return f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.0f}k"


def render(results: dict[str, Any]) -> str:
    """The results as Markdown tables (what BENCHMARKS.md holds)."""
    out: list[str] = []
    if "throughput" in results:
        out += [
            "Medians of the runs. **+sys**: the plain script writing coolie's two system columns "
            "(the baseline of the targets); **bare**: the same without them. CPU = user + sys "
            "seconds of the timed part.",
            "",
            "| case | rows | coolie CPU s | +sys CPU s | bare CPU s | CPU vs +sys | <= 1.10 | CPU vs bare "
            "| coolie s | +sys s | wall vs +sys | coolie RSS MB | +sys RSS MB | bare RSS MB | RSS vs +sys "
            "| <= 1.15 | coolie rows/s |",
            "|---|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|--:|",
        ]
        for row in results["throughput"]:
            c, s, b = row["coolie"], row["baseline_sys"], row["baseline"]
            cpu, cpu_bare = c["cpu_s"] / s["cpu_s"], c["cpu_s"] / b["cpu_s"]
            wall, rss = c["seconds"] / s["seconds"], c["rss_mb"] / s["rss_mb"]
            out.append(
                f"| {CASE_LABELS[row['case']]} | {row['n']:,} | {c['cpu_s']:.2f} | {s['cpu_s']:.2f} "
                f"| {b['cpu_s']:.2f} | {cpu:.2f} | {_ok(cpu <= CPU_TARGET)} | {cpu_bare:.2f} "
                f"| {c['seconds']:.2f} | {s['seconds']:.2f} | {wall:.2f} "
                f"| {c['rss_mb']:.0f} | {s['rss_mb']:.0f} | {b['rss_mb']:.0f} | {rss:.2f} "
                f"| {_ok(rss <= RSS_TARGET)} | {_rate(c['rows'], c['seconds'])} |"
            )
        nosys = [row for row in results["throughput"] if "coolie_nosys" in row]
        if nosys:
            out += [
                "",
                "Merge and replace_window rewrite the columns the table carries; coolie with "
                "`system_columns: false` against the bare script, CPU seconds (peak RSS MB):",
                "",
                "| case | rows | coolie, system_columns: false | bare |",
                "|---|--:|--:|--:|",
            ]
            for row in nosys:
                n, b = row["coolie_nosys"], row["baseline"]
                out.append(
                    f"| {CASE_LABELS[row['case']]} | {row['n']:,} | {n['cpu_s']:.2f} ({n['rss_mb']:.0f}) "
                    f"| {b['cpu_s']:.2f} ({b['rss_mb']:.0f}) |"
                )
        out.append("")
    if "imports" in results:
        base = results["imports"]["polars, deltalake"]
        out += [
            "Import footprint (a fresh interpreter that only imports; target <= 40 MB above polars + deltalake):",
            "",
            "| import | peak RSS MB | above polars + deltalake | CPU s |",
            "|---|--:|--:|--:|",
        ]
        for name, m in results["imports"].items():
            out.append(
                f"| `{name}` | {m['rss_mb']:.0f} | {m['rss_mb'] - base['rss_mb']:+.0f} | {m['cpu_s']:.2f} |"
            )
        out.append("")
    if "memory" in results:
        m = results["memory"]
        c, b = m["coolie"], m["baseline_sys"]
        out += [
            f"Input larger than the memory budget: parquet -> Delta append of {m['n']:,} rows "
            f"({m['input_mb']:.0f} MB in memory), budget {m['budget_mb']} MB.",
            "",
            "| | seconds | peak RSS MB | within budget |",
            "|---|--:|--:|:-:|",
            f"| coolie (streamed) | {c['seconds']:.2f} | {c['rss_mb']:.0f} | {_ok(c['rss_mb'] <= m['budget_mb'])} |",
            f"| baseline (+sys cols) | {b['seconds']:.2f} | {b['rss_mb']:.0f} "
            f"| {_ok(b['rss_mb'] <= m['budget_mb'])} |",
            "",
        ]
    if "noop" in results:
        r = results["noop"]
        lookups = ", ".join(f"{k:,} commits: {v * 1000:.1f} ms" for k, v in r["lookup_s"].items())
        out += [
            f"No-op incremental run over {r['n']:,} dataflows (Driver.run, max_workers 4; "
            "target <= 1.0 s for nothing new):",
            "",
            "| run | seconds | CPU s | per dataflow (CPU) | outcome |",
            "|---|--:|--:|--:|---|",
            f"| parquet sources: first load | {r['first_s']:.2f} | | | all loaded |",
            *(
                f"| {label} | {r[key + '_s']:.2f} | {r[key + '_cpu_s']:.2f} "
                f"| {r[key + '_cpu_s'] / r['n'] * 1000:.1f} ms | {_outcomes(r[key + '_outcomes'])} |"
                for key, label in (
                    ("unchanged", "parquet sources: nothing new"),
                    ("touched", "parquet sources: every file touched, no new rows"),
                    ("delta_unchanged", "Delta sources (incr_delta): nothing new"),
                    ("delta_next", "Delta sources (incr_delta): one new row each"),
                )
            ),
            "",
            f"One watermark lookup (read_delta_watermark): {lookups}.",
            "",
        ]
    if "dagster" in results:
        out += [
            "Dagster: building Definitions (+ get_repository_def), seconds (CPU seconds), and peak RSS; "
            "*bare specs*: one plain AssetSpec per dataflow; *bare ops*: one no-op asset op and one "
            "check op per dataflow, no coolie; *bare check_specs*: one no-op asset op per dataflow "
            "whose checks are its check_specs (the build-cost baseline, issue 16).",
            "",
            "| dataflows | coolie | bare specs | bare ops | bare check_specs | coolie/bare specs (CPU) "
            "| <= 1.3 | coolie/bare ops (CPU) | coolie/bare check_specs (CPU) | <= 1.5 "
            "| RSS MB coolie / specs / ops / check_specs |",
            "|--:|--:|--:|--:|--:|--:|:-:|--:|--:|:-:|--:|",
        ]
        for row in results["dagster"]:
            c, b, o, k = row["coolie"], row["bare"], row["bare_ops"], row["bare_check_specs"]
            ratio, ops_ratio = c["cpu_s"] / b["cpu_s"], c["cpu_s"] / o["cpu_s"]
            cost = c["cpu_s"] / k["cpu_s"]
            out.append(
                f"| {row['n']:,} | {c['seconds']:.2f} ({c['cpu_s']:.2f}) | {b['seconds']:.2f} ({b['cpu_s']:.2f}) "
                f"| {o['seconds']:.2f} ({o['cpu_s']:.2f}) | {k['seconds']:.2f} ({k['cpu_s']:.2f}) "
                f"| {ratio:.2f} | {_ok(ratio <= DAGSTER_TARGET)} | {ops_ratio:.2f} "
                f"| {cost:.2f} | {_ok(cost <= BUILD_COST_TARGET)} "
                f"| {c['rss_mb']:.0f} / {b['rss_mb']:.0f} / {o['rss_mb']:.0f} / {k['rss_mb']:.0f} |"
            )
        out += [
            "",
            "`dagster definitions validate -m ...` as a whole command (imports included), wall seconds and peak RSS:",
            "",
            "| dataflows | coolie | bare specs | bare ops | coolie/bare specs | coolie/bare ops "
            "| RSS MB coolie / specs / ops |",
            "|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for row in results["dagster"]:
            c, b, o = row["coolie"], row["bare"], row["bare_ops"]
            out.append(
                f"| {row['n']:,} | {c['validate_s']:.2f} | {b['validate_s']:.2f} | {o['validate_s']:.2f} "
                f"| {c['validate_s'] / b['validate_s']:.2f} | {c['validate_s'] / o['validate_s']:.2f} "
                f"| {c['validate_rss_mb']:.0f} / {b['validate_rss_mb']:.0f} / {o['validate_rss_mb']:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def _outcomes(outcomes: dict[str, int] | None) -> str:
    return ", ".join(f"{n} {what}" for what, n in (outcomes or {}).items())


def machine() -> str:
    """Cores, memory, load and versions: the context of the figures."""
    from importlib.metadata import version

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB RAM, load average {load} at the start; "
        f"Python {platform.python_version()}, polars {version('polars')}, deltalake {version('deltalake')}, "
        f"dagster {version('dagster')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run")
    parser.add_argument("--rows", type=int, nargs="+", help="throughput sizes (default 1000000 5000000)")
    parser.add_argument("--repeat", type=int, help="runs per throughput case, median kept (default 9)")
    parser.add_argument(
        "--dataflows", type=int, nargs="+", help="Dagster catalog sizes (default 1000 5000 10000)"
    )
    parser.add_argument("--noop-dataflows", type=int, help="dataflows of the no-op run (default 1000)")
    parser.add_argument("--budget-mb", type=int, help="memory budget of the large-input case (default 1536)")
    parser.add_argument("--budget-rows", type=int, help="rows of the large-input case (default 30000000)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--cases", nargs="+", choices=list(CASE_LABELS), default=list(CASE_LABELS), help="throughput cases"
    )
    parser.add_argument(
        "--work", type=Path, default=Path(".bench"), help="data and scratch (default .bench/)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    quick = args.quick
    rows = args.rows or ([20_000] if quick else [1_000_000, 5_000_000])
    repeat = args.repeat or (1 if quick else 9)
    sizes = args.dataflows or ([30] if quick else [1000, 5000, 10000])
    noop_n = args.noop_dataflows or (10 if quick else 1000)
    budget_mb = args.budget_mb or (1536 if not quick else 512)
    budget_rows = args.budget_rows or (50_000 if quick else 30_000_000)
    commits = (3, 30) if quick else (10, 1000)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {"machine": machine(), "started": dt.datetime.now(dt.UTC).isoformat()}
    _log(results["machine"])
    if "dagster" in args.only:
        results["dagster"] = dagster(work, sizes)
    if "noop" in args.only:
        results["noop"] = noop(work, noop_n, commits)
    if "throughput" in args.only:
        results["throughput"] = throughput(work, rows, repeat, args.cases)
        results["imports"] = imports(repeat)
    if "memory" in args.only:
        results["memory"] = memory(work, budget_rows, budget_mb)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"Machine: {results['machine']}\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
