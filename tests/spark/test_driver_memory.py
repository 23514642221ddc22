"""Driver memory is bounded: with ``spark.driver.maxResultSize=2m`` (set before the JVM starts, in
a separate Spark app on the cluster), append, overwrite, merge and scd2 dataflows load a ~30 MB
source exactly on a first and an incremental run — no load funnels its rows through the driver —
and the tables equal the Polars engine's from the same catalog."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from coolie_core.catalog import load_catalog
from coolie_core.columns import SYSTEM_COLUMNS
from coolie_core.driver import Driver
from coolie_core.watermarks import read_delta_watermark

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(1800)]

ROWS = 400_000  # ~34 MB in memory: more than 15x the driver's result limit
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FLOWS = ("appended", "snapshot", "current", "history")

APP = textwrap.dedent(
    """\
    import json, os, sys, time
    from pyspark.sql import SparkSession
    from coolie_core.catalog import load_catalog
    from coolie_core.driver import Driver
    from coolie_core.engines import use_spark_session
    from coolie_core.engines.spark import spark_config

    catalog, master, source, release = sys.argv[1:5]
    builder = SparkSession.builder
    conf = {**spark_config(master), "spark.ui.enabled": "false", "spark.driver.maxResultSize": "2m",
            "spark.executor.memory": "1g", "spark.cores.max": "2", "spark.sql.shuffle.partitions": "4"}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    use_spark_session(spark)
    try:  # the limit holds: bringing the source to the driver fails
        spark.read.parquet(source).toArrow()
        control = "collected"
    except Exception as exc:
        control = "maxResultSize" if "maxResultSize" in str(exc) else repr(exc)[:500]
    for run in ("first", "second"):
        if run == "second":  # the test checks the first run's tables and adds the next batch
            while not os.path.exists(release):
                time.sleep(0.1)
        with Driver(load_catalog(catalog)) as driver:
            result = driver.run()
        rows = [[r.dataflow, r.status, r.rows_read, r.rows_written, r.error] for r in result.results]
        print("RESULT " + json.dumps({"control": control, "results": rows}), flush=True)
    spark.stop()
    """
)


def _rows(ids: range, *, version: int) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame({"id": pl.Series(ids, dtype=pl.Int64)}).with_columns(
        pl.format("customer-{}-v{}", pl.col("id") % 5000, pl.lit(version)).alias("name"),
        (pl.col("id") * version / 7).alias("amount"),
        pl.lit("U").alias("op"),
        pl.format("payload {} of a row that makes it wider {}", pl.col("id"), pl.lit(version)).alias("note"),
        pl.datetime_range(
            T0 + dt.timedelta(days=version * 100),
            T0 + dt.timedelta(days=version * 100, seconds=n - 1),
            "1s",
            time_zone="UTC",
            eager=True,
        ).alias("at"),
    )


def _document(root: Path, engine: str) -> dict[str, Any]:
    source = {"format": "parquet", "connection": "raw", "path": "*.parquet"}
    lake = {"connection": "lake"}
    flows = [
        {"name": "appended", "destination": {**lake, "table": "appended", "load": "append"}},
        {"name": "snapshot", "destination": {**lake, "table": "snapshot", "load": "overwrite"}},
        {
            "name": "current",
            "destination": {
                **lake, "table": "current", "load": "merge", "merge_keys": ["id"],
                "cdc": {"column": "op", "delete": ["D"]},
            },
        },
        {
            "name": "history",
            "destination": {
                **lake, "table": "history", "load": "scd2", "merge_keys": ["id"], "scd2": {"track": ["name"]},
            },
        },
    ]  # fmt: skip
    for flow in flows:
        flow["source"] = source
        if flow["name"] != "snapshot":
            flow["watermark_columns"] = ["at"]
    return {
        "defaults": {"engine": engine},
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": flows,
    }


def _catalog(root: Path, engine: str) -> Path:
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(_document(root, engine), sort_keys=False), encoding="utf-8")
    return path


def _start_app(catalog: Path, master: str, *, source: Path, release: Path) -> subprocess.Popen[str]:
    """The Spark app (its own JVM, ``spark.driver.maxResultSize=2m``) that runs the catalog twice."""
    env = {
        **os.environ,
        "COOLIE_SPARK_ARROW_MAX_ROWS": "1000",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    args = [sys.executable, "-c", APP, str(catalog), master, str(source), str(release)]
    with (release.parent / "app.log").open("w", encoding="utf-8") as log:  # never a full pipe
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=log, text=True)


def _next_result(app: subprocess.Popen[str]) -> dict[str, Any]:
    assert app.stdout is not None
    for line in app.stdout:
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return result
    app.wait()
    log = Path(str(app.args[-1])).parent / "app.log"  # type: ignore[index]
    raise AssertionError(
        f"the Spark app ended ({app.returncode}):\n{log.read_text(encoding='utf-8')[-4000:]}"
    )


def test_every_load_stays_on_the_executors_with_a_2m_driver_result_limit(
    tmp_path: Path, spark_master: str
) -> None:
    roots = {engine: tmp_path / engine for engine in ("polars", "spark")}
    first = _rows(range(ROWS), version=1)
    assert first.estimated_size() >= 15 * 2 * 1024 * 1024
    # Incremental batch: 10 % of the keys change, 5 % are new, 1 % are deleted.
    changed = _rows(range(0, ROWS, 10), version=2)
    new = _rows(range(ROWS, ROWS + ROWS // 20), version=3)
    deleted = _rows(range(5, ROWS, 100), version=4).with_columns(pl.lit("D").alias("op"))
    for root in roots.values():
        (root / "raw").mkdir(parents=True)
        first.write_parquet(root / "raw" / "a.parquet")

    def check(outcome: dict[str, Any]) -> None:
        for name, status, *_rest, error in outcome["results"]:
            assert status == "succeeded", (name, error)
        with Driver(load_catalog(_catalog(roots["polars"], "polars"))) as driver:
            expected = driver.run()
        assert expected.ok
        got = {r[0]: tuple(r[2:4]) for r in outcome["results"]}
        assert got == {r.dataflow: (r.rows_read, r.rows_written) for r in expected.results}
        for name in FLOWS:
            left, right = roots["polars"] / "lake" / name, roots["spark"] / "lake" / name
            want = pl.read_delta(str(left)).drop(SYSTEM_COLUMNS, strict=False).sort(pl.all())
            have = pl.read_delta(str(right)).drop(SYSTEM_COLUMNS, strict=False).sort(pl.all())
            assert_frame_equal(have, want, check_exact=True)
            if name != "snapshot":
                w, h = read_delta_watermark(left, dataflow=name), read_delta_watermark(right, dataflow=name)
                assert (h.value, h.batch) == (w.value, w.batch)

    release = tmp_path / "release"
    app = _start_app(
        _catalog(roots["spark"], "spark"),
        spark_master,
        source=roots["spark"] / "raw" / "a.parquet",
        release=release,
    )
    try:
        first_run = _next_result(app)
        assert first_run["control"] == "maxResultSize"
        check(first_run)
        for root in roots.values():
            pl.concat([changed, new, deleted]).write_parquet(root / "raw" / "b.parquet")
        release.touch()
        check(_next_result(app))
        assert app.wait(timeout=300) == 0
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        if app.stdout is not None:
            app.stdout.close()
    merged = pl.read_delta(str(roots["spark"] / "lake" / "current"))
    assert merged.height == ROWS + ROWS // 20 - len(range(5, ROWS, 100))
    shutil.rmtree(roots["polars"] / "lake")  # large: free the disk early
