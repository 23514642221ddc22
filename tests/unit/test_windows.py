"""Partition windows: calendar alignment, DST, partial chunks, tiling and errors."""

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coolie_core import windows as windows_module
from coolie_core.models import PartitionSpec
from coolie_core.windows import (
    MAX_WINDOWS,
    Window,
    every_as_cron,
    floor_boundary,
    next_boundary,
    normalize_bound,
    plan_windows,
    windows_covering,
)

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def spec(every: str, start: Any, end: Any = None, *, step: int = 1, timezone: str = "UTC") -> PartitionSpec:
    return PartitionSpec(column="ts", every=every, step=step, start=start, end=end, timezone=timezone)


def bounds(windows: list[Window]) -> list[tuple[Any, Any]]:
    return [(w.lo, w.hi) for w in windows]


# --------------------------------------------------------------------------- exact plans

PLANS = [
    pytest.param(
        spec("month", dt.date(2024, 1, 15), dt.date(2024, 4, 1)),
        [
            (utc(2024, 1, 15), utc(2024, 2, 1)),
            (utc(2024, 2, 1), utc(2024, 3, 1)),
            (utc(2024, 3, 1), utc(2024, 4, 1)),
        ],
        id="month-mid-month-start-is-a-partial-first-chunk",
    ),
    pytest.param(
        spec("quarter", dt.date(2023, 11, 20), dt.date(2024, 10, 1)),
        [
            (utc(2023, 11, 20), utc(2024, 1, 1)),
            (utc(2024, 1, 1), utc(2024, 4, 1)),
            (utc(2024, 4, 1), utc(2024, 7, 1)),
            (utc(2024, 7, 1), utc(2024, 10, 1)),
        ],
        id="quarters-start-jan-apr-jul-oct",
    ),
    pytest.param(
        spec("year", dt.date(2022, 6, 1), dt.date(2024, 3, 1)),
        [
            (utc(2022, 6, 1), utc(2023, 1, 1)),
            (utc(2023, 1, 1), utc(2024, 1, 1)),
            (utc(2024, 1, 1), utc(2024, 3, 1)),
        ],
        id="years-partial-first-and-last",
    ),
    pytest.param(
        spec("week", dt.date(2020, 12, 28), dt.date(2021, 1, 11)),
        [(utc(2020, 12, 28), utc(2021, 1, 4)), (utc(2021, 1, 4), utc(2021, 1, 11))],
        id="iso-weeks-across-year-end-2020-w53",
    ),
    pytest.param(
        spec("week", dt.date(2026, 12, 31), dt.date(2027, 1, 13)),
        [
            (utc(2026, 12, 31), utc(2027, 1, 4)),
            (utc(2027, 1, 4), utc(2027, 1, 11)),
            (utc(2027, 1, 11), utc(2027, 1, 13)),
        ],
        id="iso-weeks-2026-w53-thursday-start-is-partial",
    ),
    pytest.param(
        spec("week", dt.date(2026, 12, 27), dt.date(2027, 1, 4)),
        [(utc(2026, 12, 27), utc(2026, 12, 28)), (utc(2026, 12, 28), utc(2027, 1, 4))],
        id="iso-weeks-2026-sunday-start-then-w53-monday",
    ),
    pytest.param(
        spec("day", dt.date(2024, 3, 30), dt.date(2024, 4, 1), timezone="Europe/Berlin"),
        [
            (utc(2024, 3, 29, 23), utc(2024, 3, 30, 23)),
            (utc(2024, 3, 30, 23), utc(2024, 3, 31, 22)),  # 23 hours
        ],
        id="berlin-day-spring-forward-is-23h",
    ),
    pytest.param(
        spec("day", dt.date(2024, 10, 27), dt.date(2024, 10, 29), timezone="Europe/Berlin"),
        [
            (utc(2024, 10, 26, 22), utc(2024, 10, 27, 23)),  # 25 hours
            (utc(2024, 10, 27, 23), utc(2024, 10, 28, 23)),
        ],
        id="berlin-day-fall-back-is-25h",
    ),
    pytest.param(
        spec("hour", dt.datetime(2024, 3, 10, 0), dt.datetime(2024, 3, 10, 5), timezone="America/New_York"),
        [
            (utc(2024, 3, 10, 5), utc(2024, 3, 10, 6)),
            (utc(2024, 3, 10, 6), utc(2024, 3, 10, 7)),  # 01:00 EST .. 03:00 EDT is one real hour
            (utc(2024, 3, 10, 7), utc(2024, 3, 10, 8)),
            (utc(2024, 3, 10, 8), utc(2024, 3, 10, 9)),
        ],
        id="new-york-hours-spring-forward-no-empty-window",
    ),
    pytest.param(
        spec("hour", dt.datetime(2024, 11, 3, 0), dt.datetime(2024, 11, 3, 4), timezone="America/New_York"),
        [
            (utc(2024, 11, 3, 4), utc(2024, 11, 3, 5)),
            (utc(2024, 11, 3, 5), utc(2024, 11, 3, 6)),  # 01:00 EDT
            (utc(2024, 11, 3, 6), utc(2024, 11, 3, 7)),  # 01:00 EST, the repeated hour
            (utc(2024, 11, 3, 7), utc(2024, 11, 3, 8)),
            (utc(2024, 11, 3, 8), utc(2024, 11, 3, 9)),
        ],
        id="new-york-hours-fall-back-repeated-hour-is-two-windows",
    ),
    pytest.param(
        spec(
            "hour",
            dt.datetime(2024, 11, 2, 18),
            dt.datetime(2024, 11, 3, 12),
            step=6,
            timezone="America/New_York",
        ),
        [
            (utc(2024, 11, 2, 22), utc(2024, 11, 3, 4)),
            (utc(2024, 11, 3, 4), utc(2024, 11, 3, 11)),  # 00:00 .. 06:00 local is 7 real hours
            (utc(2024, 11, 3, 11), utc(2024, 11, 3, 17)),
        ],
        id="six-hour-steps-align-to-local-midnight",
    ),
    pytest.param(
        spec("minute", dt.datetime(2024, 1, 1, 0, 7), dt.datetime(2024, 1, 1, 1, 0), step=15),
        [
            (utc(2024, 1, 1, 0, 7), utc(2024, 1, 1, 0, 15)),
            (utc(2024, 1, 1, 0, 15), utc(2024, 1, 1, 0, 30)),
            (utc(2024, 1, 1, 0, 30), utc(2024, 1, 1, 0, 45)),
            (utc(2024, 1, 1, 0, 45), utc(2024, 1, 1, 1, 0)),
        ],
        id="fifteen-minute-steps-partial-first",
    ),
    pytest.param(
        spec(
            "hour", dt.datetime(2024, 1, 1, 0, 30), dt.datetime(2024, 1, 1, 2, 0), timezone="Asia/Kathmandu"
        ),
        [
            (utc(2023, 12, 31, 18, 45), utc(2023, 12, 31, 19, 15)),
            (utc(2023, 12, 31, 19, 15), utc(2023, 12, 31, 20, 15)),
        ],
        id="hours-align-to-local-wall-time-in-a-plus-0545-zone",
    ),
    pytest.param(
        spec("day", dt.date(2024, 1, 2), dt.date(2024, 1, 8), step=3),
        [
            (utc(2024, 1, 2), utc(2024, 1, 3)),  # 2024-01-03 is day 19,725 = 3 * 6,575
            (utc(2024, 1, 3), utc(2024, 1, 6)),
            (utc(2024, 1, 6), utc(2024, 1, 8)),
        ],
        id="multi-day-steps-count-from-1970-01-01",
    ),
    pytest.param(
        spec("integer", 250, 3100, step=1000),
        [(250, 1000), (1000, 2000), (2000, 3000), (3000, 3100)],
        id="integer-steps-partial-first-and-last",
    ),
    pytest.param(
        spec("integer", -1500, 0, step=1000),
        [(-1500, -1000), (-1000, 0)],
        id="integer-steps-negative-floor-division",
    ),
    pytest.param(
        spec("day", dt.datetime(2024, 5, 1), dt.datetime(2024, 5, 2, 13, 30)),
        [(utc(2024, 5, 1), utc(2024, 5, 2)), (utc(2024, 5, 2), utc(2024, 5, 2, 13, 30))],
        id="end-off-a-boundary-is-a-partial-last-chunk",
    ),
    pytest.param(  # PLANS[17]
        spec(
            "minute",
            dt.datetime(2024, 11, 3, 0, 45),
            dt.datetime(2024, 11, 3, 2, 15),
            step=15,
            timezone="America/New_York",
        ),
        [
            (utc(2024, 11, 3, 4, 45), utc(2024, 11, 3, 5, 0)),
            (utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 5, 15)),  # 01:00 EDT
            (utc(2024, 11, 3, 5, 15), utc(2024, 11, 3, 5, 30)),
            (utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 5, 45)),
            (utc(2024, 11, 3, 5, 45), utc(2024, 11, 3, 6, 0)),  # 01:45 EDT
            (utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 6, 15)),  # 01:00 EST, the repeat starts
            (utc(2024, 11, 3, 6, 15), utc(2024, 11, 3, 6, 30)),
            (utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 6, 45)),
            (utc(2024, 11, 3, 6, 45), utc(2024, 11, 3, 7, 0)),
            (utc(2024, 11, 3, 7, 0), utc(2024, 11, 3, 7, 15)),  # 02:00 EST
        ],
        id="new-york-quarter-hours-fall-back-both-occurrences",
    ),
    pytest.param(  # PLANS[18]
        spec(
            "minute",
            dt.datetime(2024, 3, 10, 1, 45),
            dt.datetime(2024, 3, 10, 3, 20),
            step=7,
            timezone="America/New_York",
        ),
        [
            (utc(2024, 3, 10, 6, 45), utc(2024, 3, 10, 6, 52)),
            (utc(2024, 3, 10, 6, 52), utc(2024, 3, 10, 6, 59)),  # 01:52 .. 01:59 EST
            (utc(2024, 3, 10, 6, 59), utc(2024, 3, 10, 7, 0)),  # 02:06 .. 02:55 collapse on the jump
            (utc(2024, 3, 10, 7, 0), utc(2024, 3, 10, 7, 2)),  # 03:00 .. 03:02 EDT
            (utc(2024, 3, 10, 7, 2), utc(2024, 3, 10, 7, 9)),
            (utc(2024, 3, 10, 7, 9), utc(2024, 3, 10, 7, 16)),
            (utc(2024, 3, 10, 7, 16), utc(2024, 3, 10, 7, 20)),
        ],
        id="new-york-seven-minutes-spring-forward-jump-is-one-exact-boundary",
    ),
    pytest.param(  # PLANS[19]
        spec(
            "minute",
            dt.datetime(2024, 11, 3, 0, 0),
            dt.datetime(2024, 11, 3, 4, 30),
            step=90,
            timezone="America/New_York",
        ),
        [
            (utc(2024, 11, 3, 4, 0), utc(2024, 11, 3, 5, 30)),
            (utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30)),  # 01:30 EDT
            (utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 8, 0)),  # 01:30 EST
            (utc(2024, 11, 3, 8, 0), utc(2024, 11, 3, 9, 30)),
        ],
        id="new-york-ninety-minutes-fall-back",
    ),
    pytest.param(  # PLANS[20]
        spec(
            "minute",
            dt.datetime(2024, 4, 7, 1, 15),
            dt.datetime(2024, 4, 7, 2, 15),
            step=15,
            timezone="Australia/Lord_Howe",
        ),
        [
            (utc(2024, 4, 6, 14, 15), utc(2024, 4, 6, 14, 30)),
            (utc(2024, 4, 6, 14, 30), utc(2024, 4, 6, 14, 45)),  # 01:30 +11
            (utc(2024, 4, 6, 14, 45), utc(2024, 4, 6, 15, 0)),
            (utc(2024, 4, 6, 15, 0), utc(2024, 4, 6, 15, 15)),  # 01:30 +1030, the half-hour repeat
            (utc(2024, 4, 6, 15, 15), utc(2024, 4, 6, 15, 30)),
            (utc(2024, 4, 6, 15, 30), utc(2024, 4, 6, 15, 45)),  # 02:00 +1030
        ],
        id="lord-howe-quarter-hours-half-hour-fall-back",
    ),
    pytest.param(  # PLANS[21]
        spec(
            "hour",
            dt.datetime(2024, 4, 7, 0, 0),
            dt.datetime(2024, 4, 7, 3, 0),
            timezone="Australia/Lord_Howe",
        ),
        [
            (utc(2024, 4, 6, 13), utc(2024, 4, 6, 14)),
            (utc(2024, 4, 6, 14), utc(2024, 4, 6, 15, 30)),  # 01:00 .. 02:00 is 90 real minutes
            (utc(2024, 4, 6, 15, 30), utc(2024, 4, 6, 16, 30)),
        ],
        id="lord-howe-hours-half-hour-fall-back",
    ),
    pytest.param(  # PLANS[22]
        spec(
            "minute",
            dt.datetime(2024, 3, 31, 0, 45),
            dt.datetime(2024, 3, 31, 4, 30),
            step=45,
            timezone="Europe/Berlin",
        ),
        [
            (utc(2024, 3, 30, 23, 45), utc(2024, 3, 31, 0, 30)),
            (utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 0)),  # 02:15 skipped, 03:00 CEST: one cut
            (utc(2024, 3, 31, 1, 0), utc(2024, 3, 31, 1, 45)),
            (utc(2024, 3, 31, 1, 45), utc(2024, 3, 31, 2, 30)),
        ],
        id="berlin-45-minutes-skipped-and-next-wall-time-share-the-jump",
    ),
]


