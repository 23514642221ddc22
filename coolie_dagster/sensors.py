"""Sensors: launch dataflows when their files arrive; raise an alert when a run fails.

The file-arrival sensor's cursor is the JSON map ``{path: [size, mtime_ns]}`` of the files it has
seen (object-store files: ``{uri: [size, etag, last_modified]}``, from listing the bucket). A new or changed file launches the dataflows reading it, once: the run key carries a
fingerprint of those files, and Dagster never launches a run key twice. The first evaluation (no
cursor yet) sees every existing file as new and launches the watched dataflows once; their
watermarks make that run cheap. A landing zone (``incremental: files``) with ``max_files_per_run``
is launched again after each batch while files wait (run key: its batch number and the count).

The failure sensor appends one JSON line per failed run to ``<alert_dir>/alerts.jsonl`` and POSTs
the same record to a webhook when one is configured. The record holds no run config, no
environment and no webhook URL; passwords inside URLs in error messages are masked.
"""

import datetime as dt
import hashlib
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from coolie_core.catalog import LoadedCatalog
from coolie_core.errors import CoolieError
from coolie_core.landing import is_landing, landing_state, plan_landing
from coolie_core.locations import source_storage
from coolie_core.models import Dataflow, FileSource
from coolie_core.storage import StorageLocation
from coolie_dagster.automation import sensor_status
from coolie_dagster.translator import CoolieTranslator

__all__ = [
    "ALERT_DIR_ENV",
    "ALERT_WEBHOOK_ENV",
    "alert_record",
    "build_file_arrival_sensor",
    "build_run_failure_sensor",
    "build_sensors",
    "post_alert",
]

ALERT_DIR_ENV = "COOLIE_ALERT_DIR"
"""Folder of ``alerts.jsonl`` when ``alert_dir`` is not given."""
ALERT_WEBHOOK_ENV = "COOLIE_ALERT_WEBHOOK"
"""Webhook URL when ``webhook_url`` is not given (read at each alert, never stored)."""

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_MAX_ERROR_CHARS = 4000
_SHARD_TAGS = ("coolie/job_num", "coolie/job_index")


# --------------------------------------------------------------------------- file arrival


def _scan(
    patterns: Mapping[StorageLocation, list[dg.AssetKey]],
) -> tuple[dict[str, list[Any]], dict[str, set[dg.AssetKey]]]:
    """The files matching the patterns now, with ``[size, mtime_ns]`` (object stores:
    ``[size, ETag, last modified]``, listing the bucket), and the assets reading each."""
    seen: dict[str, list[Any]] = {}
    readers: dict[str, set[dg.AssetKey]] = defaultdict(set)
    for pattern, keys in patterns.items():
        for info in pattern.glob():
            if info.modified_ns is not None:
                seen[info.uri] = [info.size, info.modified_ns]
            else:
                seen[info.uri] = [info.size, info.etag, info.last_modified.isoformat()]
            readers[info.uri].update(keys)
    return seen, readers


