"""parquet -> Delta append and merge on S3 (a local moto server): coolie against a plain script.

    python -m benchmarks.bench_storage --rows 1000000 --repeat 3

Starts ``python -m moto.server`` on loopback and points the standard AWS variables at it (how
coolie reaches any bucket). Data from :mod:`benchmarks.data`: ``orders(n)`` uploaded as
``orders.parquet`` (the append source) and ``changes.parquet`` (10 % of the rows changed, the merge
source); the merge target is the orders as a Delta table on S3 (with coolie's system columns for
coolie, without for the script), written before the clock starts. Each repeat writes under a
fresh prefix. ``coolie`` runs the one-dataflow catalog through :class:`coolie_core.driver.Driver`;
``baseline`` is ``pl.read_parquet(s3://...)`` + ``deltalake.write_deltalake``/``DeltaTable.merge``.
Prints one table (median seconds and CPU seconds of the repeats) and a JSON line per figure.
Both sides pay the same loopback S3 server, a Python process that is itself often the bottleneck.
"""

import argparse
import datetime as dt
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.data import BASE_RUN_ID, LOADED_AT, changes, orders, with_system_columns

BUCKET = "bench"
RUN_ID = "20250101T000000-bench000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"moto did not start: {log.read_text()}") from None
            time.sleep(0.1)
    raise SystemExit("moto did not listen")


def _put_parquet(client: Any, key: str, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    client.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())


def _coolie(case: str, prefix: str, work: Path) -> int:
    from coolie_core.catalog import load_catalog
    from coolie_core.driver import Driver

    source = "orders.parquet" if case == "append" else "changes.parquet"
    destination: dict[str, Any] = {"connection": "lake", "table": "t", "load": "append"}
    if case == "merge":
        destination |= {"load": "merge", "merge_keys": ["id"]}
    document = {
        "version": 1,
        "defaults": {"max_workers": 1},
        "connections": {
            "src": {"kind": "files", "path": f"s3://{BUCKET}/src"},
            "lake": {"kind": "delta", "path": f"s3://{BUCKET}/{prefix}"},
        },
        "dataflows": [
            {
                "name": "bench",
                "source": {"format": "parquet", "connection": "src", "path": source},
                "destination": destination,
            }
        ],
    }
    path = work / f"{prefix}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with Driver(load_catalog(path), state_dir=work / prefix, run_id=RUN_ID) as driver:
        result = driver.run().result("bench")
    if result.status != "succeeded":
        raise SystemExit(f"coolie run {result.status}: {result.error or result.reason}")
    return result.rows_written


def _baseline(case: str, prefix: str, work: Path) -> int:
    from deltalake import DeltaTable, write_deltalake

    table = f"s3://{BUCKET}/{prefix}/t"
    if case == "append":
        frame = pl.read_parquet(f"s3://{BUCKET}/src/orders.parquet")
        write_deltalake(table, frame.to_arrow(), mode="append")
        return frame.height
    frame = pl.read_parquet(f"s3://{BUCKET}/src/changes.parquet")
    (
        DeltaTable(table)
        .merge(frame.to_arrow(), predicate="t.id = s.id", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    return frame.height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="coolie-bench-s3-"))
    server, endpoint = _start_server(work / "moto.log")
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            AWS_ALLOW_HTTP="true",
        )
        import boto3  # type: ignore[import-untyped]  # boto3 ships no type information
        from deltalake import write_deltalake

        import coolie_core.driver  # noqa: F401 - imported before any clock starts

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        frame = orders(args.rows)
        _put_parquet(client, "src/orders.parquet", frame)
        _put_parquet(client, "src/changes.parquet", changes(frame))
        system = with_system_columns(frame, loaded_at=LOADED_AT, run_id=BASE_RUN_ID)
        runners: dict[str, Callable[[str, str, Path], int]] = {"coolie": _coolie, "baseline": _baseline}
        figures: list[dict[str, Any]] = []
        for case in ("append", "merge"):
            for impl, runner in runners.items():
                seconds, cpu = [], []
                for repeat in range(args.repeat):
                    prefix = f"{case}-{impl}-{repeat}"
                    if case == "merge":  # the target table, before the clock
                        base = system if impl == "coolie" else frame
                        write_deltalake(f"s3://{BUCKET}/{prefix}/t", base.to_arrow(), mode="overwrite")
                    t0, c0 = time.perf_counter(), time.process_time()
                    rows = runner(case, prefix, work)
                    seconds.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                figure = {
                    "case": case,
                    "impl": impl,
                    "rows": args.rows,
                    "rows_written": rows,
                    "seconds": round(statistics.median(seconds), 3),
                    "cpu_s": round(statistics.median(cpu), 3),
                    "runs": [round(s, 3) for s in seconds],
                }
                figures.append(figure)
                print(json.dumps(figure), flush=True)
        print(f"\nS3 (moto on loopback), {args.rows:,} rows, median of {args.repeat} ({dt.date.today()}):")
        print(f"{'case':8} {'impl':9} {'seconds':>8} {'cpu s':>8} {'Mrows/s':>8}")
        for f in figures:
            rate = f["rows_written"] / f["seconds"] / 1e6
            print(f"{f['case']:8} {f['impl']:9} {f['seconds']:8.2f} {f['cpu_s']:8.2f} {rate:8.2f}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


if __name__ == "__main__":
    main()