@pytest.mark.parametrize(("partitions", "expected"), PLANS)
def test_plan_has_exact_calendar_boundaries(
    partitions: PartitionSpec, expected: list[tuple[Any, Any]]
) -> None:
    """Each plan cuts exactly at the local calendar boundaries, partial at either end."""
    assert bounds(plan_windows(partitions)) == expected


KEYS = [
    pytest.param(PLANS[0], ["2024-01-15", "2024-02-01", "2024-03-01"], id="month"),
    pytest.param(PLANS[6], ["2024-03-30", "2024-03-31"], id="berlin-days"),
    pytest.param(
        PLANS[9],
        [
            "2024-11-03-00:00",
            "2024-11-03-01:00",
            "2024-11-03-01:00-0500",
            "2024-11-03-02:00",
            "2024-11-03-03:00",
        ],
        id="fall-back-second-occurrence-carries-offset",
    ),
    pytest.param(
        PLANS[8],
        ["2024-03-10-00:00", "2024-03-10-01:00", "2024-03-10-03:00", "2024-03-10-04:00"],
        id="spring",
    ),
    pytest.param(PLANS[14], ["250-1000", "1000-2000", "2000-3000", "3000-3100"], id="integer"),
    pytest.param(
        PLANS[17],
        [
            "2024-11-03-00:45",
            "2024-11-03-01:00",
            "2024-11-03-01:15",
            "2024-11-03-01:30",
            "2024-11-03-01:45",
            "2024-11-03-01:00-0500",
            "2024-11-03-01:15-0500",
            "2024-11-03-01:30-0500",
            "2024-11-03-01:45-0500",
            "2024-11-03-02:00",
        ],
        id="fall-back-quarter-hours-second-occurrences-carry-offset",
    ),
    pytest.param(
        PLANS[18],
        [
            "2024-03-10-01:45",
            "2024-03-10-01:52",
            "2024-03-10-01:59",
            "2024-03-10-03:00",
            "2024-03-10-03:02",
            "2024-03-10-03:09",
            "2024-03-10-03:16",
        ],
        id="spring-seven-minutes-jump-key-once",
    ),
    pytest.param(
        PLANS[20],
        [
            "2024-04-07-01:15",
            "2024-04-07-01:30",
            "2024-04-07-01:45",
            "2024-04-07-01:30+1030",
            "2024-04-07-01:45+1030",
            "2024-04-07-02:00",
        ],
        id="lord-howe-half-hour-repeat-carries-offset",
    ),
]


