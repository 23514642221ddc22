"""Schedules, sensors, asset checks and a downstream user asset, on a real Dagster instance.

The coolie assets here are stand-ins built from ``CoolieTranslator`` specs (one no-op op per
dataflow), so these tests exercise only the automation built around them; tables are real Delta
tables in ``tmp_path``.
"""

import datetime as dt
import http.server
import importlib.util
import json
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import dagster as dg
import polars as pl
import pytest
import yaml

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.driver import Driver
from coolie_core.locations import destination_location
from coolie_core.models import UniqueCheck
from coolie_core.planning import plan_dataflows
from coolie_core.sharding import ShardSpec, assign_shard
from coolie_dagster.checks import build_asset_checks, evaluate_check
from coolie_dagster.schedules import JOB_INDEX_TAG, JOB_NUM_TAG, STAGE_TAG, build_schedules
from coolie_dagster.sensors import build_file_arrival_sensor, build_run_failure_sensor
from coolie_dagster.translator import CoolieTranslator

ROOT = Path(__file__).parents[2]
TRANSLATOR = CoolieTranslator()
UTC = dt.UTC


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def flow(name: str, *, stage: str = "bronze", path: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "stage": stage,
        "source": {"format": "csv", "connection": "raw", "path": path or f"{name}/*.csv"},
        "destination": {"connection": "lake", "table": f"{stage}/{name}", "load": "append"},
        **extra,
    }


def write_catalog(tmp_path: Path, dataflows: list[dict[str, Any]], **stages: dict[str, Any]) -> LoadedCatalog:
    doc: dict[str, Any] = {
        "version": 1,
        "stages": stages or {"bronze": {}},
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": dataflows,
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_catalog(path)


def stand_in_assets(
    loaded: LoadedCatalog, partitions: Mapping[str, dg.PartitionsDefinition] | None = None
) -> list[dg.AssetsDefinition]:
    """One no-op op per dataflow, with the translator's spec (what the coolie assets look like)."""
    assets = []
    for f in loaded.catalog.dataflows:
        spec = TRANSLATOR.get_asset_spec(f, loaded=loaded)
        if partitions and f.name in partitions:
            spec = spec.replace_attributes(partitions_def=partitions[f.name])

        @dg.multi_asset(specs=[spec], name=f"load_{f.name}")
        def load(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult[None]]:
            for key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key)

        assets.append(load)
    return assets


def key_of(loaded: LoadedCatalog, name: str) -> dg.AssetKey:
    return TRANSLATOR.get_asset_key(loaded.catalog.dataflow(name))


def tick(
    schedule: dg.ScheduleDefinition, defs: dg.Definitions, instance: dg.DagsterInstance, at: dt.datetime
) -> list[dg.RunRequest]:
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
    )
    return list(schedule.evaluate_tick(context).run_requests or [])


def own_tags(request: dg.RunRequest) -> dict[str, str]:
    """The tags coolie put on a request (Dagster adds ``dagster/schedule_name``)."""
    return {k: v for k, v in request.tags.items() if k != "dagster/schedule_name"}


def materialized(instance: dg.DagsterInstance, run_id: str) -> set[tuple[dg.AssetKey, str | None]]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return {
        (r.event_log_entry.dagster_event.asset_key, r.event_log_entry.dagster_event.partition)
        for r in records
        if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.asset_key
    }


# --------------------------------------------------------------------------- schedules


