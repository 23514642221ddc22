"""Replay and backfill: exact windows, idempotent reruns, resume after a kill, watermark hand-over,
and maintenance that only removes unreferenced files."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.driver import Driver
from coolie_core.watermarks import read_delta_watermark

UTC = dt.UTC


def events(days: list[dt.date], *, start_id: int = 0, tag: str = "src") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(start_id, start_id + len(days))),
            "day": days,
            "tag": [tag] * len(days),
        }
    )


def write_source(tmp_path: Path, frame: pl.DataFrame, name: str = "part-0.parquet") -> None:
    folder = tmp_path / "raw" / "events"
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / name)


def catalog(tmp_path: Path, **flow: Any) -> LoadedCatalog:
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": "events",
                "source": {"format": "parquet", "connection": "raw", "path": "events/*.parquet"},
                "destination": {"connection": "lake", "table": "events", "load": "append"},
                "partitions": {"column": "day", "every": "month", "start": "2024-01-01"},
                "system_columns": False,
                **flow,
            }
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_catalog(path)


def every_day(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


SOURCE_DAYS = every_day(dt.date(2023, 12, 20), dt.date(2024, 5, 10))


def seed_target(tmp_path: Path) -> pl.DataFrame:
    """The target already holds rows in and outside the replayed range (tag 'old')."""
    old = events(
        [dt.date(2023, 12, 25), dt.date(2024, 1, 5), dt.date(2024, 2, 5), dt.date(2024, 4, 5)],
        start_id=1000,
        tag="old",
    )
    old.write_delta(str(tmp_path / "lake" / "events"))
    return old


def test_replay_three_months_replaces_exactly_those_windows(tmp_path: Path) -> None:
    """Each replayed month holds exactly the source rows of that month; rows outside the range
    are untouched; one commit per chunk; replaying again commits nothing."""
    write_source(tmp_path, events(SOURCE_DAYS))
    old = seed_target(tmp_path)
    loaded = catalog(tmp_path)
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        (result,) = driver.run_replay(["events"], start=dt.date(2024, 1, 1), end=dt.date(2024, 4, 1))
    assert result.status == "succeeded", result.error
    assert [c.window for c in result.chunks] == ["2024-01-01", "2024-02-01", "2024-03-01"]
    assert [c.version for c in result.chunks] == [1, 2, 3]

    table = pl.read_delta(str(tmp_path / "lake" / "events"))
    inside = table.filter(pl.col("day").is_between(dt.date(2024, 1, 1), dt.date(2024, 3, 31)))
    expected = [d for d in SOURCE_DAYS if dt.date(2024, 1, 1) <= d < dt.date(2024, 4, 1)]
    assert sorted(inside["day"].to_list()) == expected
    assert set(inside["tag"]) == {"src"}
    outside = table.filter(~pl.col("day").is_between(dt.date(2024, 1, 1), dt.date(2024, 3, 31))).sort("id")
    assert (
        outside.to_dicts()
        == old.filter(pl.col("day").is_in([dt.date(2023, 12, 25), dt.date(2024, 4, 5)])).sort("id").to_dicts()
    )
    for commit, window in zip(
        DeltaTable(str(tmp_path / "lake" / "events")).history()[:3],
        ["2024-03-01", "2024-02-01", "2024-01-01"],
        strict=True,
    ):
        assert commit["coolie.window"] == window

    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        (again,) = driver.run_replay(["events"], start=dt.date(2024, 1, 1), end=dt.date(2024, 4, 1))
    assert (again.committed, again.skipped) == (0, 3)
    assert DeltaTable(str(tmp_path / "lake" / "events")).version() == 3
    assert pl.read_delta(str(tmp_path / "lake" / "events")).sort("id").equals(table.sort("id"))


def test_replay_windows_accept_datetime_bounds_and_partial_first_chunk(tmp_path: Path) -> None:
    """A mid-month aware datetime start gives a partial first chunk, never a shifted one."""
    write_source(tmp_path, events(SOURCE_DAYS))
    loaded = catalog(tmp_path)
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        (result,) = driver.run_replay(
            ["events"], start=dt.datetime(2024, 1, 15, tzinfo=UTC), end="2024-03-01"
        )
    assert [c.window for c in result.chunks] == ["2024-01-15", "2024-02-01"]
    days = pl.read_delta(str(tmp_path / "lake" / "events"))["day"].sort().to_list()
    assert days == every_day(dt.date(2024, 1, 15), dt.date(2024, 3, 1))


@pytest.mark.e2e
def test_killed_replay_resumes_at_the_first_missing_chunk(tmp_path: Path) -> None:
    """SIGKILL right after chunk 2 commits; the rerun commits only chunk 3."""
    write_source(tmp_path, events(SOURCE_DAYS))
    seed_target(tmp_path)
    catalog(tmp_path)
    cmd = [
        sys.executable, "-m", "coolie_core.cli", "replay", str(tmp_path / "catalog.yaml"), "-d", "events",
        "--start", "2024-01-01", "--end", "2024-04-01", "--json", "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    # after_chunk fires right after a chunk commits: the first run dies after chunk 1 ...
    env = {**os.environ, "COOLIE_FAULT": "after_chunk:events"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -9
    assert DeltaTable(str(tmp_path / "lake" / "events")).version() == 1  # chunk 1 committed, then killed
    # ... the second resumes at chunk 2 and dies right after committing it ...
    env_two = {**os.environ, "COOLIE_FAULT": "after_chunk:events"}
    killed_again = subprocess.run(cmd, env=env_two, capture_output=True, text=True, timeout=120, check=False)
    assert killed_again.returncode == -9
    assert DeltaTable(str(tmp_path / "lake" / "events")).version() == 2  # chunk 2 committed
    # ... and the third commits only chunk 3.
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = json.loads(resumed.stdout.splitlines()[-1])
    assert record["chunks_committed"] == 1
    assert record["chunks_skipped"] == 2
    assert record["windows"] == ["2024-03-01"]
    assert DeltaTable(str(tmp_path / "lake" / "events")).version() == 3
    days = (
        pl.read_delta(str(tmp_path / "lake" / "events"))
        .filter(pl.col("tag") == "src")["day"]
        .sort()
        .to_list()
    )
    assert days == every_day(dt.date(2024, 1, 1), dt.date(2024, 4, 1))


def test_save_watermark_hands_over_without_gap_or_overlap(tmp_path: Path) -> None:
    """After a replay of [Jan, Apr) with save_watermark, the next incremental run loads the rows
    dated exactly 2024-04-01 (the end boundary) once, and everything after, and nothing twice."""
    write_source(tmp_path, events(SOURCE_DAYS))
    loaded = catalog(tmp_path, watermark_columns=["day"])
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        (result,) = driver.run_replay(["events"], start="2024-01-01", end="2024-04-01", save_watermark=True)
        assert result.watermark_after == {"day": dt.date(2024, 3, 31)}
        stored = read_delta_watermark(tmp_path / "lake" / "events", dataflow="events")
        assert stored.value == {"day": dt.date(2024, 3, 31)}
        run = driver.run()
    item = run.result("events")
    assert item.status == "succeeded", item.error
    table = pl.read_delta(str(tmp_path / "lake" / "events"))
    days = table["day"].sort().to_list()
    assert days == every_day(dt.date(2024, 1, 1), dt.date(2024, 5, 10))  # Dec 2023 was never asked for
    assert table.filter(pl.col("day") == dt.date(2024, 4, 1)).height == 1
    assert table["id"].is_unique().all()


def test_replay_of_merge_dataflow_keeps_latest_and_drops_deleted(tmp_path: Path) -> None:
    """A merge dataflow with a change feed replays each window as the latest row per key,
    without keys the feed deleted."""
    feed = pl.DataFrame(
        {
            "id": [1, 1, 2, 3, 3],
            "day": [dt.date(2024, 1, 2)] * 5,
            "v": ["a", "b", "x", "y", "z"],
            "op": ["I", "U", "I", "I", "D"],
            "seq": [1, 2, 1, 1, 2],
        }
    )
    write_source(tmp_path, feed)
    loaded = catalog(
        tmp_path,
        destination={
            "connection": "lake",
            "table": "events",
            "load": "merge",
            "merge_keys": ["id"],
            "cdc": {"column": "op", "delete": ["D"]},
        },
        watermark_columns=["seq"],
    )
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        (result,) = driver.run_replay(["events"], start="2024-01-01", end="2024-02-01")
    assert result.status == "succeeded", result.error
    table = pl.read_delta(str(tmp_path / "lake" / "events")).sort("id")
    assert table.select("id", "v").rows() == [(1, "b"), (2, "x")]


def test_replay_needs_partitions_and_names_the_dataflow(tmp_path: Path) -> None:
    """Replaying a dataflow without partitions fails with a catalog error naming it."""
    write_source(tmp_path, events(SOURCE_DAYS))
    loaded = catalog(tmp_path, partitions=None)
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        (result,) = driver.run_replay(["events"], start="2024-01-01", end="2024-02-01")
    assert result.status == "failed"
    assert "events.partitions" in (result.error or "")
    assert not (tmp_path / "lake" / "events").exists()


def test_vacuum_removes_only_unreferenced_files(tmp_path: Path) -> None:
    """After a replay replaces files, optimize + vacuum (retention 0) deletes exactly the files the
    current version no longer references; the table reads the same afterwards."""
    write_source(tmp_path, events(SOURCE_DAYS))
    seed_target(tmp_path)
    loaded = catalog(tmp_path)
    table_path = tmp_path / "lake" / "events"
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        driver.run_replay(["events"], start="2024-01-01", end="2024-04-01")
        before = pl.read_delta(str(table_path)).sort("id")
        (report,) = driver.run_maintenance(retention_hours=0)
    assert report.status == "succeeded", report.error
    assert report.files_compacted > 1
    on_disk = {p.name for p in table_path.glob("*.parquet")}
    referenced = {Path(uri).name for uri in DeltaTable(str(table_path)).file_uris()}
    assert on_disk == referenced, "vacuum must leave exactly the referenced files"
    assert report.files_vacuumed > 0
    assert pl.read_delta(str(table_path)).sort("id").equals(before)


def test_window_run_of_an_append_dataflow_is_idempotent(tmp_path: Path) -> None:
    """Driver.run_one with a window replaces that window even for an append dataflow: running the
    same window twice leaves the same rows (no duplicates), and the watermark is not touched."""
    from coolie_core.windows import plan_windows

    write_source(tmp_path, events(SOURCE_DAYS))
    loaded = catalog(tmp_path, watermark_columns=["id"])
    flow = loaded.catalog.dataflow("events")
    assert flow.partitions is not None
    (february,) = plan_windows(flow.partitions, start="2024-02-01", end="2024-03-01")
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        first = driver.run_one(flow, window=february)
        second = driver.run_one(flow, window=february)
    assert (first.status, second.status) == ("succeeded", "succeeded"), (first.error, second.error)
    days = pl.read_delta(str(tmp_path / "lake" / "events"))["day"].sort().to_list()
    assert days == every_day(dt.date(2024, 2, 1), dt.date(2024, 3, 1))
    assert read_delta_watermark(tmp_path / "lake" / "events", dataflow="events").value is None


QUARANTINE_ODD = {
    "max_rejected": "60%",
    "rules": [{"kind": "expression", "name": "even", "condition": "id % 2 = 0"}],
}


def quarantined(tmp_path: Path) -> pl.DataFrame:
    return pl.read_delta(str(tmp_path / "lake" / "_quarantine" / "events"))


def replay(loaded: LoadedCatalog, start: dt.date, end: dt.date) -> Any:
    with Driver(loaded) as driver:
        (result,) = driver.run_replay(["events"], start=start, end=end)
    return result


def test_replay_of_a_quarantine_dataflow_quarantines_each_chunk_once(tmp_path: Path) -> None:
    """Each chunk's rejects go to the quarantine table (with their window), the good rows to the
    table without coolie's internal columns; a finished replay run again writes nothing."""
    write_source(tmp_path, events(every_day(dt.date(2024, 1, 1), dt.date(2024, 3, 1))))  # ids 0..59
    loaded = catalog(tmp_path, quarantine=QUARANTINE_ODD)
    result = replay(loaded, dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    assert result.status == "succeeded", result.error
    assert [(c.window, c.rows, c.rejected) for c in result.chunks] == [
        ("2024-01-01", 16, 15),
        ("2024-02-01", 14, 15),
    ]
    assert result.to_record("r")["rows_rejected"] == 30
    target = pl.read_delta(str(tmp_path / "lake" / "events"))
    assert target.columns == ["id", "day", "tag"]
    assert target["id"].sort().to_list() == list(range(0, 60, 2))
    rejects = quarantined(tmp_path)
    ids = sorted(json.loads(raw)["id"] for raw in rejects["raw_row"].to_list())
    assert ids == list(range(1, 60, 2))
    assert sorted(set(rejects["window"].to_list())) == ["2024-01-01", "2024-02-01"]
    assert set(rejects["rule"].to_list()) == {"even"}

    again = replay(loaded, dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    assert (again.status, again.committed, again.skipped) == ("succeeded", 0, 2)
    assert quarantined(tmp_path).height == 30


def test_a_replay_failed_between_the_quarantine_and_the_chunk_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk's rejects are committed, then the replay fails before its rows: the rerun
    commits the rows and does not quarantine the rejects again."""
    from collections import Counter

    from coolie_core import faults

    write_source(tmp_path, events(every_day(dt.date(2024, 1, 1), dt.date(2024, 3, 1))))
    loaded = catalog(tmp_path, quarantine=QUARANTINE_ODD)
    monkeypatch.setattr(faults, "_raised", Counter())  # the fault's count is per process
    monkeypatch.setenv("COOLIE_FAULT", "oserror:after_quarantine:events:1")
    failed = replay(loaded, dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    assert failed.status == "failed", failed
    assert "injected I/O error" in (failed.error or ""), failed.error
    assert quarantined(tmp_path).height == 15
    assert not (tmp_path / "lake" / "events" / "_delta_log").exists()
    monkeypatch.delenv("COOLIE_FAULT")

    resumed = replay(loaded, dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    assert resumed.status == "succeeded", resumed.error
    assert [c.rejected for c in resumed.chunks] == [15, 15]
    ids = sorted(json.loads(raw)["id"] for raw in quarantined(tmp_path)["raw_row"].to_list())
    assert ids == list(range(1, 60, 2)), "each reject exactly once"
    target = pl.read_delta(str(tmp_path / "lake" / "events"))
    assert target["id"].sort().to_list() == list(range(0, 60, 2))


def test_replay_applies_max_rejected_per_chunk(tmp_path: Path) -> None:
    """January is clean, February breaks the rule too often: January is replayed, the replay
    stops at February with its rejects recorded (once, also when run again)."""
    days = every_day(dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    source = events(days).with_columns(
        pl.when(pl.col("day") >= dt.date(2024, 2, 20))
        .then(pl.lit("bad"))
        .otherwise(pl.col("tag"))
        .alias("tag")
    )
    write_source(tmp_path, source)
    quarantine = {
        "max_rejected": 5,
        "rules": [{"kind": "accepted_values", "column": "tag", "values": ["src"]}],
    }
    loaded = catalog(tmp_path, quarantine=quarantine)
    for _ in range(2):
        result = replay(loaded, dt.date(2024, 1, 1), dt.date(2024, 3, 1))
        assert result.status == "failed", result
        assert "more than quarantine.max_rejected 5" in (result.error or ""), result.error
        assert quarantined(tmp_path).height == 10
    target = pl.read_delta(str(tmp_path / "lake" / "events"))
    assert target["day"].sort().to_list() == every_day(dt.date(2024, 1, 1), dt.date(2024, 2, 1))


def test_replay_of_a_quarantine_dataflow_on_spark_is_refused(tmp_path: Path) -> None:
    from coolie_core.errors import CatalogError
    from coolie_core.replay import plan_replay

    write_source(tmp_path, events(every_day(dt.date(2024, 1, 1), dt.date(2024, 3, 1))))
    loaded = catalog(tmp_path, quarantine=QUARANTINE_ODD, engine="spark")
    with pytest.raises(CatalogError) as info:
        plan_replay(loaded, loaded.catalog.dataflow("events"), start=dt.date(2024, 1, 1), end=None)
    assert "events.quarantine" in str(info.value)
    assert "polars engine only" in str(info.value)


def test_the_replay_command_reports_the_rejected_rows_and_where_they_went(tmp_path: Path) -> None:
    write_source(tmp_path, events(every_day(dt.date(2024, 1, 1), dt.date(2024, 3, 1))))
    catalog(tmp_path, quarantine=QUARANTINE_ODD)
    command = [
        sys.executable,
        "-m",
        "coolie_core.cli",
        "replay",
        str(tmp_path / "catalog.yaml"),
        "-d",
        "events",
    ]
    args = ["--start", "2024-01-01", "--end", "2024-03-01"]
    shown = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "600"},
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "events" in line and "succeeded" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:6] == ["events", "succeeded", "2", "0", "30", "30"], cells
    assert cells[6].startswith("quarantined in"), cells
    squeezed = "".join(shown.stdout.split()).replace("│", "")  # the note wraps inside its cell
    assert f"quarantinedin{tmp_path / 'lake' / '_quarantine' / 'events'}" in squeezed
    as_json = subprocess.run(
        [*command, *args, "--json"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert json.loads(as_json.stdout.splitlines()[0])["rows_rejected"] == 0  # done: nothing replayed again