@pytest.mark.parametrize(("plan", "expected"), KEYS)
def test_keys_render_lo_in_the_partition_timezone(plan: Any, expected: list[str]) -> None:
    """Keys are ``lo`` as a local date (or date-hour-minute), unique, in plan order."""
    windows = plan_windows(plan.values[0])
    assert [w.key for w in windows] == expected
    assert len(set(expected)) == len(expected)
    assert [w.lo for w in windows] == sorted(w.lo for w in windows)


@pytest.mark.parametrize("every", ["year", "quarter", "month", "week", "day", "hour", "minute"])
def test_calendar_keys_sort_like_the_plan(every: str) -> None:
    """Outside fall-back hours, sorting the keys as strings gives plan order."""
    windows = plan_windows(spec(every, dt.datetime(2023, 12, 30, 22, 50), dt.datetime(2024, 1, 2, 3, 10)))
    keys = [w.key for w in windows]
    assert keys == sorted(set(keys))


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(dt.date(2024, 3, 1), dt.date(2024, 3, 3), id="dates"),
        pytest.param(dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 3), id="naive-wall-times"),
        pytest.param(
            dt.datetime(2024, 3, 1, tzinfo=BERLIN),
            dt.datetime(2024, 3, 2, 23, tzinfo=UTC),
            id="aware-mixed-zones",
        ),
        pytest.param("2024-03-01", "2024-03-03T00:00:00", id="iso-date-and-naive-iso"),
        pytest.param("2024-03-01T00:00:00+01:00", "2024-03-02T23:00:00Z", id="iso-with-offsets"),
        pytest.param(dt.date(2024, 3, 1), "2024-03-03", id="date-and-string-mixed"),
    ],
)
def test_every_bound_form_gives_the_same_plan(start: Any, end: Any) -> None:
    """Dates, naive and aware datetimes and ISO strings normalise to the same instants."""
    partitions = spec("day", dt.date(2024, 1, 1), timezone="Europe/Berlin")
    assert bounds(plan_windows(partitions, start=start, end=end)) == [
        (utc(2024, 2, 29, 23), utc(2024, 3, 1, 23)),
        (utc(2024, 3, 1, 23), utc(2024, 3, 2, 23)),
    ]


