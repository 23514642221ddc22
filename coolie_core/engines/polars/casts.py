"""The ``cast`` transform's conversions on the Polars engine, and the messages of failed ones.

A ``datetime`` cast of text without a ``formats`` entry accepts ISO-8601 as users write it:
``2024-03-01``, ``2024-03-01 10:00``, ``2024-03-01T10:00:00``, fractional seconds, and a ``Z`` or
``+02:00`` / ``+0200`` offset. Values with an offset are converted to UTC; values without one
are UTC already. Anything else (``2024-3-1``, ``01/03/2024``, a trailing space) does not convert.
The Spark engine accepts exactly the same texts (:data:`coolie_core.values.ISO_DATETIME` gates both).

A strict cast (no quarantine) fails naming the column and the first value that does not convert;
with quarantine the rejection reason names them (see :mod:`coolie_core.engines.polars.transform`).
"""

import json

import polars as pl

from coolie_core.errors import CastError
from coolie_core.values import ISO_DATETIME

__all__ = ["BAD_CAST", "cast_expr", "marked_cast", "raise_bad_casts"]

_ISO_PARSE = "%Y-%m-%d %H:%M:%S%.f%:z"


def _iso_datetime(col: pl.Expr) -> pl.Expr:
    """Text in :data:`ISO_DATETIME` as a UTC datetime (null for any other text).

    The parts are reassembled into one canonical text (seconds, offset filled in) and parsed with
    one format, so a column may mix forms (``Z``, offsets, no offset) row by row.
    """
    parts = col.str.extract_groups(ISO_DATETIME)
    offset = parts.struct.field("5")
    canonical = pl.concat_str(
        parts.struct.field("1"),
        pl.lit(" "),
        parts.struct.field("2").fill_null("00:00"),
        parts.struct.field("3").fill_null(":00"),
        parts.struct.field("4").fill_null(""),
        pl.when(offset.is_null() | (offset == "Z"))
        .then(pl.lit("+00:00"))
        .otherwise(offset.str.replace(r"^([+-]\d{2}):?(\d{2})$", "${1}:${2}")),
    )
    parsed = canonical.str.to_datetime(_ISO_PARSE, strict=False, time_unit="us")
    return parsed.dt.convert_time_zone("UTC")


def _converted(col: pl.Expr, source: pl.DataType | None, target: pl.DataType, fmt: str | None) -> pl.Expr:
    """The cast value, null where the value does not convert."""
    if source == pl.String() and target == pl.Date():
        return col.str.to_date(fmt, strict=False)
    if source == pl.String() and isinstance(target, pl.Datetime):
        if fmt is None:
            return _iso_datetime(col)
        parsed = col.str.to_datetime(fmt, strict=False, time_unit="us")
        return parsed.dt.convert_time_zone("UTC") if "%z" in fmt else parsed.dt.replace_time_zone("UTC")
    if isinstance(source, pl.Datetime) and isinstance(target, pl.Datetime):
        if source.time_zone is None:
            return col.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if source == pl.String() and target == pl.Boolean():
        lowered = col.str.to_lowercase().str.strip_chars()
        truthy = lowered.is_in(["true", "t", "1", "yes", "y"])
        falsy = lowered.is_in(["false", "f", "0", "no", "n"])
        return pl.when(truthy).then(True).when(falsy).then(False).otherwise(pl.lit(None, dtype=pl.Boolean))
    return col.cast(target, strict=False)


def _parsed(source: pl.DataType | None, target: pl.DataType) -> bool:
    """Whether the cast parses text into a date, datetime or boolean (checked by coolie)."""
    return source == pl.String() and (target in (pl.Date(), pl.Boolean()) or isinstance(target, pl.Datetime))


def _hint(source: pl.DataType | None, target: pl.DataType, fmt: str | None, column: str) -> str:
    if source == pl.String() and isinstance(target, pl.Datetime) and fmt is None:
        return f" (expected ISO-8601 such as 2024-03-01T10:00:00Z; declare formats.{column} for other forms)"
    if fmt is not None:
        return f" (format {fmt})"
    return ""