def test_schedules_are_named_by_stage_or_dataflow_and_select_the_assets_due(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A stage's cron gives ``<stage>_schedule``; a dataflow's own cron ``<dataflow>_schedule``
    (shared own crons in a stage ``<stage>_<cron>_schedule``); default statuses come from the
    catalog; disabled and unscheduled dataflows are in none; a tick's request really runs."""
    loaded = write_catalog(
        tmp_path,
        [
            flow("b1"),
            flow("b2"),
            flow("b3"),
            flow("b4", schedule="30 2 * * *"),
            flow("b5", schedule="30 2 * * *"),
            flow("b6", schedule="45 1 * * *", default_status="running"),
            flow("s1", stage="silver"),
            flow("off", enabled=False),
            flow("manual", stage="adhoc"),
        ],
        bronze={"schedule": "0 * * * *", "timezone": "Europe/Berlin"},
        silver={
            "schedule": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "timeout": 900,
            "default_status": "running",
        },
        adhoc={},
    )
    schedules = build_schedules(loaded, translator=TRANSLATOR)
    stopped, running = dg.DefaultScheduleStatus.STOPPED, dg.DefaultScheduleStatus.RUNNING
    assert [(s.name, s.cron_schedule, s.execution_timezone, s.default_status) for s in schedules] == [
        ("bronze_schedule", "0 * * * *", "Europe/Berlin", stopped),
        ("bronze_30_2_x_x_x_schedule", "30 2 * * *", "Europe/Berlin", stopped),
        ("b6_schedule", "45 1 * * *", "Europe/Berlin", running),
        ("silver_schedule", "30 2 * * *", "Europe/Berlin", running),
    ]
    assert all(s.description and s.description.startswith("coolie stage ") for s in schedules)
    defs = dg.Definitions(assets=stand_in_assets(loaded), schedules=schedules)
    dg.Definitions.validate_loadable(defs)

    at = dt.datetime(2024, 6, 1, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    hourly, shared, _, nightly = (tick(s, defs, instance, at) for s in schedules)
    assert [set(r.asset_selection or []) for r in hourly] == [{key_of(loaded, n) for n in ("b1", "b2", "b3")}]
    # One cron, two stages: two schedules, each run tagged with its stage.
    assert [(set(r.asset_selection or []), own_tags(r)) for r in shared + nightly] == [
        ({key_of(loaded, "b4"), key_of(loaded, "b5")}, {STAGE_TAG: "bronze"}),
        ({key_of(loaded, "s1")}, {STAGE_TAG: "silver", "dagster/max_runtime": "900"}),
    ]
    assert all("2024-06-01T00:30:00+00:00" in (r.run_key or "") for r in hourly + shared + nightly)
    assert all(r.partition_key is None for r in hourly + shared + nightly)

    for schedule, request in ((schedules[1], shared[0]), (schedules[3], nightly[0])):
        job = defs.resolve_job_def(schedule.job_name)
        result = job.execute_in_process(
            instance=instance, asset_selection=request.asset_selection, tags=request.tags
        )
        assert materialized(instance, result.run_id) == {(k, None) for k in request.asset_selection or []}
        assert (run := instance.get_run_by_id(result.run_id)) is not None
        assert run.tags[STAGE_TAG] == request.tags[STAGE_TAG]


def test_sharded_schedule_partitions_the_assets_exactly_like_coolie_plan(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """shards: 3 gives three tagged requests whose selections are disjoint, cover every scheduled
    asset, and equal assign_shard / ``coolie plan --job-num 3 --job-index i``."""
    names = [f"table_{i:02d}" for i in range(12)]
    loaded = write_catalog(
        tmp_path,
        [flow(n) for n in names] + [flow("pinned_a", group=1), flow("pinned_b", group=1)],
        bronze={"schedule": "*/10 * * * *", "shards": 3},
    )
    (schedule,) = build_schedules(loaded, translator=TRANSLATOR)
    defs = dg.Definitions(assets=stand_in_assets(loaded), schedules=[schedule])
    requests = tick(schedule, defs, instance, dt.datetime(2024, 6, 1, 12, 10, tzinfo=UTC))

    assert len(requests) == 3
    assert [own_tags(r) for r in requests] == [
        {STAGE_TAG: "bronze", JOB_NUM_TAG: "3", JOB_INDEX_TAG: str(i)} for i in range(3)
    ]
    assert len({r.run_key for r in requests}) == 3
    selections = [set(r.asset_selection or []) for r in requests]
    all_keys = {key_of(loaded, f.name) for f in loaded.catalog.dataflows}
    assert set().union(*selections) == all_keys
    assert sum(len(s) for s in selections) == len(all_keys)  # disjoint
    for index, selection in enumerate(selections):
        by_hash = {key_of(loaded, f.name) for f in loaded.catalog.dataflows if assign_shard(f, 3) == index}
        by_plan = {
            key_of(loaded, p.name)
            for p in plan_dataflows(loaded, shard=ShardSpec(job_num=3, job_index=index))
        }
        assert selection == by_hash == by_plan
    pinned = {key_of(loaded, "pinned_a"), key_of(loaded, "pinned_b")}
    assert any(pinned <= s for s in selections)  # a group stays on one shard


def test_partitioned_dataflows_run_their_latest_complete_window(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Partitioned dataflows get one request per partitions spec with the last completed window;
    two specs on one cron need two schedules (one partitions definition per Dagster job)."""
    loaded = write_catalog(
        tmp_path,
        [
            flow("plain"),
            flow("monthly", partitions={"column": "ts", "every": "month", "start": "2024-01-01"}),
            flow("daily", partitions={"column": "ts", "every": "day", "start": "2024-01-01"}),
        ],
        bronze={"schedule": "0 3 * * *"},
    )
    partitions = {
        "monthly": dg.MonthlyPartitionsDefinition(start_date="2024-01-01"),
        "daily": dg.DailyPartitionsDefinition(start_date="2024-01-01"),
    }
    schedules = build_schedules(loaded, translator=TRANSLATOR)
    assert [s.name for s in schedules] == ["bronze_schedule", schedules[1].name]
    assert schedules[1].name.startswith("bronze_month_")
    assert schedules[1].name.endswith("_schedule")
    assert schedules[1].cron_schedule == "0 3 * * *"
    defs = dg.Definitions(assets=stand_in_assets(loaded, partitions), schedules=schedules)
    dg.Definitions.validate_loadable(defs)

    def by_key(at: dt.datetime) -> dict[dg.AssetKey, str | None]:
        return {
            key: r.partition_key
            for s in schedules
            for r in tick(s, defs, instance, at)
            for key in r.asset_selection or []
        }

    plain, monthly, daily = (key_of(loaded, n) for n in ("plain", "monthly", "daily"))
    assert by_key(dt.datetime(2024, 6, 1, 3, tzinfo=UTC)) == {
        plain: None,
        monthly: "2024-05-01",
        daily: "2024-05-31",
    }
    assert by_key(dt.datetime(2024, 6, 15, 3, tzinfo=UTC)) == {
        plain: None,
        monthly: "2024-05-01",
        daily: "2024-06-14",
    }
    assert by_key(dt.datetime(2024, 1, 1, 3, tzinfo=UTC)) == {plain: None}  # nothing complete yet

    for schedule in schedules:
        for request in tick(schedule, defs, instance, dt.datetime(2024, 6, 15, 3, tzinfo=UTC)):
            result = defs.resolve_job_def(schedule.job_name).execute_in_process(
                instance=instance,
                asset_selection=request.asset_selection,
                partition_key=request.partition_key,
                tags=request.tags,
            )
            expected = {(k, request.partition_key) for k in request.asset_selection or []}
            assert materialized(instance, result.run_id) == expected


# --------------------------------------------------------------------------- sensors


def test_file_sensor_fires_once_per_new_file(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """A new or changed file launches the dataflows reading it, once; partitioned and non-file
    dataflows are not watched."""
    loaded = write_catalog(
        tmp_path,
        [
            flow("orders"),
            flow("orders_copy", path="orders/*.csv"),
            flow("customers"),
            flow(
                "events",
                partitions={"column": "ts", "every": "day", "start": "2024-01-01", "end": "2024-02-01"},
            ),
        ],
    )
    raw = tmp_path / "raw"
    for folder in ("orders", "customers", "events"):
        (raw / folder).mkdir(parents=True)
    (raw / "orders" / "2024-01.csv").write_text("id\n1\n")
    (raw / "events" / "e.csv").write_text("ts\n2024-01-01\n")
    sensor = build_file_arrival_sensor(loaded, translator=TRANSLATOR)
    assert sensor is not None
    assert sensor.minimum_interval_seconds == 60
    defs = dg.Definitions(assets=stand_in_assets(loaded), sensors=[sensor])
    dg.Definitions.validate_loadable(defs)
    orders = {key_of(loaded, "orders"), key_of(loaded, "orders_copy")}

    cursor: str | None = None

    def evaluate() -> list[dg.RunRequest]:
        nonlocal cursor
        result = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        )
        cursor = result.cursor
        return list(result.run_requests or [])

    first = evaluate()
    assert [set(r.asset_selection or []) for r in first] == [orders]
    assert json.loads(cursor or "{}").keys() == {str(raw / "orders" / "2024-01.csv")}
    assert evaluate() == []
    assert evaluate() == []

    (raw / "customers" / "c.csv").write_text("id\n7\n")
    second = evaluate()
    assert [set(r.asset_selection or []) for r in second] == [{key_of(loaded, "customers")}]
    assert second[0].run_key != first[0].run_key
    assert (second[0].run_key or "").startswith("files:")
    assert evaluate() == []

    changed = raw / "orders" / "2024-01.csv"
    changed.write_text("id\n1\n2\n")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 1_000_000))
    assert [set(r.asset_selection or []) for r in evaluate()] == [orders]
    assert evaluate() == []


class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(
            {"content_type": self.headers["Content-Type"], "body": json.loads(self.rfile.read(length))}
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dg.op
def extract() -> None:
    raise ValueError("source unreachable at postgresql://etl:hunter2@db/erp")


@dg.job
def tiny_job() -> None:
    extract()


def failure_context(
    instance: dg.DagsterInstance, sensor: dg.SensorDefinition
) -> tuple[dg.RunFailureSensorContext, str]:
    """A real failed run of a tiny job (with shard tags) and the failure sensor's context for it."""
    defs = dg.Definitions(jobs=[tiny_job], sensors=[sensor])
    result = tiny_job.execute_in_process(
        instance=instance, raise_on_error=False, tags={JOB_NUM_TAG: "4", JOB_INDEX_TAG: "2"}
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    ).for_run_failure()
    return context, result.run_id


def test_failure_sensor_writes_alert_and_posts_webhook(
    tmp_path: Path, instance: dg.DagsterInstance, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """A failed run appends one JSON alert (run, job, failed step, error, shard) with the password
    masked, and POSTs the same record as JSON."""
    url, received = webhook
    sensor = build_run_failure_sensor(alert_dir=str(tmp_path / "alerts"), webhook_url=url)
    context, run_id = failure_context(instance, sensor)
    sensor(context)

    lines = (tmp_path / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["run_id"] == run_id
    assert record["job"] == "tiny_job"
    assert record["failed_steps"] == ["extract"]
    assert record["error"].startswith("ValueError: source unreachable at postgresql://etl:***@db/erp")
    assert record["shard"] == {JOB_NUM_TAG: "4", JOB_INDEX_TAG: "2"}
    assert dt.datetime.fromisoformat(record["time"]).tzinfo is not None
    assert "hunter2" not in lines[0]
    assert received == [{"content_type": "application/json", "body": record}]


def test_failure_sensor_survives_a_dead_webhook(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """A webhook that refuses connections is logged; the alert record is still written."""
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sensor = build_run_failure_sensor(alert_dir=str(tmp_path), webhook_url=f"http://127.0.0.1:{port}/x")
    context, run_id = failure_context(instance, sensor)
    sensor(context)
    assert json.loads((tmp_path / "alerts.jsonl").read_text())["run_id"] == run_id


# --------------------------------------------------------------------------- asset checks


def checks_catalog(tmp_path: Path) -> LoadedCatalog:
    return write_catalog(
        tmp_path,
        [
            flow(
                "orders",
                checks=[
                    {"kind": "row_count", "min": 1},
                    {"kind": "not_null", "columns": ["order_id", "customer_id"]},
                    {"kind": "unique", "columns": ["order_id"], "blocking": True},
                    {"kind": "accepted_values", "column": "status", "values": ["placed", "shipped"]},
                    {"kind": "freshness", "max_lag": {"hours": 6}},
                ],
            ),
            flow(
                "clean",
                checks=[
                    {"kind": "row_count", "min": 3},
                    {"kind": "not_null", "columns": ["order_id"]},
                    {"kind": "unique", "columns": ["order_id"]},
                    {"kind": "accepted_values", "column": "flag", "values": [True]},
                ],
            ),
            flow("missing", checks=[{"kind": "row_count", "min": 1, "blocking": True}]),
        ],
    )


def test_asset_checks_pass_and_fail_on_real_tables(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Each catalog check reads the Delta table: failures carry counts and samples, blocking ones
    are ERROR, others WARN; a table never written fails with a clear message."""
    loaded = checks_catalog(tmp_path)
    catalog = loaded.catalog
    pl.DataFrame(
        {
            "order_id": [1, 2, 2, 3, 4],
            "customer_id": [10, None, 11, 12, None],
            "status": ["placed", "shipped", "lost", "placed", "stolen"],
        }
    ).write_delta(destination_location(catalog, catalog.dataflow("orders")))
    pl.DataFrame({"order_id": [1, 2, 3], "flag": [True, True, None]}).write_delta(
        destination_location(catalog, catalog.dataflow("clean"))
    )
    checks = build_asset_checks(loaded, translator=TRANSLATOR)
    specs = [TRANSLATOR.get_asset_spec(f, loaded=loaded) for f in catalog.dataflows]
    result = dg.materialize(
        [*specs, *checks],
        instance=instance,
        raise_on_error=False,
        selection=dg.AssetSelection.all_asset_checks(),
    )
    assert not result.success  # blocking checks failed
    found = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    outcome = {k: (e.passed, e.severity.value) for k, e in found.items()}
    assert outcome == {
        ("orders", "row_count"): (True, "WARN"),
        ("orders", "not_null_order_id_customer_id"): (False, "WARN"),
        ("orders", "unique_order_id"): (False, "ERROR"),
        ("orders", "accepted_values_status"): (False, "WARN"),
        ("clean", "row_count"): (True, "WARN"),
        ("clean", "not_null_order_id"): (True, "WARN"),
        ("clean", "unique_order_id"): (True, "WARN"),
        ("clean", "accepted_values_flag"): (True, "WARN"),
        ("missing", "row_count"): (False, "ERROR"),
    }

    def meta(flow_name: str, check: str) -> dict[str, Any]:
        return {
            k: getattr(v, "value", getattr(v, "data", v))
            for k, v in found[(flow_name, check)].metadata.items()
        }

    assert meta("orders", "row_count")["row_count"] == 5
    assert meta("orders", "not_null_order_id_customer_id")["null_counts"] == {"order_id": 0, "customer_id": 2}
    assert meta("orders", "unique_order_id")["sample"] == [{"order_id": 2, "rows": 2}]
    assert meta("orders", "accepted_values_status")["offending_rows"] == 2
    assert {s["value"] for s in meta("orders", "accepted_values_status")["sample"]} == {"lost", "stolen"}
    assert meta("orders", "row_count")["read"] == "delta version 0"
    missing = found[("missing", "row_count")]
    assert "does not exist yet" in (missing.description or "")

    spec = TRANSLATOR.get_asset_spec(catalog.dataflow("orders"), loaded=loaded)
    assert spec.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=6))
    assert TRANSLATOR.get_asset_spec(catalog.dataflow("clean"), loaded=loaded).freshness_policy is None


def test_failing_blocking_check_skips_downstream(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Materialised with its checks, a failing blocking check stops the assets downstream."""
    loaded = write_catalog(
        tmp_path,
        [
            flow("orders", checks=[{"kind": "unique", "columns": ["id"], "blocking": True}]),
            flow("orders_silver", stage="bronze", path="unused/*.csv") | {"depends_on": ["orders"]},
        ],
    )
    pl.DataFrame({"id": [1, 1]}).write_delta(
        destination_location(loaded.catalog, loaded.catalog.dataflow("orders"))
    )
    assets = [*stand_in_assets(loaded), *build_asset_checks(loaded, translator=TRANSLATOR)]
    result = dg.materialize(assets, instance=instance, raise_on_error=False)
    assert materialized(instance, result.run_id) == {(key_of(loaded, "orders"), None)}


def test_checks_on_a_parquet_destination_ignore_uncommitted_batches(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A parquet folder is read through the Driver's committed batch: files of a batch that never
    committed (a crash) are not data, so their duplicates do not fail the check."""
    (tmp_path / "raw" / "events").mkdir(parents=True)
    (tmp_path / "raw" / "events" / "1.csv").write_text("id\n1\n2\n")
    document = flow("events", checks=[{"kind": "unique", "columns": ["id"]}, {"kind": "row_count", "min": 2}])
    document["destination"] = {"connection": "raw", "table": "out/events", "format": "parquet"}
    loaded = write_catalog(tmp_path, [document])
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        assert driver.run().ok
    folder = destination_location(loaded.catalog, loaded.catalog.dataflow("events"))
    pl.DataFrame({"id": [1, 1]}).write_parquet(folder / "part-0000000002-crashed-0.parquet")

    checks = build_asset_checks(loaded, translator=TRANSLATOR, state_dir=tmp_path / "state")
    spec = TRANSLATOR.get_asset_spec(loaded.catalog.dataflow("events"), loaded=loaded)
    result = dg.materialize(
        [spec, *checks], instance=instance, selection=dg.AssetSelection.all_asset_checks()
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items()} == {"unique_id": True, "row_count": True}
    assert evaluations["row_count"].metadata["read"] == dg.MetadataValue.text("1 parquet file(s)")


def test_unique_check_on_scd2_history_counts_current_rows_only() -> None:
    """An SCD2 table keeps old versions of a key; uniqueness is about its current rows."""
    history = pl.LazyFrame({"id": [1, 1, 2], "is_current": [False, True, True]})
    check = UniqueCheck(kind="unique", columns=["id"])
    assert evaluate_check(check, history, current="is_current").passed
    outcome = evaluate_check(check, history)
    assert not outcome.passed
    assert outcome.metadata["sample"] == [{"id": 1, "rows": 2}]


# --------------------------------------------------------------------------- downstream report


def load_report_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coolie_demo_report", ROOT / "examples/demo/report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# dagster-deltalake 0.29.27 calls pydantic's deprecated .dict() and logging's deprecated .warn()
# (the latter when its table-stats step fails on deltalake 1.6.6) on every use.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
def test_report_reads_a_coolie_table_through_the_io_manager(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The demo's report asset loads coolie's silver/orders by asset key alone and writes its own
    Delta table beside it."""
    (tmp_path / "raw" / "orders").mkdir(parents=True)
    (tmp_path / "raw" / "orders" / "1.csv").write_text(
        "order_id,status,amount\n1,placed,10.5\n2,shipped,4.5\n3,placed,1.0\n"
    )
    loaded = write_catalog(
        tmp_path,
        [
            {
                "name": "orders_silver",
                "stage": "silver",
                "source": {"format": "csv", "connection": "raw", "path": "orders/*.csv"},
                "destination": {
                    "connection": "lake",
                    "table": "silver/orders",
                    "load": "merge",
                    "merge_keys": ["order_id"],
                },
            }
        ],
        silver={},
    )
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        assert driver.run().ok
    report = load_report_module()
    lake = tmp_path / "lake"
    coolie_orders = TRANSLATOR.get_asset_spec(loaded.catalog.dataflow("orders_silver"), loaded=loaded)
    assert coolie_orders.key == report.ORDERS

    defs = dg.Definitions.merge(dg.Definitions(assets=[coolie_orders]), report.build_report_definitions(lake))
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[report.report.key])
    assert result.success
    written = pl.read_delta(str(lake / "reports" / "orders_by_status"))
    assert written.select("status", "orders", "revenue").rows() == [("placed", 2, 11.5), ("shipped", 1, 4.5)]


# --------------------------------------------------------------------------- the code location


def test_code_location_schedules_run_real_loads_and_their_checks(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Through ``build_definitions``: a schedule tick's request runs the real coolie load, the
    catalog's checks run with it on the written table, and the file sensor watches its source."""
    from coolie_dagster.definitions import build_definitions

    (tmp_path / "raw" / "orders").mkdir(parents=True)
    (tmp_path / "raw" / "orders" / "1.csv").write_text("order_id,status\n1,placed\n2,lost\n")
    loaded = write_catalog(
        tmp_path,
        [
            flow(
                "orders",
                checks=[
                    {"kind": "unique", "columns": ["order_id"], "blocking": True},
                    {"kind": "accepted_values", "column": "status", "values": ["placed"]},
                ],
            )
        ],
        bronze={"schedule": "0 * * * *"},
    )
    defs = build_definitions(loaded.path, state_dir=tmp_path / "state")
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    (schedule,) = repo.schedule_defs
    (request,) = tick(schedule, defs, instance, dt.datetime(2024, 6, 1, 12, tzinfo=UTC))
    assert request.asset_selection == [key_of(loaded, "orders")]
    assert {s.name for s in repo.sensor_defs} == {"coolie_file_arrival", "coolie_run_failure_alert"}

    result = defs.resolve_job_def(schedule.job_name).execute_in_process(
        instance=instance, asset_selection=request.asset_selection, tags=request.tags
    )
    assert result.success
    table = destination_location(loaded.catalog, loaded.catalog.dataflow("orders"))
    assert pl.read_delta(str(table)).height == 2
    checks = {e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()}
    assert checks == {
        "unique_order_id": (True, "ERROR"),
        "accepted_values_status": (False, "WARN"),
        "schema_drift": (True, "ERROR"),
    }


def test_stage_run_limits_reach_the_instance_and_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage's max_concurrent_runs becomes a coolie/stage tag concurrency limit in the generated
    instance config (loaded by a real instance); its timeout becomes the runs' max_runtime."""
    import yaml as _yaml

    from coolie_dagster.definitions import build_definitions
    from coolie_dagster.instance_config import build_instance_config

    demo = Path(__file__).parents[2] / "examples" / "demo" / "catalog.yaml"
    base = _yaml.safe_load((Path(__file__).parents[2] / "dagster.yaml").read_text())
    config = build_instance_config(load_catalog(demo), base)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(_yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits  # type: ignore[union-attr]
    finally:
        instance.dispose()
    assert {"key": "coolie/stage", "value": "gold", "limit": 2} in limits
    assert any(limit["key"] == "coolie/job_index" for limit in limits)
    gold = build_definitions(demo).resolve_job_def("gold")
    assert gold.tags["coolie/stage"] == "gold"
    assert gold.tags["dagster/max_runtime"] == "3600"