@pytest.mark.parametrize(
    ("value", "timezone", "expected"),
    [
        pytest.param(dt.date(2024, 7, 1), "Europe/Berlin", utc(2024, 6, 30, 22), id="date-is-local-midnight"),
        pytest.param(
            dt.datetime(2024, 7, 1, 12), "Europe/Berlin", utc(2024, 7, 1, 10), id="naive-is-wall-time"
        ),
        pytest.param(
            dt.datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("Asia/Tokyo")),
            "Europe/Berlin",
            utc(2024, 7, 1, 3),
            id="aware",
        ),
        pytest.param(" 2024-07-01T12:00Z ", "UTC", utc(2024, 7, 1, 12), id="iso-z-with-spaces"),
        pytest.param(
            dt.datetime(2024, 11, 3, 1, 30), "America/New_York", utc(2024, 11, 3, 5, 30), id="ambiguous"
        ),
        pytest.param(dt.datetime(2024, 3, 10, 2, 30), "America/New_York", utc(2024, 3, 10, 7), id="skipped"),
        pytest.param(dt.date(2024, 9, 8), "America/Santiago", utc(2024, 9, 8, 4), id="skipped-midnight"),
        pytest.param(
            dt.datetime(2024, 3, 10, 2, 6), "America/New_York", utc(2024, 3, 10, 7), id="skipped-off-the-half"
        ),
        pytest.param(
            dt.datetime(2024, 3, 10, 2, 59, 59, 999_999),
            "America/New_York",
            utc(2024, 3, 10, 7),
            id="skipped-last-microsecond",
        ),
        pytest.param(
            dt.datetime(2024, 10, 6, 2, 10, 30, 5),
            "Australia/Lord_Howe",
            utc(2024, 10, 5, 15, 30),
            id="skipped-30m",
        ),
    ],
)
def test_normalize_bound(value: Any, timezone: str, expected: dt.datetime) -> None:
    """Ambiguous wall times mean the first occurrence, skipped ones the instant of the jump."""
    result = normalize_bound(value, timezone=timezone)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "every", "step", "timezone", "floor", "nxt"),
    [
        pytest.param(
            utc(2024, 5, 15, 12), "quarter", 1, "UTC", utc(2024, 4, 1), utc(2024, 7, 1), id="quarter"
        ),
        pytest.param(
            utc(2024, 4, 1), "month", 1, "UTC", utc(2024, 4, 1), utc(2024, 5, 1), id="on-a-boundary"
        ),
        pytest.param(utc(2021, 1, 3), "week", 1, "UTC", utc(2020, 12, 28), utc(2021, 1, 4), id="week-w53"),
        pytest.param(
            utc(2024, 11, 3, 6, 30),
            "hour",
            1,
            "America/New_York",
            utc(2024, 11, 3, 6),
            utc(2024, 11, 3, 7),
            id="inside-repeated-hour",
        ),
        pytest.param(
            utc(2024, 3, 31, 1, 30),
            "day",
            1,
            "Europe/Berlin",
            utc(2024, 3, 30, 23),
            utc(2024, 3, 31, 22),
            id="berlin-day",
        ),
        pytest.param(
            utc(2024, 1, 1, 23, 59), "hour", 7, "UTC", utc(2024, 1, 1, 21), utc(2024, 1, 2), id="7h-resets"
        ),
        pytest.param(
            utc(2024, 11, 3, 5, 45),
            "minute",
            15,
            "America/New_York",
            utc(2024, 11, 3, 5, 45),
            utc(2024, 11, 3, 6),
            id="last-quarter-of-first-occurrence-ends-at-the-repeat",
        ),
        pytest.param(
            utc(2024, 11, 3, 6, 5),
            "minute",
            15,
            "America/New_York",
            utc(2024, 11, 3, 6),
            utc(2024, 11, 3, 6, 15),
            id="inside-repeated-quarter-hour",
        ),
        pytest.param(
            utc(2024, 11, 3, 6, 5),
            "minute",
            90,
            "America/New_York",
            utc(2024, 11, 3, 5, 30),
            utc(2024, 11, 3, 6, 30),
            id="ninety-minutes-floor-before-the-fall-back",
        ),
        pytest.param(
            utc(2024, 4, 6, 15, 10),
            "hour",
            1,
            "Australia/Lord_Howe",
            utc(2024, 4, 6, 14),
            utc(2024, 4, 6, 15, 30),
            id="lord-howe-ninety-minute-hour",
        ),
        pytest.param(
            dt.datetime(2024, 3, 10, 6, 59, 30, tzinfo=UTC),
            "minute",
            7,
            "America/New_York",
            utc(2024, 3, 10, 6, 59),
            utc(2024, 3, 10, 7),
            id="next-is-the-exact-jump",
        ),
        pytest.param(
            utc(2024, 3, 10, 7, 1),
            "minute",
            7,
            "America/New_York",
            utc(2024, 3, 10, 7),
            utc(2024, 3, 10, 7, 2),
            id="floor-is-the-exact-jump",
        ),
        pytest.param(-1, "integer", 1000, "UTC", -1000, 0, id="integer-negative"),
        pytest.param(2000, "integer", 1000, "UTC", 2000, 3000, id="integer-on-boundary"),
    ],
)
def test_floor_and_next_boundary(
    value: Any, every: Any, step: int, timezone: str, floor: Any, nxt: Any
) -> None:
    """``floor <= value < next`` with both on the aligned grid."""
    assert floor_boundary(value, every=every, step=step, timezone=timezone) == floor
    assert next_boundary(value, every=every, step=step, timezone=timezone) == nxt


