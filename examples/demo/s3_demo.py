"""Run the demo catalog with its lake on S3 (a local moto server) and print what it wrote.

What `make demo-s3` runs. The catalog is the demo's own (``examples/demo/catalog.yaml``): its
``raw`` and ``lake`` connections become ``s3://coolie-demo/data-s3/...`` through
``COOLIE_DEMO_STORE``, and coolie finds the server and credentials through the standard AWS
variables only (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...), as it would a real bucket. The
ERP database stays a local SQLite file. Runs ``coolie run`` twice: the second writes nothing.

    python examples/demo/s3_demo.py [--rows N]
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

DEMO = Path(__file__).parent
BUCKET = "coolie-demo"
DATA = "data-s3"
"""Local folder (beside the catalog) of the ERP database; the same prefix in the bucket."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
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
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the S3 server did not start: {log.read_text()}") from None
            time.sleep(0.1)
    raise SystemExit("the S3 server did not listen")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=5000, help="number of orders (default 5000)")
    args = parser.parse_args(argv)
    console = Console()
    local = DEMO / DATA
    subprocess.run(
        [sys.executable, str(DEMO / "generate.py"), "--out", str(local), "--rows", str(args.rows), "--force"],
        check=True,
    )
    port = free_port()
    local.mkdir(exist_ok=True)
    server = start_server(port, local / "moto.log")
    try:
        # Only the standard AWS variables: exactly how coolie would reach a real bucket.
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",  # moto's server accepts any key
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "COOLIE_DEMO_STORE": f"s3://{BUCKET}/",
            "COOLIE_DEMO_DATA": DATA,
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        import boto3  # type: ignore[import-untyped]  # boto3 ships no type information

        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        raw = local / "raw"
        for file in sorted(p for p in raw.rglob("*") if p.is_file()):
            s3.put_object(
                Bucket=BUCKET, Key=f"{DATA}/raw/{file.relative_to(raw).as_posix()}", Body=file.read_bytes()
            )
        console.print(
            f"uploaded the raw files to s3://{BUCKET}/{DATA}/raw (server {env['AWS_ENDPOINT_URL']})"
        )
        for attempt in ("first run", "second run (nothing new: writes nothing)"):
            console.rule(attempt)
            done = subprocess.run(
                [sys.executable, "-m", "coolie_core.cli", "run", str(DEMO / "catalog.yaml"),
                 "--state-dir", str(local / ".coolie")],
                env=env,
                check=False,
            )  # fmt: skip
            if done.returncode != 0:
                return done.returncode
        table = Table(title=f"Delta tables in s3://{BUCKET}/{DATA}/lake")
        for column in ("table", "rows", "objects", "bytes"):
            table.add_column(column, justify="left" if column == "table" else "right")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{DATA}/lake/")
        objects = [o for page in pages for o in page.get("Contents", [])]
        tables = sorted({o["Key"].split("/_delta_log/")[0] for o in objects if "/_delta_log/" in o["Key"]})
        for name in tables:
            inside = [o for o in objects if o["Key"].startswith(name + "/")]
            rows = pl.scan_delta(f"s3://{BUCKET}/{name}").select(pl.len()).collect().item()
            size = sum(int(o["Size"]) for o in inside)
            table.add_row(f"s3://{BUCKET}/{name}", str(rows), str(len(inside)), str(size))
        console.print(table)
        return 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
