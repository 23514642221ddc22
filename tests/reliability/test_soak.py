"""Soak: 100 dataflows, 10 incremental rounds, seeded random source failures, retries.

Ninety python-source dataflows (append, merge with a change feed, scd2, overwrite,
replace_window: 18 of each) and ten downstream dataflows that load an upstream append table
incrementally. Before each round every source gets new rows; then seeded failures are planned:
a source drops its connection 1-3 times (2 retries recover from 1-2; 3 fail the dataflow for
this round, so its downstream is skipped) or raises a permanent error (never retried). Retries
wait through an injected ``sleep``, so nothing sleeps. After a final round without failures,
every table and watermark must equal a clean run over the same data, and every Delta log must
be valid with each batch committed once.
"""

import datetime as dt
import json
import random
import shutil
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver, RunResult
from coolie_core.watermarks import read_delta_watermark

pytestmark = pytest.mark.slow

SEED = 20240612
ROUNDS = 10
PER_STRATEGY = 18
DOWNSTREAM = 10
STRATEGIES = ("append", "merge", "scd2", "overwrite", "replace_window")
RETRY = {"count": 2, "delay": 1, "backoff": "exponential", "max_delay": 10, "jitter": 0.5}
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

SOURCES_MODULE = textwrap.dedent(
    '''
    """Python sources of the soak test: the rows that arrived so far, failing when planned."""

    import json
    import threading
    from pathlib import Path

    import polars as pl

    from coolie_core import PermanentSourceError

    HERE = Path(__file__).parent
    _calls: dict[tuple[int, str], int] = {}
    _lock = threading.Lock()


    def rows(flow: str, *, latest_only: bool = False) -> pl.DataFrame:
        control = json.loads((HERE / "control.json").read_text())
        count, kind = control["fail"].get(flow, (0, ""))
        key = (control["round"], flow)
        with _lock:
            _calls[key] = call = _calls.get(key, 0) + 1
        if call <= count:
            if kind == "permanent":
                # How a python source says retrying cannot help (any other exception is retried).
                raise PermanentSourceError(f"{flow}: injected bad record (round {key[0]})")
            raise ConnectionError(f"{flow}: injected connection drop (round {key[0]}, call {call})")
        files = sorted((HERE / "data" / flow).glob("*.parquet"))
        return pl.read_parquet(files[-1:] if latest_only else files)
    '''
)


def flow_names() -> list[str]:
    return [f"{s}_{i:02d}" for s in STRATEGIES for i in range(PER_STRATEGY)]


def catalog_document() -> dict[str, Any]:
    """The 100 dataflows; ``down_NN`` reads ``append_NN``'s table incrementally."""
    flows: list[dict[str, Any]] = []
    for name in flow_names():
        strategy = name.rsplit("_", 1)[0]
        destination: dict[str, Any] = {"connection": "lake", "table": name, "load": strategy}
        flow: dict[str, Any] = {
            "name": name,
            "source": {"format": "python", "connection": "code", "function": f"source_{name}"},
            "destination": destination,
            "retry": RETRY,
        }
        if strategy in ("append", "merge", "scd2"):
            flow["watermark_columns"] = ["ts"]
        if strategy == "merge":
            destination.update(merge_keys=["id"], cdc={"column": "op", "delete": ["D"]})
        if strategy == "scd2":
            destination.update(merge_keys=["id"], scd2={"effective_column": "ts"})
        if strategy == "replace_window":
            flow["partitions"] = {"column": "day", "every": "month", "start": "2024-01-01"}
        flows.append(flow)
    for i in range(DOWNSTREAM):
        flows.append(
            {
                "name": f"down_{i:02d}",
                "source": {"format": "delta", "connection": "lake", "table": f"append_{i:02d}"},
                "transforms": [{"kind": "drop", "columns": ["_coolie_loaded_at", "_coolie_run_id"]}],
                "destination": {"connection": "lake", "table": f"down_{i:02d}", "load": "append"},
                "watermark_columns": ["ts"],
                "retry": RETRY,
            }
        )
    return {
        "defaults": {"max_workers": 4},
        "connections": {
            "code": {"kind": "python", "path": "sources.py"},
            "lake": {"kind": "delta", "path": "lake"},
        },
        "dataflows": flows,
    }


def write_root(root: Path) -> Path:
    """Catalog, source module (one function per dataflow) and an empty failure plan."""
    root.mkdir(parents=True)
    functions = "".join(
        f"\n\ndef source_{name}() -> pl.DataFrame:\n"
        f"    return rows({name!r}, latest_only={name.startswith('overwrite')})\n"
        for name in flow_names()
    )
    (root / "sources.py").write_text(SOURCES_MODULE + functions, encoding="utf-8")
    plan_failures(root, 0, {})
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog_document(), sort_keys=False), encoding="utf-8")
    return path


def plan_failures(root: Path, number: int, failures: dict[str, tuple[int, str]]) -> None:
    (root / "control.json").write_text(json.dumps({"round": number, "fail": failures}), encoding="utf-8")