# --------------------------------------------------------------------------- range handling


@pytest.mark.parametrize(
    ("partitions", "kwargs"),
    [
        pytest.param(
            spec("day", dt.date(2024, 1, 1)), {"start": "2024-02-01", "end": "2024-02-01"}, id="start-eq-end"
        ),
        pytest.param(
            spec("day", dt.date(2024, 1, 1)), {"start": "2024-02-02", "end": "2024-02-01"}, id="inverted"
        ),
        pytest.param(
            spec("day", dt.date(2024, 1, 1)), {"now": utc(2024, 1, 1, 23)}, id="first-day-not-complete"
        ),
        pytest.param(spec("day", dt.date(2024, 1, 1)), {"now": utc(2023, 6, 1)}, id="now-before-start"),
        pytest.param(spec("integer", 0, 10), {"start": 10}, id="integer-start-at-end"),
    ],
)
def test_empty_plan(partitions: PartitionSpec, kwargs: dict[str, Any]) -> None:
    """A range with nothing in it plans no windows rather than failing."""
    assert plan_windows(partitions, **kwargs) == []


def test_open_ended_plan_stops_at_the_last_completed_window() -> None:
    """Without an end, the plan covers only windows that ended at or before ``now``."""
    partitions = spec("day", dt.date(2024, 1, 1), timezone="Europe/Berlin")
    windows = plan_windows(partitions, now=utc(2024, 1, 3, 22, 59))
    assert [w.key for w in windows] == ["2024-01-01", "2024-01-02"]
    assert windows[-1].hi == utc(2024, 1, 2, 23)
    assert len(plan_windows(partitions, now=utc(2024, 1, 3, 23))) == 3