def build_file_arrival_sensor(
    loaded: LoadedCatalog,
    *,
    translator: CoolieTranslator | None = None,
    name: str = "coolie_file_arrival",
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition | None:
    """A sensor launching the file-sourced dataflows whose files are new or changed.

    Partitioned dataflows are left out: a new file does not say which window it fills (backfill
    or schedule them). None when no enabled, unpartitioned dataflow reads files.
    """
    translator = translator or CoolieTranslator()
    catalog = loaded.catalog
    patterns: dict[StorageLocation, list[dg.AssetKey]] = defaultdict(list)
    for flow in catalog.dataflows:
        if flow.enabled and isinstance(flow.source, FileSource) and flow.partitions is None:
            location = source_storage(catalog, flow)
            assert location is not None  # a file source always has one
            patterns[location].append(translator.get_asset_key(flow))
    if not patterns:
        return None
    targets = sorted({k for keys in patterns.values() for k in keys}, key=lambda k: k.to_user_string())
    # Landing zones that load a backlog over several runs: launched again while files wait.
    backlogged = [
        (flow, translator.get_asset_key(flow))
        for flow in catalog.dataflows
        if flow.enabled and flow.partitions is None and is_landing(flow)
        and isinstance(flow.source, FileSource) and flow.source.max_files_per_run
    ]  # fmt: skip

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        previous: dict[str, Any] = {}
        if context.cursor:
            try:
                previous = json.loads(context.cursor)
            except json.JSONDecodeError:
                context.log.warning("coolie: unreadable file-sensor cursor; treating every file as new")
        current, readers = _scan(patterns)
        cursor = json.dumps(current, sort_keys=True)
        changed = {path: sig for path, sig in sorted(current.items()) if previous.get(path) != sig}
        waiting = _backlog(loaded, backlogged, context.log)
        if not changed and not waiting:
            return dg.SensorResult(skip_reason="no new or changed files", cursor=cursor)
        selected = {k for path in changed for k in readers[path]} | {k for k, _ in waiting}
        keys = sorted(selected, key=lambda k: k.to_user_string())
        # A backlog run is keyed by the dataflow's batch: each committed batch launches the next.
        identity = {**changed, **{f"backlog:{k.to_user_string()}": mark for k, mark in waiting}}
        fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        context.log.info(f"coolie: {len(changed)} new or changed file(s) -> {len(keys)} asset(s)")
        request = dg.RunRequest(
            run_key=f"files:{fingerprint}",
            asset_selection=keys,
            tags={"coolie/trigger": "file_arrival", "coolie/files_fingerprint": fingerprint},
        )
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return dg.SensorDefinition(
        name=name,
        evaluation_fn=evaluate,
        minimum_interval_seconds=minimum_interval_seconds,
        target=dg.AssetSelection.assets(*targets),
        description=f"coolie: launches {len(targets)} file-sourced dataflow(s) when their files change",
        # The catalog's defaults.default_status says whether it starts running on a fresh instance.
        default_status=sensor_status(catalog.defaults.default_status),
    )


def _backlog(
    loaded: LoadedCatalog, flows: list[tuple[Dataflow, dg.AssetKey]], log: logging.Logger
) -> list[tuple[dg.AssetKey, list[int]]]:
    """Landing zones with files left by ``max_files_per_run``: ``(asset, [batch, files waiting])``."""
    waiting = []
    base = loaded.path if loaded.path.is_dir() else loaded.path.parent
    for flow, key in flows:
        try:
            state, dest = landing_state(loaded.catalog, flow, state_dir=base / ".coolie")
            batch = plan_landing(loaded.catalog, flow, state=state, dest=dest)
        except (CoolieError, OSError) as exc:  # the run reports it; the sensor keeps watching
            log.warning(f"coolie: cannot tell the files waiting for {flow.name}: {exc}")
            continue
        if batch.files or batch.pending:
            waiting.append((key, [state.batch, len(batch.files) + batch.pending]))
    return waiting


# --------------------------------------------------------------------------- failure alerts


def _redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


def alert_record(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """The alert of a failed run: run id, job, failed steps, the first error, shard and time."""
    run = context.dagster_run
    steps: list[str] = []
    error: str | None = None
    for event in context.get_step_failure_events():
        if event.step_key:
            steps.append(event.step_key)
        info = event.step_failure_data.error if event.step_failure_data else None
        while info is not None and info.cause is not None:  # Dagster wraps the user's exception
            info = info.cause
        if error is None and info is not None:
            error = info.message.strip()
    if error is None:
        error = (context.failure_event.message or "run failed").strip()
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "run_id": run.run_id,
        "job": run.job_name,
        "failed_steps": steps,
        "error": _redact(error)[:_MAX_ERROR_CHARS],
        "partition": run.tags.get("dagster/partition"),
        "shard": {k: run.tags[k] for k in _SHARD_TAGS if k in run.tags} or None,
    }


def post_alert(url: str, record: Mapping[str, Any], *, log: logging.Logger) -> bool:
    """POST ``record`` as JSON (timeout 10 s). A failure is logged, never raised; True on 2xx."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        log.warning("coolie: alert webhook ignored: only http(s) URLs are supported")
        return False
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) above
        url,
        data=json.dumps(record).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "coolie-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http(s) only
            ok = 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # The URL is not logged: webhook URLs often carry a token.
        log.warning(f"coolie: alert webhook failed: {type(exc).__name__}: {exc}")
        return False
    if not ok:
        log.warning(f"coolie: alert webhook answered HTTP {response.status}")
    return ok


def build_run_failure_sensor(
    *, alert_dir: str | None = None, webhook_url: str | None = None, name: str = "coolie_run_failure_alert"
) -> dg.SensorDefinition:
    """A run-failure sensor over every job of the code location (running by default).

    Alerts go to ``<alert_dir>/alerts.jsonl`` (else ``$COOLIE_ALERT_DIR``) and to ``webhook_url``
    (else ``$COOLIE_ALERT_WEBHOOK``); with neither, the alert is only logged.
    """

    @dg.run_failure_sensor(
        name=name,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="coolie: writes an alert record (and calls the webhook) for every failed run",
    )
    def alert(context: dg.RunFailureSensorContext) -> None:
        record = alert_record(context)
        directory = alert_dir or os.environ.get(ALERT_DIR_ENV)
        if directory:
            path = Path(directory) / "alerts.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as file:  # errors raise: Dagster retries the tick
                file.write(json.dumps(record, sort_keys=True) + "\n")
        url = webhook_url or os.environ.get(ALERT_WEBHOOK_ENV)
        if url:
            post_alert(url, record, log=context.log)
        if not directory and not url:
            context.log.warning(f"coolie: run {record['run_id']} failed (no alert_dir or webhook set)")

    return alert


def build_sensors(
    loaded: LoadedCatalog,
    *,
    translator: CoolieTranslator | None = None,
    alert_dir: str | None = None,
    webhook_url: str | None = None,
    minimum_interval_seconds: int = 60,
) -> list[dg.SensorDefinition]:
    """The file-arrival sensor (when any dataflow reads files) and the run-failure alert sensor.

    Example:
        >>> from coolie_core.catalog import load_catalog
        >>> sensors = build_sensors(load_catalog("examples/demo/catalog.yaml"), alert_dir="/tmp/a")  # doctest: +SKIP
        >>> [s.name for s in sensors]  # doctest: +SKIP
        ['coolie_file_arrival', 'coolie_run_failure_alert']
    """
    files = build_file_arrival_sensor(
        loaded, translator=translator, minimum_interval_seconds=minimum_interval_seconds
    )
    alerts = build_run_failure_sensor(alert_dir=alert_dir, webhook_url=webhook_url)
    return [files, alerts] if files is not None else [alerts]
