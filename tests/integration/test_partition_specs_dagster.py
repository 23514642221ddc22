"""Table-driven: every partition spec ``coolie validate`` accepts loads in Dagster with keys equal
to the windows ``coolie plan --windows`` lists; every one Dagster cannot list is refused by
validate with its file, line and field.

The cases cross each ``every`` (with several steps), aligned and mid-period starts, no end / an
aligned end / an end off a boundary, and timezones with DST changes inside the ranges (New York's
spring-forward and fall-back, Lord Howe's half-hour shift) and a half-hour offset (Kolkata).
"""

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.errors import CatalogError
from coolie_core.windows import plan_partitions
from coolie_dagster.partitions import build_partitions_def

UTC = dt.UTC

# every: (aligned start, mid-period start, aligned end, end off a boundary, end after "now",
# "now"), chosen so the ranges stay short (a few hundred windows) and cross DST changes in the
# timezones below.
SPANS: dict[str, tuple[Any, Any, Any, Any, Any, dt.datetime]] = {
    "year": ("2019-01-01", "2019-05-17", "2024-01-01", "2024-03-05", "2027-01-01", dt.datetime(2025, 2, 10, tzinfo=UTC)),
    "quarter": ("2023-01-01", "2023-02-14", "2024-07-01", "2024-08-09", "2026-01-01", dt.datetime(2025, 1, 20, tzinfo=UTC)),
    "month": ("2024-01-01", "2024-01-15", "2024-07-01", "2024-07-20", "2025-06-01", dt.datetime(2024, 12, 3, tzinfo=UTC)),
    "week": ("2024-01-01", "2024-01-03", "2024-03-04", "2024-03-06", "2024-06-03", dt.datetime(2024, 4, 10, tzinfo=UTC)),
    "day": (
        "2024-03-01", "2024-03-01T06:00", "2024-04-15", "2024-04-15T12:00", "2024-06-01",
        dt.datetime(2024, 5, 2, tzinfo=UTC),
    ),
    "hour": (
        "2024-03-09", "2024-03-09T00:20", "2024-03-12", "2024-03-11T22:30", "2024-03-20",
        dt.datetime(2024, 3, 14, 5, 30, tzinfo=UTC),
    ),
    "minute": (
        "2024-11-03T00:00", "2024-11-03T00:07", "2024-11-03T04:00", "2024-11-03T03:50", "2024-11-04T00:00",
        dt.datetime(2024, 11, 3, 12, 13, tzinfo=UTC),
    ),
    "integer": (0, 7, 500, 523, 600, dt.datetime(2024, 1, 1, tzinfo=UTC)),
}  # fmt: skip
STEPS = {"day": [1, 2, 7], "hour": [1, 3, 5], "minute": [1, 15, 45, 90], "integer": [50, 64]}
TIMEZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


def _specs() -> list[dict[str, Any]]:
    specs = []
    for every, (start, mid, end, off_end, future_end, _) in SPANS.items():
        zones = ["UTC"] if every == "integer" else TIMEZONES
        steps = STEPS.get(every, [1])
        ends = (None, end, off_end, future_end)
        for step, first, last, tz in itertools.product(steps, (start, mid), ends, zones):
            spec: dict[str, Any] = {"column": "ts", "every": every, "start": first}
            if step != 1:
                spec["step"] = step
            if last is not None:
                spec["end"] = last
            if every != "integer":
                spec["timezone"] = tz
            specs.append(spec)
    return specs


SPECS = _specs()


def _catalog(tmp_path: Path, partitions: dict[str, Any]) -> Path:
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": "flow",
                "source": {"format": "csv", "connection": "raw", "path": "x/*.csv"},
                "destination": {"connection": "lake", "table": "t", "load": "replace_window"},
                "partitions": partitions,
            }
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "fields", SPECS, ids=lambda f: "-".join(str(v) for k, v in f.items() if k != "column")
)
def test_validated_spec_loads_in_dagster_with_the_planned_keys(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    """validate ok => Dagster builds the partitions and its keys are the keys of the windows
    ``coolie plan --windows`` lists (``plan_partitions``: completed regular windows up to end, or
    the fixed list of irregular ones);
    validate refuses => the problem names the file, line and the partitions field."""
    path = _catalog(tmp_path, fields)
    now = SPANS[fields["every"]][5]
    try:
        loaded = load_catalog(path)
    except CatalogError as exc:
        refused = exc
    else:
        refused = None
    if refused is not None:
        (issue,) = refused.issues
        assert (issue.dataflow, issue.field) == ("flow", "partitions.end"), str(refused)
        lines = path.read_text().splitlines()
        assert lines[issue.line - 2].strip() == "partitions:", "the partitions block (no end to point at)"
        # Refused only what Dagster cannot list: a fixed list of windows without an end.
        assert "end" not in fields
        return
    spec = loaded.catalog.dataflow("flow").partitions
    assert spec is not None
    partitions_def = build_partitions_def(spec, dataflow="flow")
    assert partitions_def is not None
    keys = partitions_def.get_partition_keys(current_time=now)
    assert keys == [w.key for w in plan_partitions(spec, now=now)]
    assert keys, "every case plans at least one window"


def test_the_table_covers_both_outcomes(tmp_path: Path) -> None:
    """Among specs without an end, validate accepts the regular ones (every cadence) and refuses
    each kind of irregular one: a partial first chunk, a step cron cannot express, integers."""
    accepted, refused = set(), set()
    for fields in (f for f in SPECS if "end" not in f):
        try:
            load_catalog(_catalog(tmp_path, fields))
            accepted.add(fields["every"])
        except CatalogError as exc:
            refused.add(exc.issues[0].message.split(" the windows")[0])
    assert accepted == set(SPANS) - {"integer"}
    assert refused == {
        "required: with integer partitions",
        "required: with every: day with step 2",
        "required: with every: day with step 7",
        "required: with every: minute with step 90",
        "required: with every: minute with step 45",
        *(
            f"required: with a start off a {every} boundary (a partial first chunk)"
            for every in SPANS
            if every != "integer"
        ),
    }
