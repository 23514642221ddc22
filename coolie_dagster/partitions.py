"""PartitionSpec -> Dagster ``PartitionsDefinition`` whose keys are exactly coolie's ``Window.key``s.

Calendar-aligned specs become Dagster time-window partitions, so the UI shows a calendar and
ranges are contiguous time windows:

=========================  ================================================================
``every``                  Dagster definition (always with the spec's ``timezone``)
=========================  ================================================================
month / day / hour         ``Monthly`` / ``Daily`` / ``HourlyPartitionsDefinition`` (step 1)
week                       ``WeeklyPartitionsDefinition(day_offset=1)`` (ISO Monday)
year / quarter             cron ``0 0 1 1 *`` / ``0 0 1 */3 *``, fmt ``%Y-%m-%d``
hour / minute with a step  cron from :func:`~coolie_core.windows.every_as_cron`, fmt ``%Y-%m-%d-%H:%M``
=========================  ================================================================

``end`` maps to Dagster's exclusive ``end_date``; ``end_offset=0`` everywhere, so the last key is the
last *completed* window (``end_offset=1`` would add the open one, which coolie never loads). With
an ``end`` in the past the keys equal ``plan_windows(spec)``; with an ``end`` in the future Dagster
lists the windows completed so far, i.e. ``plan_windows(spec, end=min(end, now))``.

Everything else is a ``StaticPartitionsDefinition`` of the planned keys: integer partitions, steps
cron cannot express (multi-day, minutes not dividing the hour), and a ``start`` or ``end`` off a
boundary (a partial first or last chunk; Dagster would round it away). Static keys are fixed at
load time, so those specs need an ``end``.
"""

import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import dagster as dg

from coolie_core.models import PartitionSpec
from coolie_core.windows import Window, every_as_cron, floor_boundary, normalize_bound, plan_windows

__all__ = ["PartitionsError", "build_partitions_def", "windows_for_keys", "windows_for_time_window"]

_SUB_DAY_FMT = "%Y-%m-%d-%H:%M"
_DAY_FMT = "%Y-%m-%d"


class PartitionsError(ValueError):
    """A dataflow's partitions cannot become a Dagster partitions definition."""


def _aligned(spec: PartitionSpec, bound: dt.datetime | dt.date | int) -> bool:
    assert not isinstance(bound, int)
    point = normalize_bound(bound, timezone=spec.timezone)
    return floor_boundary(point, every=spec.every, step=spec.step, timezone=spec.timezone) == point


def _local(spec: PartitionSpec, bound: dt.datetime | dt.date, fmt: str) -> str:
    instant = normalize_bound(bound, timezone=spec.timezone)
    return instant.astimezone(ZoneInfo(spec.timezone)).strftime(fmt)


def _time_window_def(spec: PartitionSpec) -> dg.TimeWindowPartitionsDefinition | None:
    """The time-window definition for a calendar-aligned spec, or None when none fits."""
    cron = every_as_cron(spec) if spec.every != "integer" else None
    if (
        cron is None
        or not _aligned(spec, spec.start)
        or (spec.end is not None and not _aligned(spec, spec.end))
    ):
        return None
    assert not isinstance(spec.start, int)
    assert not isinstance(spec.end, int)
    fmt = _SUB_DAY_FMT if spec.every in ("hour", "minute") else _DAY_FMT
    start = _local(spec, spec.start, fmt)
    end = None if spec.end is None else _local(spec, spec.end, fmt)
    tz = spec.timezone
    if spec.step == 1 and spec.every == "month":
        return dg.MonthlyPartitionsDefinition(start_date=start, end_date=end, timezone=tz, end_offset=0)
    if spec.step == 1 and spec.every == "week":
        return dg.WeeklyPartitionsDefinition(
            start_date=start, end_date=end, timezone=tz, day_offset=1, end_offset=0
        )
    if spec.step == 1 and spec.every == "day":
        return dg.DailyPartitionsDefinition(start_date=start, end_date=end, timezone=tz, end_offset=0)
    if spec.step == 1 and spec.every == "hour":
        return dg.HourlyPartitionsDefinition(start_date=start, end_date=end, timezone=tz, end_offset=0)
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=cron, start=start, end=end, fmt=fmt, timezone=tz, end_offset=0
    )