def test_explicit_range_is_clipped_to_the_declared_partitions() -> None:
    """Overrides outside ``spec.start`` / ``spec.end`` never produce windows outside them."""
    partitions = spec("month", dt.date(2024, 1, 15), dt.date(2024, 3, 10))
    windows = plan_windows(partitions, start="2023-06-01", end="2025-01-01")
    assert bounds(windows) == bounds(plan_windows(partitions))


@pytest.mark.parametrize(
    ("lo", "hi_inclusive", "expected"),
    [
        pytest.param(
            "2024-03-05T10:00",
            "2024-03-05T11:00",
            [(utc(2024, 3, 5), utc(2024, 3, 6))],
            id="inside-one-window",
        ),
        pytest.param(
            "2024-03-05T10:00",
            "2024-03-06T00:00",
            [(utc(2024, 3, 5), utc(2024, 3, 6)), (utc(2024, 3, 6), utc(2024, 3, 7))],
            id="hi-on-a-boundary-includes-that-window",
        ),
        pytest.param(
            "2024-02-27", "2024-03-01T12:00", [(utc(2024, 3, 1), utc(2024, 3, 2))], id="clipped-to-spec-start"
        ),
        pytest.param(
            "2024-03-09T01:00",
            "2024-03-30",
            [(utc(2024, 3, 9), utc(2024, 3, 10)), (utc(2024, 3, 10), utc(2024, 3, 10, 12))],
            id="clipped-to-spec-end",
        ),
        pytest.param("2024-01-01", "2024-01-02", [], id="entirely-before-the-partitions"),
    ],
)
def test_windows_covering(lo: str, hi_inclusive: str, expected: list[tuple[Any, Any]]) -> None:
    """The windows a load replaces are the aligned ones its closed data range touches."""
    partitions = spec("day", dt.date(2024, 3, 1), dt.datetime(2024, 3, 10, 12))
    assert bounds(windows_covering(partitions, lo=lo, hi_inclusive=hi_inclusive)) == expected


def test_windows_covering_integer_partitions() -> None:
    """Integer data ranges map to the step-aligned windows, inclusive of ``hi``."""
    partitions = spec("integer", 0, 10_000, step=1000)
    assert bounds(windows_covering(partitions, lo=1500, hi_inclusive=3000)) == [
        (1000, 2000),
        (2000, 3000),
        (3000, 4000),
    ]


# --------------------------------------------------------------------------- Window


@pytest.mark.parametrize(
    ("window", "value", "inside"),
    [
        pytest.param(
            Window(utc(2024, 1, 1), utc(2024, 2, 1), every="month"), utc(2024, 1, 1), True, id="lo-in"
        ),
        pytest.param(
            Window(utc(2024, 1, 1), utc(2024, 2, 1), every="month"), utc(2024, 2, 1), False, id="hi-out"
        ),
        pytest.param(
            Window(utc(2024, 1, 1), utc(2024, 2, 1), every="month"),
            dt.datetime(2024, 1, 31, 23, 59, 59, 999999),
            True,
            id="last-microsecond",
        ),
        pytest.param(
            Window(utc(2024, 1, 1), utc(2024, 2, 1), every="month"), dt.date(2024, 2, 1), False, id="date"
        ),
        pytest.param(
            Window(utc(2024, 1, 1), utc(2024, 2, 1), every="month"), "2024-01-01", True, id="iso-string"
        ),
        pytest.param(
            Window(utc(2024, 3, 30, 23), utc(2024, 3, 31, 22), every="day", timezone="Europe/Berlin"),
            dt.datetime(2024, 3, 31),
            True,
            id="naive-is-local-wall-time",
        ),
        pytest.param(
            Window(utc(2024, 3, 30, 23), utc(2024, 3, 31, 22), every="day", timezone="Europe/Berlin"),
            dt.datetime(2024, 3, 31, 23, 59, tzinfo=UTC),
            False,
            id="aware-after-local-midnight",
        ),
        pytest.param(Window(0, 1000, every="integer"), 0, True, id="int-lo-in"),
        pytest.param(Window(0, 1000, every="integer"), 999, True, id="int-last"),
        pytest.param(Window(0, 1000, every="integer"), 1000, False, id="int-hi-out"),
    ],
)
def test_window_contains_is_left_closed_right_open(window: Window, value: Any, inside: bool) -> None:
    """``lo`` belongs to the window, ``hi`` to the next one."""
    assert window.contains(value) is inside


def test_window_stores_utc() -> None:
    """Aware bounds in any zone are kept as UTC instants."""
    window = Window(
        dt.datetime(2024, 1, 1, tzinfo=BERLIN), dt.datetime(2024, 1, 2, tzinfo=BERLIN), every="day"
    )
    assert window.lo == utc(2023, 12, 31, 23)
    assert window.lo.tzinfo is UTC  # type: ignore[union-attr]


# --------------------------------------------------------------------------- cron


