"""Declarative transforms, applied lazily to a polars LazyFrame.

Each transform of the catalog maps to polars expressions; nothing is computed until the driver
collects. Cast failures surface at collect time as :class:`~coolie_core.errors.DataError`
naming the column and a sample value. Masking keeps nulls null (only values are hashed or redacted).
"""

import hashlib
import re

import polars as pl

from coolie_core.columns import DROPPED, INTERNAL_COLUMNS, REJECT_RULE
from coolie_core.engines.polars.casts import cast_expr, marked_cast
from coolie_core.errors import DataError
from coolie_core.expressions import sql_expr
from coolie_core.models import (
    AggregateTransform,
    CastTransform,
    CdcSpec,
    DedupTransform,
    DeriveTransform,
    DropTransform,
    FilterTransform,
    HashTransform,
    MaskTransform,
    RenameTransform,
    SelectTransform,
    Transform,
)
from coolie_core.quarantine import add_rejection
from coolie_core.values import REDACTED

__all__ = ["alive", "apply_transforms", "cdc_deleted", "latest_per_key", "polars_dtype"]


def alive(schema: pl.Schema) -> pl.Expr:
    """Rows no rule has removed or rejected so far (filters and dedup judge only these)."""
    parts = [pl.col(c).is_null() for c in (DROPPED, REJECT_RULE) if c in schema]
    return pl.all_horizontal(parts) if parts else pl.lit(True)


_SIMPLE_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int8": pl.Int8(),
    "int16": pl.Int16(),
    "int32": pl.Int32(),
    "int64": pl.Int64(),
    "uint8": pl.UInt8(),
    "uint16": pl.UInt16(),
    "uint32": pl.UInt32(),
    "uint64": pl.UInt64(),
    "float32": pl.Float32(),
    "float64": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
}


def polars_dtype(name: str) -> pl.DataType:
    """The polars type for a catalog type name (``decimal(12,2)`` included)."""
    name = name.strip()
    match = re.fullmatch(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)", name)
    if match:
        return pl.Decimal(int(match.group(1)), int(match.group(2)))
    return _SIMPLE_TYPES[name]


def _cast_expr(
    column: str,
    type_name: str,
    fmt: str | None,
    schema: pl.Schema,
    *,
    strict: bool = True,
    where: str = "cast",
) -> pl.Expr:
    """The cast of one column; ``strict=False`` turns unconvertible values into nulls."""
    return cast_expr(
        column, type_name, fmt, schema, target=polars_dtype(type_name), strict=strict, where=where
    )


def _quarantined_casts(lf: pl.LazyFrame, transform: CastTransform, schema: pl.Schema) -> pl.LazyFrame:
    """Casts that reject (instead of fail on) values they cannot convert."""
    casts = {
        c: _cast_expr(c, t, transform.formats.get(c), schema, strict=False)
        for c, t in transform.columns.items()
    }
    marks = [
        mark
        for column, expr in casts.items()
        for mark in add_rejection(
            "cast",
            pl.format(
                "column {}: {} is not a valid {}",
                pl.lit(column),
                pl.col(column).cast(pl.String),
                pl.lit(transform.columns[column]),
            ),
            pl.col(column).is_not_null() & expr.is_null(),
        )
    ]
    # One column per with_columns: each mark reads the reasons the previous one wrote.
    for index in range(0, len(marks), 2):
        lf = lf.with_columns(marks[index : index + 2])
    return lf.with_columns(expr.alias(c) for c, expr in casts.items())


def _sha256(series: pl.Series) -> pl.Series:
    return pl.Series(
        series.name,
        [None if v is None else hashlib.sha256(v.encode("utf-8")).hexdigest() for v in series.to_list()],
        dtype=pl.String,
    )


def _hash_expr(columns: list[str]) -> pl.Expr:
    # A unit separator between fields and an explicit null marker keep ("a","bc") != ("ab","c").
    parts = [pl.col(c).cast(pl.String).fill_null("\x00") for c in columns]
    return pl.concat_str(parts, separator="\x1f").map_batches(_sha256, return_dtype=pl.String)


