"""Seeded benchmark data: the same bytes on every run for a given row count.

``orders(n)`` is an order table spread over 2024 (ten columns: integers, floats, strings, a
date and two UTC timestamps). From it, per row count, in ``<root>/<n>/``:

* ``orders.parquet`` / ``orders.csv`` / ``orders.jsonl`` — the append sources;
* ``changes.parquet`` — 10% of the rows (every tenth id) with a new amount, status and
  ``updated_at``: the merge source;
* ``june.parquet`` — June 2024's rows, re-priced: the replace_window source;
* ``next.parquet`` — N/10 new orders (new ids) a year later: an incremental source's next file;
* ``base/`` and ``base_sys/`` — the orders as a Delta table, without and with coolie's system
  columns, which the merge and replace_window cases copy before they write into it.

``big_<n>/orders.parquet`` alone (and ``size_mb``, its size in memory) feeds the memory-budget case.
Run as ``python -m benchmarks.data ROOT N [--big]``, so the runner's own process stays small.
"""

import argparse
import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import polars as pl

SEED = 20240601
LOADED_AT = dt.datetime(2024, 12, 31, tzinfo=dt.UTC)
BASE_RUN_ID = "20241231T000000-base0000"
JUNE = (dt.date(2024, 6, 1), dt.date(2024, 7, 1))

_STATUSES = ["placed", "paid", "shipped", "delivered", "returned"]
_COUNTRIES = ["DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES", "PL", "SE"]


def orders(n: int, *, seed: int = SEED) -> pl.DataFrame:
    """``n`` orders, deterministic for a given ``seed``, sorted by ``order_ts``."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    year_us = 366 * 24 * 3600 * 1_000_000
    offsets = np.sort(rng.integers(0, year_us, n))
    frame = pl.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "customer_id": rng.integers(1, max(2, n // 20), n),
            "order_ts": offsets,
            "qty": rng.integers(1, 20, n).astype(np.int32),
            "amount": np.round(rng.gamma(2.0, 40.0, n), 2),
            "status": rng.integers(0, len(_STATUSES), n).astype(np.uint32),
            "country": rng.integers(0, len(_COUNTRIES), n).astype(np.uint32),
            "sku": rng.integers(0, 50_000, n),
        }
    )
    ts = pl.lit(start) + pl.duration(microseconds=pl.col("order_ts"))
    return frame.with_columns(
        ts.alias("order_ts"),
        ts.dt.date().alias("order_date"),
        (ts + pl.duration(minutes=pl.col("qty"))).alias("updated_at"),
        pl.col("status").replace_strict(list(range(len(_STATUSES))), _STATUSES, return_dtype=pl.String),
        pl.col("country").replace_strict(list(range(len(_COUNTRIES))), _COUNTRIES, return_dtype=pl.String),
        pl.format("SKU-{}", pl.col("sku")).alias("sku"),
    ).select(
        "id",
        "customer_id",
        "order_ts",
        "order_date",
        "updated_at",
        "qty",
        "amount",
        "status",
        "country",
        "sku",
    )


def with_system_columns(frame: pl.DataFrame, *, loaded_at: dt.datetime, run_id: str) -> pl.DataFrame:
    """The two columns coolie adds, as constants (what an efficient framework writes)."""
    return frame.with_columns(
        pl.lit(loaded_at, dtype=pl.Datetime("us", "UTC")).alias("_coolie_loaded_at"),
        pl.lit(run_id, dtype=pl.String).alias("_coolie_run_id"),
    )


def changes(frame: pl.DataFrame) -> pl.DataFrame:
    """Every tenth order, re-priced and re-stated an hour later: 10% changed rows."""
    return frame.filter(pl.col("id") % 10 == 0).with_columns(
        (pl.col("amount") * 1.1).round(2),
        pl.lit("returned").alias("status"),
        (pl.col("updated_at") + pl.duration(hours=1)).alias("updated_at"),
    )


def june(frame: pl.DataFrame) -> pl.DataFrame:
    """June 2024's orders, re-priced (a corrected month)."""
    lo, hi = JUNE
    return frame.filter((pl.col("order_date") >= lo) & (pl.col("order_date") < hi)).with_columns(
        (pl.col("amount") * 0.9).round(2)
    )


def next_orders(n: int) -> pl.DataFrame:
    """``n // 10`` new orders (ids from ``n``), a year after :func:`orders`: the next batch."""
    year = pl.duration(days=367)  # after every first-batch row: none of them is late
    return orders(max(1, n // 10), seed=SEED + 1).with_columns(
        pl.col("id") + n,
        pl.col("order_ts") + year,
        (pl.col("order_ts") + year).dt.date().alias("order_date"),
        pl.col("updated_at") + year,
    )


def prepare(root: Path, n: int) -> Path:
    """Write (once) every input of the throughput cases for ``n`` rows; returns its folder."""
    from deltalake import write_deltalake

    folder = root / str(n)
    done = folder / ".complete-v2"  # v2: jsonl and next.parquet added
    if done.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    frame = orders(n)
    frame.write_parquet(folder / "orders.parquet")
    frame.write_csv(folder / "orders.csv")
    frame.write_ndjson(folder / "orders.jsonl")
    next_orders(n).write_parquet(folder / "next.parquet")
    changes(frame).write_parquet(folder / "changes.parquet")
    june(frame).write_parquet(folder / "june.parquet")
    write_deltalake(str(folder / "base"), frame.to_arrow(), mode="overwrite")
    system = with_system_columns(frame, loaded_at=LOADED_AT, run_id=BASE_RUN_ID)
    write_deltalake(str(folder / "base_sys"), system.to_arrow(), mode="overwrite")
    done.touch()
    return folder


def prepare_big(root: Path, n: int) -> Path:
    """Write (once) ``big_<n>/orders.parquet`` and its in-memory size in MB; returns the folder."""
    folder = root / f"big_{n}"
    if (folder / "orders.parquet").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    frame = orders(n)
    (folder / "size_mb").write_text(str(frame.estimated_size("mb")))
    frame.write_parquet(folder / "orders.tmp")
    (folder / "orders.tmp").replace(folder / "orders.parquet")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the benchmark inputs for N rows under ROOT.")
    parser.add_argument("root", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--big", action="store_true", help="only the memory-budget case's parquet file")
    args = parser.parse_args(argv)
    print((prepare_big if args.big else prepare)(args.root, args.n))


if __name__ == "__main__":
    main()