def new_rows(rng: random.Random, name: str, number: int) -> list[dict[str, Any]]:
    """Round ``number``'s rows for a dataflow (always some in round 1)."""
    strategy = name.rsplit("_", 1)[0]
    day = BASE + dt.timedelta(days=number)
    if strategy == "append":
        return [
            {"id": number * 100 + j, "v": f"r{number}", "ts": day + dt.timedelta(minutes=j)}
            for j in range(rng.randint(1 if number == 1 else 0, 4))
        ]
    if strategy == "merge":
        keys = range(6) if number == 1 else rng.sample(range(8), rng.randint(0, 4))
        return [
            {
                "id": k,
                "v": f"r{number}",
                "op": "D" if rng.random() < 0.2 else "U",
                "ts": day + dt.timedelta(minutes=k),
            }
            for k in keys
        ]
    if strategy == "scd2":
        keys = range(4) if number == 1 else rng.sample(range(5), rng.randint(0, 3))
        return [{"id": k, "v": rng.choice("abc"), "ts": day + dt.timedelta(hours=k)} for k in keys]
    if strategy == "overwrite":
        return [{"id": j, "v": f"r{number}"} for j in sorted(rng.sample(range(10), rng.randint(1, 5)))]
    months = rng.sample(range(1, 7), rng.randint(1, 2))
    return [
        {"id": number * 100 + j, "day": dt.date(2024, m, rng.randint(1, 28)), "v": f"r{number}"}
        for j, m in enumerate(months)
    ]


SCHEMAS: dict[str, dict[str, Any]] = {
    "append": {"id": pl.Int64, "v": pl.String, "ts": pl.Datetime("us", "UTC")},
    "merge": {"id": pl.Int64, "v": pl.String, "op": pl.String, "ts": pl.Datetime("us", "UTC")},
    "scd2": {"id": pl.Int64, "v": pl.String, "ts": pl.Datetime("us", "UTC")},
    "overwrite": {"id": pl.Int64, "v": pl.String},
    "replace_window": {"id": pl.Int64, "day": pl.Date, "v": pl.String},
}


def arrive(root: Path, rng: random.Random, number: int) -> None:
    for name in flow_names():
        folder = root / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        frame = pl.DataFrame(new_rows(rng, name, number), schema=SCHEMAS[name.rsplit("_", 1)[0]])
        frame.write_parquet(folder / f"round-{number:02d}.parquet")


def run(catalog: Path, root: Path, run_id: str, waits: list[float]) -> RunResult:
    with Driver(load_catalog(catalog), state_dir=root / "state", run_id=run_id, sleep=waits.append) as driver:
        return driver.run()


def table_state(root: Path, name: str, canonical: Any) -> tuple[pl.DataFrame, Any]:
    table = root / "lake" / name
    return canonical(pl.read_delta(str(table))), read_delta_watermark(table, dataflow=name).value


def test_soak_100_dataflows_10_rounds_with_failures_equals_a_clean_run(
    tmp_path: Path, canonical: Any, check_delta_log: Any
) -> None:
    """Ten rounds of new rows with random transient and permanent source failures, then one
    round without: tables and watermarks equal one clean run; retries and skips as planned."""
    root, data_rng, fail_rng = tmp_path / "soak", random.Random(SEED), random.Random(SEED + 1)
    catalog = write_root(root)
    waits: list[float] = []
    seen: Counter[str] = Counter()
    retried = 0
    for number in range(1, ROUNDS + 1):
        arrive(root, data_rng, number)
        failures: dict[str, tuple[int, str]] = {}
        for name in flow_names():
            if fail_rng.random() < 0.2:
                failures[name] = (1, "permanent") if fail_rng.random() < 0.2 else (fail_rng.randint(1, 3), "")
        plan_failures(root, number, failures)
        result = run(catalog, root, f"round-{number}", waits)
        failed = {r.dataflow for r in result.results if r.status == "failed"}
        retried += sum(r.attempts - 1 for r in result.results)
        for item in result.results:
            planned = failures.get(item.dataflow)
            if planned is None:
                upstream = f"append_{item.dataflow[-2:]}"
                if item.dataflow.startswith("down_") and upstream in failed:
                    assert item.status == "skipped", item
                    seen["downstream skipped"] += 1
                else:
                    assert item.status in ("succeeded", "skipped"), item
                continue
            count, kind = planned
            if kind == "permanent":
                assert (item.status, item.attempts, item.transient) == ("failed", 1, False), item
                seen["permanent failure"] += 1
            elif count <= RETRY["count"]:
                assert item.status in ("succeeded", "skipped"), item
                assert item.attempts == count + 1, item
                seen["recovered by retry"] += 1
            else:
                assert (item.status, item.attempts, item.transient) == ("failed", 3, True), item
                assert "injected connection drop" in (item.error or ""), item
                seen["failed after retries"] += 1
    plan_failures(root, ROUNDS + 1, {})
    final = run(catalog, root, "catch-up", waits)
    assert final.ok, [r for r in final.results if r.status == "failed"]
    kinds = {"downstream skipped", "permanent failure", "recovered by retry", "failed after retries"}
    assert set(seen) == kinds, f"every kind of failure happened: {seen}"
    assert len(waits) == retried, "every retry waited through the injected sleep"

    reference = tmp_path / "reference"
    reference_catalog = write_root(reference)
    shutil.copytree(root / "data", reference / "data")
    clean = run(reference_catalog, reference, "reference", [])
    assert clean.ok, [r for r in clean.results if r.status == "failed"]
    names = [*flow_names(), *(f"down_{i:02d}" for i in range(DOWNSTREAM))]
    for name in names:
        check_delta_log(root / "lake" / name, name)
        rows, watermark = table_state(root, name, canonical)
        clean_rows, clean_watermark = table_state(reference, name, canonical)
        assert rows.equals(clean_rows), f"{name}: {rows} != {clean_rows}"
        if name.startswith("scd2"):
            # A batch of scd2 changes that change nothing commits nothing (README), so the
            # watermark may stay at an earlier batch's; it is never ahead of the clean one.
            assert watermark["ts"] <= clean_watermark["ts"], name
        else:
            assert watermark == clean_watermark, name
    print(
        f"\nsoak: {len(names)} dataflows x {ROUNDS} rounds (seed {SEED}): {dict(seen)}, {len(waits)} retry waits"
    )
