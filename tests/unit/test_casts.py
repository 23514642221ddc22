"""The ``cast`` transform on the Polars engine: ISO-8601 datetimes without a format, and failed
casts that name the column and a value (strict and under quarantine)."""

import datetime as dt

import polars as pl
import pytest

from coolie_core.columns import REJECT_REASON, REJECT_RULE
from coolie_core.engines.polars.transform import apply_transforms
from coolie_core.errors import CastError, DataError
from coolie_core.models import CastTransform
from coolie_core.quarantine import with_quarantine_columns

UTC = dt.UTC


def _cast(values: list[str | None], type_name: str = "datetime", **formats: str) -> list[object]:
    lf = pl.LazyFrame({"ts": values}, schema={"ts": pl.String})
    transform = CastTransform(kind="cast", columns={"ts": type_name}, formats=formats)
    return apply_transforms(lf, [transform], dataflow="events").collect().get_column("ts").to_list()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T10:00:00Z", dt.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00+02:00", dt.datetime(2024, 3, 1, 8, tzinfo=UTC)),
        ("2024-03-01T10:00:00-0530", dt.datetime(2024, 3, 1, 15, 30, tzinfo=UTC)),
        ("2024-03-01 10:00:00", dt.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00", dt.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00.123456Z", dt.datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-01 10:00:00.5", dt.datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2024-03-01T10:00+01:00", dt.datetime(2024, 3, 1, 9, tzinfo=UTC)),
        ("2024-03-01", dt.datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_datetime_cast_parses_iso_8601_without_a_format(text: str, expected: dt.datetime) -> None:
    assert _cast([text]) == [expected]


def test_one_column_may_mix_offsets_and_naive_values() -> None:
    """Polars' own parser guesses one format from the first value and fails on the rest."""
    values = ["2024-03-01T10:00:00Z", "2024-03-01T12:00:00+02:00", "2024-03-01 10:00:00", None]
    assert _cast(values) == [dt.datetime(2024, 3, 1, 10, tzinfo=UTC)] * 3 + [None]


@pytest.mark.parametrize(
    "bad", ["01/03/2024 10:00", "2024-3-1", "2024-02-30 10:00:00", " 2024-03-01", "soon"]
)
def test_a_failed_datetime_cast_names_column_and_value(bad: str) -> None:
    with pytest.raises(CastError) as caught:
        _cast(["2024-03-01T10:00:00Z", bad])
    message = str(caught.value)
    assert message.startswith("dataflow events.transforms[0] (cast): column ts: cannot cast")
    assert repr(bad) in message
    assert "formats.ts" in message  # says how to declare another form
    assert "This error occurred" not in message  # polars' plan dump is cut off
    assert isinstance(caught.value, DataError)  # permanent: never retried


def test_a_failed_cast_with_a_format_names_column_value_and_format() -> None:
    with pytest.raises(
        CastError, match=r"column ts: cannot cast '2024-03-01' to datetime \(format %d/%m/%Y\)"
    ):
        _cast(["01/03/2024", "2024-03-01"], ts="%d/%m/%Y")


@pytest.mark.parametrize(("type_name", "bad"), [("date", "tomorrow"), ("boolean", "maybe")])
def test_failed_date_and_boolean_casts_name_column_and_value(type_name: str, bad: str) -> None:
    good = "2024-03-01" if type_name == "date" else "yes"
    with pytest.raises(CastError, match=rf"column ts: cannot cast '{bad}' to {type_name}"):
        _cast([good, None, bad], type_name)


def test_under_quarantine_the_reason_names_column_and_value() -> None:
    lf = with_quarantine_columns(
        pl.LazyFrame({"id": [1, 2, 3], "ts": ["2024-03-01T10:00:00+01:00", "01/03/2024", None]})
    )
    transform = CastTransform(kind="cast", columns={"ts": "datetime"})
    frame = apply_transforms(lf, [transform], dataflow="events").collect()
    assert frame.get_column("ts").to_list() == [dt.datetime(2024, 3, 1, 9, tzinfo=UTC), None, None]
    assert frame.get_column(REJECT_RULE).to_list() == [None, "cast", None]
    assert frame.get_column(REJECT_REASON).to_list() == [
        None,
        "column ts: 01/03/2024 is not a valid datetime",
        None,
    ]