def cast_expr(
    column: str,
    type_name: str,
    fmt: str | None,
    schema: pl.Schema,
    *,
    target: pl.DataType,
    strict: bool = True,
    where: str,
) -> pl.Expr:
    """The cast of one column to ``target`` (the catalog type ``type_name``).

    ``strict=False`` turns values that do not convert into nulls (quarantine marks them). A strict
    cast raises :class:`~coolie_core.errors.CastError` (a ``DataError``) when the frame is
    collected: ``dataflow <where>: column <c>: cannot cast '<value>' to <type>``, the value being
    the first in its batch that does not convert. ``where``: ``<dataflow>.transforms[i] (cast)``.
    """
    source = schema.get(column)
    if isinstance(source, pl.Datetime) and isinstance(target, pl.Datetime):
        return _converted(pl.col(column), source, target, fmt)  # a time zone change cannot fail
    if strict and not _parsed(source, target):
        # polars' own strict cast names the column and the values that do not convert.
        return pl.col(column).cast(target, strict=True)
    converted = _converted(pl.col(column), source, target, fmt)
    if not strict:
        return converted
    hint = _hint(source, target, fmt, column)
    type_text = type_name.strip()

    def check(batch: pl.Series) -> pl.Series:
        frame = batch.struct.unnest()
        raw, converted = frame.get_column("raw"), frame.get_column("value")
        if converted.null_count() == raw.null_count():
            return converted  # null only where the text was (null counts are kept: no scan)
        bad = frame.filter(pl.col("raw").is_not_null() & pl.col("value").is_null())
        if bad.height:
            value = bad.get_column("raw").cast(pl.String)[0]
            more = f" ({bad.height - 1} more in the same batch)" if bad.height > 1 else ""
            raise CastError(
                f"dataflow {where}: column {column}: cannot cast {value!r} to {type_text}{hint}{more}"
            )
        return frame.get_column("value")

    # A python check per batch (not per row): polars' parsing of dates and datetimes names no
    # column, and fails on a mixed-offset column before looking at any value.
    return pl.struct(pl.col(column).alias("raw"), converted.alias("value")).map_batches(
        check, return_dtype=target, is_elementwise=True
    )


BAD_CAST = "__coolie_bad_cast:"
"""Prefix of :func:`marked_cast`'s marker columns (the rest of the name says what to report)."""


def marked_cast(
    column: str, type_name: str, fmt: str | None, schema: pl.Schema, *, target: pl.DataType, where: str
) -> list[pl.Expr] | None:
    """A strict parse of text checked by the caller: the value, and a marker column holding the
    text where it does not convert (null elsewhere), for :func:`raise_bad_casts` on every batch.

    All native, unlike :func:`cast_expr`'s check (a Python call per batch and column: ~20% of a
    typed jsonl read, issue 17). None: not a parse coolie checks (use :func:`cast_expr`).
    """
    source = schema.get(column)
    if not _parsed(source, target):
        return None
    converted = _converted(pl.col(column), source, target, fmt)
    about = json.dumps([where, column, type_name.strip(), _hint(source, target, fmt, column)])
    bad = pl.when(pl.col(column).is_not_null() & converted.is_null()).then(pl.col(column).cast(pl.String))
    return [converted.alias(column), bad.alias(BAD_CAST + about)]


def raise_bad_casts(frame: pl.DataFrame, markers: list[str]) -> None:
    """:class:`CastError` (the message of :func:`cast_expr`'s check) when one of
    :func:`marked_cast`'s ``markers`` in ``frame`` holds a value."""
    for marker in markers:
        values = frame.get_column(marker)
        if values.null_count() != frame.height:  # null counts are kept: no scan when all is well
            bad = values.drop_nulls()
            where, column, type_text, hint = json.loads(marker[len(BAD_CAST) :])
            more = f" ({bad.len() - 1} more in the same batch)" if bad.len() > 1 else ""
            raise CastError(
                f"dataflow {where}: column {column}: cannot cast {bad[0]!r} to {type_text}{hint}{more}"
            )
