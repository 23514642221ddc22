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
last *completed* window (``end_offset=1`` would add the open one, which coolie never loads). The
keys always equal those of :func:`~coolie_core.windows.plan_partitions` (what ``coolie plan
--windows`` lists): with an ``end`` in the future, the windows completed so far.

Everything else is a ``StaticPartitionsDefinition`` of the planned keys: integer partitions, steps
cron cannot express (multi-day, minutes not dividing the hour), and a ``start`` or ``end`` off a
boundary (a partial first or last chunk; Dagster would round it away). Static keys are fixed at
load time, so those specs need an ``end`` (``coolie validate`` refuses them without one).

A run tagged with a partition key (or range end) that is not a key is refused by
:func:`check_run_partitions` before the asset reads anything.
"""

import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

import dagster as dg

from coolie_core.models import PartitionSpec
from coolie_core.windows import Window, every_as_cron, irregular_windows, normalize_bound, plan_windows

__all__ = [
    "PARTITION_TAG",
    "RANGE_END_TAG",
    "RANGE_START_TAG",
    "PartitionsError",
    "build_partitions_def",
    "check_run_partitions",
    "windows_for_keys",
    "windows_for_time_window",
]

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
_SHOWN_KEYS = 3

_SUB_DAY_FMT = "%Y-%m-%d-%H:%M"
_DAY_FMT = "%Y-%m-%d"


class PartitionsError(ValueError):
    """A dataflow's partitions cannot become a Dagster partitions definition."""


def _local(spec: PartitionSpec, bound: dt.datetime | dt.date, fmt: str) -> str:
    instant = normalize_bound(bound, timezone=spec.timezone)
    return instant.astimezone(ZoneInfo(spec.timezone)).strftime(fmt)


def _time_window_def(spec: PartitionSpec) -> dg.TimeWindowPartitionsDefinition | None:
    """The time-window definition for a calendar-aligned spec, or None when none fits."""
    cron = every_as_cron(spec) if spec.every != "integer" else None
    if cron is None or irregular_windows(spec) is not None:
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
    """The Dagster partitions of a spec: keys equal ``[w.key for w in plan_partitions(spec)]``.

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
        why = irregular_windows(spec)
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


def _describe_keys(partitions_def: dg.PartitionsDefinition) -> str:
    """The valid keys in a few words: the range and format of time windows, else a sample."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        first, last = partitions_def.get_first_partition_key(), partitions_def.get_last_partition_key()
        if first is None or last is None:
            return "none yet (no window has completed)"
        return f"{first} to {last}, each the start of a window ({partitions_def.cron_schedule}, {partitions_def.timezone})"
    keys = partitions_def.get_partition_keys()
    if len(keys) <= 2 * _SHOWN_KEYS:
        return ", ".join(keys)
    return f"{', '.join(keys[:_SHOWN_KEYS])} ... {', '.join(keys[-_SHOWN_KEYS:])} ({len(keys)} keys)"


def check_run_partitions(
    partitions_def: dg.PartitionsDefinition, tags: Mapping[str, str], *, dataflow: str
) -> None:
    """Refuse a run tagged with a partition (or range end) that is not a key of the asset.

    Dagster resolves an unknown time-window key to some window without complaint (``2024-03-15``
    on monthly partitions loads April), so the asset checks the run's tags before it loads.

    Raises:
        PartitionsError: naming the key and the valid keys.
    """
    given = [(tag, tags[tag]) for tag in (PARTITION_TAG, RANGE_START_TAG, RANGE_END_TAG) if tag in tags]
    bad = [(tag, key) for tag, key in given if not partitions_def.has_partition_key(key)]
    if bad:
        shown = ", ".join(f"{key!r} ({tag})" for tag, key in bad)
        raise PartitionsError(
            f"dataflow {dataflow}: {shown} is not a partition of this asset; valid keys: "
            f"{_describe_keys(partitions_def)}. Nothing was loaded."
        )
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        lo, hi = tags[RANGE_START_TAG], tags[RANGE_END_TAG]
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            window_of = partitions_def.time_window_for_partition_key
            inverted = window_of(lo).start > window_of(hi).start
        else:
            keys = partitions_def.get_partition_keys()
            inverted = keys.index(lo) > keys.index(hi)
        if inverted:
            raise PartitionsError(
                f"dataflow {dataflow}: partition range {lo}...{hi} is inverted (its start is after its end); "
                "nothing was loaded"
            )