@functools.lru_cache(maxsize=1024)
def _cached_time_window_def(spec: PartitionSpec) -> dg.TimeWindowPartitionsDefinition | None:
    """:func:`_time_window_def` once per distinct spec (the column plays no part): catalogs repeat
    a few cadences over thousands of dataflows. Dagster computes time-window keys from the clock
    itself, so a cached definition never goes stale (static keys are not cached: they are
    planned up to now)."""
    return _time_window_def(spec)


def build_partitions_def(
    spec: PartitionSpec | None, *, dataflow: str = "?"
) -> dg.PartitionsDefinition | None:
    """The Dagster partitions of a spec: keys equal ``[w.key for w in plan_windows(spec)]``.

    Args:
        spec: the dataflow's partitions (None gives None: an unpartitioned asset).
        dataflow: named in the error when the spec cannot be expressed.

    Raises:
        PartitionsError: the spec needs static partitions (integer, odd step, partial chunk) but
            has no ``end``.

    >>> spec = PartitionSpec(column="d", every="quarter", start=dt.date(2024, 1, 1), end=dt.date(2025, 1, 1))
    >>> build_partitions_def(spec).get_partition_keys()
    ['2024-01-01', '2024-04-01', '2024-07-01', '2024-10-01']
    >>> spec = PartitionSpec(column="n", every="integer", step=100, start=0, end=250)
    >>> build_partitions_def(spec).get_partition_keys()
    ['0-100', '100-200', '200-250']
    """
    if spec is None:
        return None
    time_def = _cached_time_window_def(spec.model_copy(update={"column": ""}))
    if time_def is not None:
        return time_def
    if spec.end is None:
        why = (
            "integer partitions"
            if spec.every == "integer"
            else f"every: {spec.every} with step {spec.step}"
            if every_as_cron(spec) is None
            else "a start off a calendar boundary (a partial first chunk)"
        )
        raise PartitionsError(
            f"dataflow {dataflow}: partitions: {why} become a fixed list of Dagster partitions, "
            "which needs an end; add partitions.end (or align start to a boundary)"
        )
    keys = [w.key for w in plan_windows(spec)]
    twice = sorted(k for k, n in Counter(keys).items() if n > 1)
    if twice:
        raise PartitionsError(
            f"dataflow {dataflow}: partitions: windows share the keys {twice[:3]} (a DST jump in "
            f"{spec.timezone}); use a step that divides the hour or timezone UTC"
        )
    return dg.StaticPartitionsDefinition(keys)


def windows_for_time_window(spec: PartitionSpec, window: dg.TimeWindow) -> list[Window]:
    """The coolie windows inside a Dagster time window (one partition or a range), in order."""
    return plan_windows(spec, start=window.start, end=window.end)


def windows_for_keys(spec: PartitionSpec, keys: Iterable[str]) -> list[Window]:
    """The coolie windows of these partition keys, in calendar order (duplicates dropped).

    Raises:
        PartitionsError: a key is not a partition of the spec.

    >>> spec = PartitionSpec(column="d", every="month", start=dt.date(2024, 1, 15), end=dt.date(2024, 4, 1))
    >>> [(w.key, w.hi.date().isoformat()) for w in windows_for_keys(spec, ["2024-03-01", "2024-01-15"])]
    [('2024-01-15', '2024-02-01'), ('2024-03-01', '2024-04-01')]
    """
    wanted = set(keys)
    if not wanted:
        return []
    pdef = build_partitions_def(spec)
    found: dict[str, Window] = {}
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        for key in wanted:
            if not pdef.has_partition_key(key):
                break
            found.update(
                (w.key, w) for w in windows_for_time_window(spec, pdef.time_window_for_partition_key(key))
            )
    else:
        found = {w.key: w for w in plan_windows(spec) if w.key in wanted}
    missing = sorted(wanted - found.keys())
    if missing:
        raise PartitionsError(f"not partitions of {spec.every} partitions starting {spec.start}: {missing}")
    return sorted((found[k] for k in wanted), key=lambda w: w.lo)
