"""Partition windows: the ``[lo, hi)`` chunks that replay, backfill and Dagster partitions share.

Calendar boundaries are computed in the local wall time of the partition timezone and stored as
UTC instants. The rule, for every cadence:

* year / quarter / month / week / day: a boundary is the *first instant* of a local date that
  starts a period (Jan 1; Jan/Apr/Jul/Oct 1; the 1st; ISO Monday; every ``step``-th day counted
  from 1970-01-01). Across DST a day is 23h or 25h long but always starts at local midnight.
* hour / minute: a boundary is *every instant* whose local wall time is a multiple of ``step``
  hours/minutes after local midnight (the count restarts each midnight). A wall time that occurs
  twice (fall-back) is a boundary both times, so the repeated hour is two real one-hour windows; a
  wall time skipped by spring-forward collapses onto the jump, so no window is empty.

Integer partitions cut at multiples of ``step`` counted from 0. A bound that is not on a
boundary gives a partial first (or last) window, never a shifted one.
"""

import datetime as dt
from bisect import bisect_left
from dataclasses import KW_ONLY, dataclass
from typing import Literal, TypeVar, get_args, overload
from zoneinfo import ZoneInfo

from dateutil.relativedelta import MO, relativedelta

from coolie_core.models import PartitionSpec

__all__ = [
    "MAX_WINDOWS",
    "Bound",
    "Every",
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

Every = Literal["year", "quarter", "month", "week", "day", "hour", "minute", "integer"]
Bound = dt.datetime | dt.date | int | str
"""A bound as users write it: a date, a naive or aware datetime, an ISO string, or an int."""

MAX_WINDOWS = 1_000_000
"""Plans larger than this are refused: almost always a wrong ``every``/``step`` or bound."""

_UTC = dt.UTC
_T = TypeVar("_T", dt.datetime, int)
_SUB_DAY = ("hour", "minute")
_UNIT_MINUTES = {"hour": 60, "minute": 1}
_NOMINAL_DAYS = {"year": 365.2425, "quarter": 91.31, "month": 30.44, "week": 7.0, "day": 1.0}
_EPOCH = dt.date(1970, 1, 1)
_SECOND = dt.timedelta(seconds=1)
_FIRST_INSTANT = dt.datetime.min.replace(tzinfo=_UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """One left-closed, right-open chunk ``[lo, hi)`` of a partitioned dataflow.

    Attributes:
        lo: first value inside the window (UTC-aware datetime, or int for integer partitions).
        hi: first value after the window (same type as ``lo``).
        every: the partition cadence; with ``timezone`` it decides how ``key`` renders.
        timezone: IANA timezone the calendar is aligned in.
    """

    lo: dt.datetime | int
    hi: dt.datetime | int
    _: KW_ONLY
    every: Every
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.every not in get_args(Every):
            raise ValueError(f"unknown every {self.every!r}; use one of {', '.join(get_args(Every))}")
        integer = self.every == "integer"
        for name in ("lo", "hi"):
            value = getattr(self, name)
            if integer != (isinstance(value, int) and not isinstance(value, bool)):
                kind = "an int" if integer else "a timezone-aware datetime"
                raise ValueError(f"Window.{name} must be {kind} for every={self.every}, got {value!r}")
            if isinstance(value, dt.datetime):
                if value.tzinfo is None:
                    raise ValueError(f"Window.{name} must be timezone-aware, got {value!r}")
                object.__setattr__(self, name, value.astimezone(_UTC))
        if _ordinal(self.lo) >= _ordinal(self.hi):
            raise ValueError(f"empty window: lo {self.lo} is not before hi {self.hi}")

    def contains(self, value: Bound) -> bool:
        """Whether ``lo <= value < hi``; dates, naive datetimes and ISO strings are normalised."""
        if isinstance(self.lo, int):
            point = _ordinal(_as_int(value, "value"))
        else:
            point = _ordinal(normalize_bound(value, timezone=self.timezone))
        return _ordinal(self.lo) <= point < _ordinal(self.hi)

    @property
    def key(self) -> str:
        """The partition key: ``lo`` as local ``YYYY-MM-DD`` (``YYYY-MM-DD-HH:MM`` below a day).

        The second occurrence of a repeated (fall-back) wall time gets its UTC offset appended,
        ``2024-11-03-01:00-0500``, as Dagster does, so keys stay unique.
        """
        if isinstance(self.lo, int):
            return f"{self.lo}-{self.hi}"
        local = self.lo.astimezone(ZoneInfo(self.timezone))
        if self.every not in _SUB_DAY:
            return local.strftime("%Y-%m-%d")
        repeated = local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()
        return local.strftime("%Y-%m-%d-%H:%M%z" if repeated else "%Y-%m-%d-%H:%M")


def normalize_bound(value: Bound, *, timezone: str = "UTC") -> dt.datetime:
    """A calendar bound as a UTC-aware datetime.

    A date means local midnight in ``timezone``, a naive datetime is wall time in ``timezone``,
    an aware datetime is converted; ISO strings are parsed first. A wall time that occurs twice
    means its first occurrence; one skipped by DST means the instant the clocks jump.

    >>> normalize_bound("2024-01-01T05:00:00+02:00")
    datetime.datetime(2024, 1, 1, 3, 0, tzinfo=datetime.timezone.utc)
    >>> normalize_bound(dt.date(2024, 7, 1), timezone="Europe/Berlin")
    datetime.datetime(2024, 6, 30, 22, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO date or datetime: {value!r}") from None
    if isinstance(value, int):  # bool too
        raise ValueError(f"integer bound {value!r} given for calendar partitions; use a date or datetime")
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        return value.astimezone(_UTC)
    return _instants(value, ZoneInfo(timezone))[0]


@overload
def floor_boundary(value: int, *, every: Every, step: int = 1, timezone: str = "UTC") -> int: ...
@overload
def floor_boundary(
    value: dt.datetime | dt.date | str, *, every: Every, step: int = 1, timezone: str = "UTC"
) -> dt.datetime: ...
def floor_boundary(value: Bound, *, every: Every, step: int = 1, timezone: str = "UTC") -> dt.datetime | int:
    """The last boundary at or before ``value`` (UTC datetime, or int for integer partitions)."""
    return _boundary(value, every=every, step=step, timezone=timezone, after=False)


@overload
def next_boundary(value: int, *, every: Every, step: int = 1, timezone: str = "UTC") -> int: ...
@overload
def next_boundary(
    value: dt.datetime | dt.date | str, *, every: Every, step: int = 1, timezone: str = "UTC"
) -> dt.datetime: ...
def next_boundary(value: Bound, *, every: Every, step: int = 1, timezone: str = "UTC") -> dt.datetime | int:
    """The first boundary strictly after ``value`` (UTC datetime, or int for integer partitions)."""
    return _boundary(value, every=every, step=step, timezone=timezone, after=True)


def plan_windows(
    spec: PartitionSpec,
    *,
    start: Bound | None = None,
    end: Bound | None = None,
    now: dt.datetime | None = None,
) -> list[Window]:
    """The windows from ``start`` to ``end`` in calendar order, clipped to the spec's range.

    ``start`` defaults to ``spec.start``, ``end`` to ``spec.end``; with neither end, the plan stops
    at the last boundary at or before ``now`` (default: the current time), so it holds completed
    windows only. A bound off a boundary gives a partial first or last window.

    >>> from coolie_core.models import PartitionSpec
    >>> spec = PartitionSpec(column="ts", every="month", start=dt.date(2024, 1, 15), end=dt.date(2024, 3, 10))
    >>> [w.key for w in plan_windows(spec)]
    ['2024-01-15', '2024-02-01', '2024-03-01']
    >>> plan_windows(spec)[0].hi
    datetime.datetime(2024, 2, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    step = _check_step(spec.every, spec.step)
    if spec.every == "integer":
        if end is None and spec.end is None:
            raise ValueError("integer partitions without an end need an explicit end")
        lo = max(_as_int(b, "start") for b in (start, spec.start) if b is not None)
        hi = min(_as_int(b, "end") for b in (end, spec.end) if b is not None)
        return _plan(spec, lo, hi, estimate=(hi - 1) // step - lo // step + 1)
    tz = spec.timezone
    lo_t = max(normalize_bound(b, timezone=tz) for b in (start, spec.start) if b is not None)
    ends = [normalize_bound(b, timezone=tz) for b in (end, spec.end) if b is not None]
    hi_t = (
        min(ends)
        if ends
        else floor_boundary(now or dt.datetime.now(_UTC), every=spec.every, step=step, timezone=tz)
    )
    minutes = _UNIT_MINUTES.get(spec.every) or 1440 * _NOMINAL_DAYS[spec.every]
    return _plan(spec, lo_t, hi_t, estimate=(hi_t - lo_t).total_seconds() / 60 / minutes / step)


def windows_covering(spec: PartitionSpec, *, lo: Bound, hi_inclusive: Bound) -> list[Window]:
    """The aligned windows that cover the closed data range ``[lo, hi_inclusive]``.

    These are the windows a load replaces when its data spans several; the first and last are
    clipped to the spec's ``start`` / ``end``.

    >>> spec = PartitionSpec(column="ts", every="day", start=dt.date(2024, 1, 1))
    >>> [w.key for w in windows_covering(spec, lo="2024-03-01T10:00", hi_inclusive="2024-03-02T00:00")]
    ['2024-03-01', '2024-03-02']
    """
    if _ordinal(_bound(hi_inclusive, spec)) < _ordinal(_bound(lo, spec)):
        raise ValueError(f"data range is inverted: hi_inclusive {hi_inclusive!r} is before lo {lo!r}")
    every, step, tz = spec.every, spec.step, spec.timezone
    first = _boundary(lo, every=every, step=step, timezone=tz, after=False)
    last = _boundary(hi_inclusive, every=every, step=step, timezone=tz, after=True)
    return plan_windows(spec, start=first, end=last)


def every_as_cron(spec: PartitionSpec) -> str | None:
    """A cron string ticking at every boundary, or None when cron cannot express the cadence.

    None for integer partitions, multi-day steps, and minute steps that neither divide the hour
    nor are whole hours (those need static partitions built from ``plan_windows``).

    >>> every_as_cron(PartitionSpec(column="ts", every="minute", step=15, start=dt.date(2024, 1, 1)))
    '*/15 * * * *'
    """
    every, step = spec.every, _check_step(spec.every, spec.step)
    fixed = {"year": "0 0 1 1 *", "quarter": "0 0 1 */3 *", "month": "0 0 1 * *", "week": "0 0 * * 1"}
    if every in fixed:
        return fixed[every]
    if every == "minute" and step % 60 == 0:
        every, step = "hour", step // 60
    if every == "day" or (every == "hour" and step == 24):
        return "0 0 * * *" if step in (1, 24) else None
    if every == "hour":
        return "0 * * * *" if step == 1 else f"0 */{step} * * *"
    if every == "minute" and 60 % step == 0:
        return "* * * * *" if step == 1 else f"*/{step} * * * *"
    return None


def plan_partitions(spec: PartitionSpec, *, now: dt.datetime | None = None) -> list[Window]:
    """The windows a dataflow's partitions hold at ``now``: what ``coolie plan --windows`` lists
    and the Dagster partition keys are.

    Regular windows (see :func:`irregular_windows`) are listed up to the last one completed by
    ``now`` and never past ``end``: an open or future window is not a partition yet. Irregular
    ones are the fixed list from ``start`` to ``end``.

    >>> spec = PartitionSpec(column="ts", every="month", start=dt.date(2024, 1, 1), end=dt.date(2030, 1, 1))
    >>> [w.key for w in plan_partitions(spec, now=dt.datetime(2024, 3, 10, tzinfo=dt.UTC))]
    ['2024-01-01', '2024-02-01']
    """
    if irregular_windows(spec) is not None:
        return plan_windows(spec)
    step, tz = _check_step(spec.every, spec.step), spec.timezone
    last = floor_boundary(now or dt.datetime.now(_UTC), every=spec.every, step=step, timezone=tz)
    if spec.end is not None:
        last = min(last, normalize_bound(spec.end, timezone=tz))
    return plan_windows(spec, end=last)


def irregular_windows(spec: PartitionSpec) -> str | None:
    """Why the windows of ``spec`` are not one cron cadence from its start, or None when they are.

    Regular windows can be computed from a cron string and the start alone, up to any end or the
    current time (a Dagster time-window partitions definition). Irregular ones (integer
    partitions, steps cron cannot express, a partial first or last window) exist only as the list
    :func:`plan_windows` makes, so they need an ``end`` to be listed ahead of time.

    >>> irregular_windows(PartitionSpec(column="ts", every="month", start=dt.date(2024, 1, 15)))
    'a start off a month boundary (a partial first chunk)'
    >>> irregular_windows(PartitionSpec(column="ts", every="month", start=dt.date(2024, 2, 1))) is None
    True
    """
    if spec.every == "integer":
        return "integer partitions"
    if every_as_cron(spec) is None:
        return f"every: {spec.every} with step {spec.step}"
    for name, bound, part in (("start", spec.start, "first"), ("end", spec.end, "last")):
        if bound is None or isinstance(bound, int):
            continue
        point = normalize_bound(bound, timezone=spec.timezone)
        if floor_boundary(point, every=spec.every, step=spec.step, timezone=spec.timezone) != point:
            return (
                f"a{'n' if name == 'end' else ''} {name} off a {spec.every} boundary (a partial {part} chunk)"
            )
    return None


# --------------------------------------------------------------------------- internals


def _ordinal(value: dt.datetime | int) -> int:
    """A total order over one kind of bound (microseconds since the epoch for datetimes)."""
    if isinstance(value, int):
        return value
    return (value - dt.datetime(1970, 1, 1, tzinfo=_UTC)) // dt.timedelta(microseconds=1)


def _as_int(value: Bound, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer for integer partitions, got {value!r}")
    return value


def _bound(value: Bound, spec: PartitionSpec) -> dt.datetime | int:
    if spec.every == "integer":
        return _as_int(value, "bound")
    return normalize_bound(value, timezone=spec.timezone)


def _check_step(every: Every, step: int) -> int:
    if step < 1 or (step != 1 and every not in ("day", "hour", "minute", "integer")):
        raise ValueError(
            f"step {step} is not allowed with every: {every} (use 1, or day/hour/minute/integer)"
        )
    limit = {"hour": 24, "minute": 1440}.get(every)
    if limit is not None and step > limit:
        raise ValueError(
            f"every: {every} allows a step of at most {limit} (one day); use every: day with a step"
        )
    return step


def _plan(spec: PartitionSpec, lo: _T, hi: _T, *, estimate: float) -> list[Window]:
    if estimate > MAX_WINDOWS:
        raise ValueError(
            f"plan would have about {int(estimate):,} windows (limit {MAX_WINDOWS:,}); "
            "narrow the range or use a coarser 'every'"
        )
    windows: list[Window] = []
    while lo < hi:
        nxt = min(next_boundary(lo, every=spec.every, step=spec.step, timezone=spec.timezone), hi)
        windows.append(Window(lo, nxt, every=spec.every, timezone=spec.timezone))
        lo = nxt
    return windows


def _boundary(value: Bound, *, every: Every, step: int, timezone: str, after: bool) -> dt.datetime | int:
    step = _check_step(every, step)
    if every == "integer":
        return _as_int(value, "value") // step * step + (step if after else 0)
    tz, t = ZoneInfo(timezone), normalize_bound(value, timezone=timezone)
    if every in _SUB_DAY:
        return _sub_day_boundary(t, tz, every, step, after=after)
    wall = _align(_wall(t, tz), every, step)
    while True:
        first = _instants(wall, tz)[0]  # a day starts once, at its first instant
        if (first > t) if after else (first <= t):
            return first
        # Only near DST jumps does the aligned wall time miss; step to the neighbouring one.
        wall = (
            _advance(wall, every, step) if after else _align(wall - dt.timedelta(microseconds=1), every, step)
        )


def _sub_day_boundary(t: dt.datetime, tz: ZoneInfo, every: Every, step: int, *, after: bool) -> dt.datetime:
    """The first boundary after ``t`` (``after``) or the last one at or before it, below a day.

    The answer lies in a short UTC span next to ``t``, too short for two DST changes. Its instants
    show wall times between its ends shifted by the smaller and by the larger UTC offset, so its
    boundaries are among the instants of the aligned wall times in that range: both occurrences of
    a repeated one, the jump for a skipped one. Without a DST change the range holds two or three
    wall times; across fall-back it also reaches back over the repeated ones. Should the span hold
    no boundary (a fall-back window can last a step plus the shift), it grows by a step.
    """
    reach = dt.timedelta(minutes=_UNIT_MINUTES[every] * step)
    # Clamped at the first representable instant: a bound on 0001-01-01 is its own floor.
    lo, hi = (t, t + reach) if after else (max(t, _FIRST_INSTANT + reach) - reach, t)
    while True:
        offsets = [_wall(i, tz) - i.replace(tzinfo=None) for i in (lo, hi)]
        wall = _align(lo.replace(tzinfo=None) + min(offsets), every, step)
        last = hi.replace(tzinfo=None) + max(offsets)
        found: list[dt.datetime] = []
        while wall <= last:
            found += _instants(wall, tz)
            wall = _advance(wall, every, step)
        if after and (above := [i for i in found if i > t]):
            return min(above)
        if not after and (below := [i for i in found if i <= t]):
            return max(below)
        lo, hi = (lo, hi + reach) if after else (lo - reach, hi)


def _wall(instant: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _instants(wall: dt.datetime, tz: ZoneInfo) -> list[dt.datetime]:
    """The UTC instants showing ``wall`` in ``tz``: one, two (fall-back), or the jump (gap)."""
    found = {wall.replace(tzinfo=tz, fold=f).astimezone(_UTC) for f in (0, 1)}
    real = sorted(i for i in found if _wall(i, tz) == wall)
    if real:
        return real
    # Skipped by spring-forward: the jump is the first instant whose wall time is later. Offsets
    # change on whole seconds, so the search runs over whole seconds and finds it exactly.
    start = min(found).replace(microsecond=0)
    seconds = -((start - max(found)) // _SECOND)  # max(found) rounded up, in seconds after start
    jump = bisect_left(range(seconds + 1), True, key=lambda k: _wall(start + k * _SECOND, tz) > wall)
    return [start + jump * _SECOND]


def _align(wall: dt.datetime, every: Every, step: int) -> dt.datetime:
    """The aligned local wall time at or before ``wall`` (both naive)."""
    midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if every in _SUB_DAY:
        unit = dt.timedelta(minutes=_UNIT_MINUTES[every] * step)
        return midnight + (wall - midnight) // unit * unit
    if every == "day":
        return midnight - dt.timedelta(days=(midnight.date() - _EPOCH).days % step)
    month = {"year": 1, "quarter": (wall.month - 1) // 3 * 3 + 1}.get(every, wall.month)
    delta = relativedelta(weekday=MO(-1)) if every == "week" else relativedelta(month=month, day=1)
    aligned: dt.datetime = midnight + delta
    return aligned


def _advance(wall: dt.datetime, every: Every, step: int) -> dt.datetime:
    """The aligned local wall time after the aligned ``wall``."""
    if every in _SUB_DAY:
        next_midnight = wall.replace(hour=0, minute=0) + dt.timedelta(days=1)
        return min(wall + dt.timedelta(minutes=_UNIT_MINUTES[every] * step), next_midnight)
    months = {"year": 12, "quarter": 3, "month": 1}.get(every, 0)
    days = 7 if every == "week" else step if every == "day" else 0
    advanced: dt.datetime = wall + relativedelta(months=months, days=days)
    return advanced