@pytest.mark.parametrize(
    ("every", "step", "cron"),
    [
        ("year", 1, "0 0 1 1 *"),
        ("quarter", 1, "0 0 1 */3 *"),
        ("month", 1, "0 0 1 * *"),
        ("week", 1, "0 0 * * 1"),
        ("day", 1, "0 0 * * *"),
        ("day", 2, None),
        ("hour", 1, "0 * * * *"),
        ("hour", 6, "0 */6 * * *"),
        ("hour", 24, "0 0 * * *"),
        ("minute", 1, "* * * * *"),
        ("minute", 15, "*/15 * * * *"),
        ("minute", 120, "0 */2 * * *"),
        ("minute", 90, None),
        ("integer", 1000, None),
    ],
)
def test_every_as_cron(every: str, step: int, cron: str | None) -> None:
    """Cadences cron can express map to a cron string ticking at each boundary; others to None."""
    start: Any = 0 if every == "integer" else dt.date(2024, 1, 1)
    assert every_as_cron(spec(every, start, step=step)) == cron


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: plan_windows(spec("day", dt.date(2024, 1, 1)), start=5),
            "integer bound",
            id="int-for-calendar",
        ),
        pytest.param(
            lambda: plan_windows(spec("integer", 0, 10), end=dt.date(2024, 1, 1)),
            "must be an integer",
            id="date-for-integer",
        ),
        pytest.param(
            lambda: plan_windows(spec("integer", 0, 10), start=True),
            "must be an integer",
            id="bool-for-integer",
        ),
        pytest.param(lambda: plan_windows(spec("integer", 0)), "explicit end", id="integer-without-end"),
        pytest.param(lambda: normalize_bound("yesterday"), "not an ISO date", id="bad-iso-string"),
        pytest.param(
            lambda: plan_windows(spec("minute", dt.date(2000, 1, 1), dt.date(2010, 1, 1))),
            "about 5,260,",
            id="absurd-plan-names-the-count",
        ),
        pytest.param(
            lambda: plan_windows(spec("hour", dt.date(2024, 1, 1), dt.date(2024, 1, 5), step=48)),
            "at most 24",
            id="hour-step-over-a-day",
        ),
        pytest.param(
            lambda: floor_boundary(utc(2024, 1, 1), every="month", step=2), "not allowed", id="step-on-month"
        ),
        pytest.param(
            lambda: windows_covering(
                spec("day", dt.date(2024, 1, 1)), lo="2024-02-02", hi_inclusive="2024-02-01"
            ),
            "inverted",
            id="covering-inverted",
        ),
        pytest.param(
            lambda: Window(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2), every="day"),
            "timezone-aware",
            id="naive",
        ),
        pytest.param(
            lambda: Window(utc(2024, 1, 2), utc(2024, 1, 1), every="day"), "empty window", id="inverted"
        ),
        pytest.param(lambda: Window(utc(2024, 1, 1), 5, every="day"), "Window.hi must be", id="mixed-kinds"),
        pytest.param(lambda: Window(0, 5, every="fortnight"), "unknown every", id="unknown-every"),  # type: ignore[arg-type]
        pytest.param(
            lambda: Window(0, 5, every="integer").contains("2024-01-01"),
            "must be an integer",
            id="contains-kind",
        ),
    ],
)
def test_bad_input_raises_value_error(call: Any, message: str) -> None:
    """Wrong kinds, unparsable bounds and absurd plans fail with a message saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        call()


def test_public_surface() -> None:
    """The module exports exactly its documented API."""
    assert sorted(windows_module.__all__) == [
        "Bound",
        "Every",
        "MAX_WINDOWS",
        "Window",
        "every_as_cron",
        "floor_boundary",
        "irregular_windows",
        "next_boundary",
        "normalize_bound",
        "plan_partitions",
        "plan_windows",
        "windows_covering",
    ]
    assert MAX_WINDOWS == 1_000_000


# --------------------------------------------------------------------------- DST nights, brute force

MINUTE = dt.timedelta(minutes=1)


def scanned_boundaries(
    every: str, step: int, timezone: str, lo: dt.datetime, hi: dt.datetime
) -> list[dt.datetime]:
    """The module docstring's rule, checked minute by minute in UTC: an instant is a boundary when
    its wall time is a multiple of the step after local midnight, or when the clocks jumped
    forward onto it over such a wall time."""
    tz, unit = ZoneInfo(timezone), step * _UNIT[every]

    def wall(instant: dt.datetime) -> dt.datetime:
        return instant.astimezone(tz).replace(tzinfo=None)

    def aligned(local: dt.datetime) -> bool:
        return (local.hour * 60 + local.minute) % unit == 0

    found, instant = [], lo
    while instant < hi:
        shown, expected = wall(instant), wall(instant - MINUTE) + MINUTE
        skipped = (expected + k * MINUTE for k in range((shown - expected) // MINUTE))  # empty unless a jump
        if aligned(shown) or any(aligned(local) for local in skipped):
            found.append(instant)
        instant += MINUTE
    return found


_UNIT = {"hour": 60, "minute": 1}
DST_NIGHTS = [
    ("America/New_York", dt.date(2024, 3, 10)),
    ("America/New_York", dt.date(2024, 11, 3)),
    ("Europe/Berlin", dt.date(2024, 3, 31)),
    ("Europe/Berlin", dt.date(2024, 10, 27)),
    ("Australia/Lord_Howe", dt.date(2024, 4, 7)),  # back 30 minutes, 02:00 -> 01:30
    ("Australia/Lord_Howe", dt.date(2024, 10, 6)),  # forward 30 minutes, 02:00 -> 02:30
    ("America/Santiago", dt.date(2024, 4, 7)),  # back at midnight, 24:00 -> 23:00
    ("America/Santiago", dt.date(2024, 9, 8)),  # forward at midnight, 00:00 -> 01:00
]
SUB_DAY = [
    ("minute", 1),
    ("minute", 7),
    ("minute", 15),
    ("minute", 45),
    ("minute", 90),
    ("hour", 1),
    ("hour", 7),
]


@pytest.mark.parametrize(
    ("timezone", "night", "every", "step"),
    [
        pytest.param(tz, night, every, step, id=f"{tz}-{night}-{every}-{step}")
        for (tz, night), (every, step) in itertools.product(DST_NIGHTS, SUB_DAY)
    ],
)
def test_sub_day_windows_across_dst_match_a_minute_scan(
    timezone: str, night: dt.date, every: str, step: int
) -> None:
    """Around each DST night every boundary of the rule is a cut, at the exact second (none
    missed, none invented, no sub-second edges), and the keys stay unique."""
    start, end = night - dt.timedelta(days=1), night + dt.timedelta(days=2)
    windows = plan_windows(spec(every, start, end, step=step, timezone=timezone))
    lo, hi = normalize_bound(start, timezone=timezone), normalize_bound(end, timezone=timezone)
    assert [w.lo for w in windows] == scanned_boundaries(every, step, timezone, lo, hi)
    assert windows[-1].hi == hi
    assert len({w.key for w in windows}) == len(windows)


# --------------------------------------------------------------------------- properties

CADENCES = [
    ("year", 1, 525_960),
    ("quarter", 1, 131_490),
    ("month", 1, 43_830),
    ("week", 1, 10_080),
    ("day", 1, 1440),
    ("day", 3, 4320),
    ("hour", 1, 60),
    ("hour", 7, 420),
    ("minute", 7, 7),
    ("minute", 15, 15),
    ("minute", 45, 45),
    ("minute", 90, 90),
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
]


@settings(max_examples=300, deadline=None)
@given(
    cadence=st.sampled_from(CADENCES),
    timezone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2030, 12, 31)),
    periods=st.floats(min_value=0, max_value=30),
)
def test_windows_tile_the_range(
    cadence: tuple[str, int, int], timezone: str, start: dt.datetime, periods: float
) -> None:
    """Windows cover ``[start, end)`` exactly: no gap, no overlap, each cut on the aligned grid."""
    every, step, minutes = cadence
    lo = normalize_bound(start, timezone=timezone)
    hi = lo + dt.timedelta(minutes=minutes * periods)
    partitions = spec(every, dt.date(2000, 1, 1), step=step, timezone=timezone)
    windows = plan_windows(partitions, start=lo, end=hi)
    if lo >= hi:
        assert windows == []
        return
    assert windows[0].lo == lo
    assert windows[-1].hi == hi
    assert all(a.hi == b.lo for a, b in itertools.pairwise(windows))
    assert all(w.lo.microsecond == 0 for w in windows[1:])  # type: ignore[union-attr]
    assert len({w.key for w in windows}) == len(windows)
    grid = {"every": every, "step": step, "timezone": timezone}
    for w in windows[1:]:
        assert floor_boundary(w.lo, **grid) == w.lo  # type: ignore[call-overload]
    for w in windows[:-1]:
        assert next_boundary(w.lo, **grid) == w.hi  # type: ignore[call-overload]
    middle = lo + (hi - lo) / 2
    assert sum(w.contains(middle) for w in windows) == 1
    floor = floor_boundary(middle, **grid)  # type: ignore[call-overload]
    assert floor <= middle < next_boundary(middle, **grid)  # type: ignore[call-overload]
    assert next_boundary(floor, **grid) == next_boundary(middle, **grid)  # type: ignore[call-overload]


@settings(max_examples=200, deadline=None)
@given(
    step=st.integers(min_value=1, max_value=500),
    lo=st.integers(min_value=-10_000, max_value=10_000),
    length=st.integers(min_value=0, max_value=5000),
)
def test_integer_windows_tile_the_range(step: int, lo: int, length: int) -> None:
    """Integer windows cut at multiples of ``step`` and cover ``[lo, hi)`` exactly."""
    windows = plan_windows(spec("integer", lo, lo + length + 1, step=step), end=lo + length)
    if length == 0:
        assert windows == []
        return
    assert windows[0].lo == lo
    assert windows[-1].hi == lo + length
    assert all(a.hi == b.lo for a, b in itertools.pairwise(windows))
    assert all(w.hi % step == 0 for w in windows[:-1])  # type: ignore[operator]
    assert all(w.lo % step == 0 for w in windows[1:])  # type: ignore[operator]