def _apply(
    lf: pl.LazyFrame, transform: Transform, *, where: str, marked: bool = True, deferred_casts: bool = False
) -> pl.LazyFrame:
    schema = lf.collect_schema()
    internal = [c for c in (*INTERNAL_COLUMNS, DROPPED) if c in schema]
    judged = alive(schema)

    def need(columns: list[str] | dict[str, str]) -> None:
        missing = [c for c in columns if c not in schema or c in internal]
        if missing:
            available = [c for c in schema.names() if c not in internal]
            raise DataError(f"{where}: column(s) {missing} not found; available: {available}")

    if isinstance(transform, CastTransform):
        need(transform.columns)
        if (
            DROPPED in schema and marked
        ):  # a removed row's values are not cast (a filter may have removed bad ones)
            lf = lf.with_columns(
                pl.when(pl.col(DROPPED).is_null()).then(pl.col(c)).alias(c) for c in transform.columns
            )
        if REJECT_RULE in schema:
            return _quarantined_casts(lf, transform, schema)
        exprs: list[pl.Expr] = []
        for c, t in transform.columns.items():
            checked = (
                marked_cast(c, t, transform.formats.get(c), schema, target=polars_dtype(t), where=where)
                if deferred_casts
                else None
            )
            exprs += checked or [_cast_expr(c, t, transform.formats.get(c), schema, where=where).alias(c)]
        return lf.with_columns(exprs)
    if isinstance(transform, RenameTransform):
        need(transform.columns)
        return lf.rename(transform.columns)
    if isinstance(transform, DeriveTransform):
        return lf.with_columns(
            sql_expr(e, where=f"{where}.columns.{c}").alias(c) for c, e in transform.columns.items()
        )
    if isinstance(transform, FilterTransform):
        condition = sql_expr(transform.condition, where=f"{where}.condition")
        if DROPPED in schema:
            failed = judged & ~condition.fill_null(False)
            return lf.with_columns(
                pl.when(failed).then(pl.lit("filter")).otherwise(pl.col(DROPPED)).alias(DROPPED)
            )
        # A rejected row goes on to the quarantine table whatever a filter says of it.
        return lf.filter(condition | ~judged) if internal else lf.filter(condition)
    if isinstance(transform, DedupTransform):
        need(transform.keys + transform.order_by)
        if not internal:
            return latest_per_key(lf, transform.keys, transform.order_by)
        return _dedup_judged(lf, transform.keys, transform.order_by, judged, mark=DROPPED in schema)
    if isinstance(transform, SelectTransform):
        need(transform.columns)
        return lf.select([*transform.columns, *internal])
    if isinstance(transform, DropTransform):
        need(transform.columns)
        return lf.drop(transform.columns)
    if isinstance(transform, HashTransform):
        need(transform.of)
        return lf.with_columns(_hash_expr(transform.of).alias(transform.column))
    if isinstance(transform, MaskTransform):
        need(transform.columns)
        if transform.method == "redact":
            return lf.with_columns(
                pl.when(pl.col(c).is_null()).then(None).otherwise(pl.lit(REDACTED)).alias(c)
                for c in transform.columns
            )
        # A null stays null: hashing the null marker would invent one shared "value" for all nulls.
        return lf.with_columns(
            pl.when(pl.col(c).is_null()).then(None).otherwise(_hash_expr([c])).alias(c)
            for c in transform.columns
        )
    if isinstance(transform, AggregateTransform):
        need(transform.by)
        source = lf.filter(judged) if internal else lf
        grouped = (
            source.group_by(transform.by, maintain_order=True)
            .agg(sql_expr(e, where=f"{where}.columns.{c}").alias(c) for c, e in transform.columns.items())
            .sort(transform.by)
        )
        if not internal:
            return grouped
        # Removed and rejected rows stay out of the groups and go on (to be counted, quarantined).
        passing = lf.filter(~judged).select(*transform.by, *internal)
        return pl.concat([grouped, passing], how="diagonal_relaxed")
    raise TypeError(f"unknown transform {transform!r}")  # pragma: no cover - the union is closed


def _dedup_judged(
    lf: pl.LazyFrame, keys: list[str], order_by: list[str], judged: pl.Expr, *, mark: bool
) -> pl.LazyFrame:
    """:func:`latest_per_key` among the living rows only; the others are kept as they are.

    ``mark``: the duplicates are marked ``dedup`` in :data:`DROPPED` instead of removed.
    """
    index, live, last = "__coolie_order", "__coolie_live", "__coolie_last"
    ranked = (
        lf.with_row_index(index)
        .with_columns(judged.alias(live))
        .sort([*order_by, index], nulls_last=False)
        .with_columns(pl.struct([*keys, live]).is_last_distinct().alias(last))
        .sort(index)
    )
    duplicate = pl.col(live) & ~pl.col(last)
    if mark:
        ranked = ranked.with_columns(
            pl.when(duplicate).then(pl.lit("dedup")).otherwise(pl.col(DROPPED)).alias(DROPPED)
        )
    else:
        ranked = ranked.filter(~duplicate)
    return ranked.drop(index, live, last)


def latest_per_key(lf: pl.LazyFrame, keys: list[str], order_by: list[str]) -> pl.LazyFrame:
    """One row per key: the last by ``order_by`` (nulls first), ties broken by input order.

    Rows keep their input order. Used by the dedup transform, merge loads and replayed windows.
    """
    return (
        lf.with_row_index("__coolie_order")
        .sort([*order_by, "__coolie_order"], nulls_last=False)
        .unique(subset=keys, keep="last", maintain_order=True)
        .sort("__coolie_order")
        .drop("__coolie_order")
    )


def cdc_deleted(cdc: CdcSpec) -> pl.Expr:
    """True for change-feed rows that delete their key."""
    return pl.col(cdc.column).cast(pl.String).is_in(cdc.delete)


def apply_transforms(
    lf: pl.LazyFrame, transforms: list[Transform], *, dataflow: str, deferred_casts: bool = False
) -> pl.LazyFrame:
    """Apply the catalog's transforms in order (lazily).

    ``deferred_casts``: strict parses of text leave marker columns instead of a check of their
    own; whoever collects the frame must pass every batch to
    :func:`coolie_core.engines.polars.casts.raise_bad_casts` (the streaming path does).

    Raises:
        DataError: a transform names a missing column or holds invalid SQL.
    """
    # Rows are marked removed only by a filter or dedup: casts before any (the usual typing step)
    # skip the guard that keeps removed rows uncast, a copy of every cast column (issue 17).
    marked = False
    for index, transform in enumerate(transforms):
        where = f"{dataflow}.transforms[{index}] ({transform.kind})"
        lf = _apply(lf, transform, where=where, marked=marked, deferred_casts=deferred_casts)
        marked = marked or transform.kind not in ("cast", "rename", "derive")
    return lf
