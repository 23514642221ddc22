"""The catalog's transforms, window and watermark filters as Spark operations.

Same rules as :mod:`coolie_core.engines.polars.transform` (the Polars engine):

* casts are strict: a value that does not convert fails the run naming the column and the value;
  strptime formats (``%Y-%m-%d``) are translated to Spark datetime patterns;
* ``dedup`` keeps the last row per key by ``order_by`` (nulls first), ties broken by input order
  (the hidden :data:`~coolie_core.engines.spark.convert.ORDER` column);
* ``hash``/``mask`` produce the same SHA-256 hex as polars: values are turned into the text polars
  gives them (natively for text, integers, booleans, dates and decimals; through polars itself in
  an Arrow UDF for floats and timestamps, whose text Spark spells differently);
* SQL expressions (``derive``, ``filter``, ``aggregate``) are parsed by Spark SQL: stick to the
  dialect both engines share (arithmetic, comparisons, CAST, CASE, COALESCE, common functions).
"""

import datetime as dt
import re
from collections.abc import Callable
from functools import reduce
from typing import Any

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F  # pyspark's own convention
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    IntegralType,
    StringType,
    TimestampNTZType,
)

from coolie_core.columns import DROPPED, INTERNAL_COLUMNS, RAW_ROW, REJECT_REASON, REJECT_RULE
from coolie_core.engines.spark.convert import ORDER, polars_dtype_of, spark_errors
from coolie_core.errors import DataError
from coolie_core.models import (
    AggregateTransform,
    CastTransform,
    DedupTransform,
    DeriveTransform,
    DropTransform,
    FilterTransform,
    HashTransform,
    LookbackSpec,
    MaskTransform,
    RenameTransform,
    SelectTransform,
    Transform,
)
from coolie_core.values import ISO_DATETIME, REDACTED, coerce_bound, minus_lookback
from coolie_core.watermarks import Watermark

__all__ = [
    "apply_spark_transforms",
    "spark_literal",
    "spark_pattern",
    "spark_watermark_filter",
    "spark_window_filter",
    "with_spark_quarantine_columns",
]

_SPARK_TYPES = {
    "string": "string",
    "int8": "tinyint",
    "int16": "smallint",
    "int32": "int",
    "int64": "bigint",
    "uint8": "smallint",
    "uint16": "int",
    "uint32": "bigint",
    "uint64": "decimal(20,0)",
    "float32": "float",
    "float64": "double",
    "boolean": "boolean",
    "date": "date",
    "datetime": "timestamp",
}
_NUMERIC = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"}
_DECIMAL_RE = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_UNSIGNED_MAX = {"uint8": 2**8 - 1, "uint16": 2**16 - 1, "uint32": 2**32 - 1, "uint64": 2**64 - 1}

# strptime (chrono) directive -> Spark datetime pattern (parsing).
_DIRECTIVES = {
    "Y": "yyyy", "m": "MM", "d": "dd", "H": "HH", "M": "mm", "S": "ss", "y": "yy", "j": "DDD",
    "b": "MMM", "h": "MMM", "B": "MMMM", "a": "EEE", "A": "EEEE", "p": "a", "I": "hh", "e": "d",
    "f": "SSSSSSSSS", "3f": "SSS", "6f": "SSSSSS", "9f": "SSSSSSSSS", ".f": "[.SSSSSSSSS]",
    "z": "[XXX][XX]", ":z": "XXX", "T": "HH:mm:ss", "F": "yyyy-MM-dd", "D": "MM/dd/yy", "R": "HH:mm",
}  # fmt: skip
_VARIABLE_WIDTH = {"d": "d", "m": "M", "H": "H", "M": "m", "S": "s", "I": "h", "e": "d"}
_DIRECTIVE_RE = re.compile(r"%(\.f|[369]f|:z|.)")
_PLAIN = set(" -:/.,")


def spark_pattern(fmt: str, *, where: str) -> str:
    """Translate a strptime format to a Spark datetime pattern (literals quoted).

    >>> spark_pattern("%Y-%m-%dT%H:%M:%SZ", where="x")
    "yyyy-M-d'T'H:m:s'Z'"
    >>> spark_pattern("%Y%m%d", where="x")
    'yyyyMMd'
    """
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            text = "".join(literal)
            out.append(text if set(text) <= _PLAIN else "'" + text.replace("'", "''") + "'")
            literal.clear()

    position = 0
    for match in _DIRECTIVE_RE.finditer(fmt):
        literal.extend(fmt[position : match.start()])
        position = match.end()
        directive = match.group(1)
        if directive == "%":
            literal.append("%")
            continue
        if directive not in _DIRECTIVES:
            raise DataError(f"{where}: format directive %{directive} is not supported by the Spark engine")
        flush()
        # strptime reads "4/1/2024" with %d/%m/%Y; Spark's "dd" wants two digits, "d" takes one or
        # two — safe unless another number follows directly ("%Y%m%d" keeps the fixed widths).
        followed_by_number = fmt[match.end() : match.end() + 1] == "%" and not fmt.startswith(
            "%%", match.end()
        )
        variable = _VARIABLE_WIDTH.get(directive)
        out.append(variable if variable and not followed_by_number else _DIRECTIVES[directive])
    literal.extend(fmt[position:])
    flush()
    return "".join(out)


def _sql(text: str, *, where: str) -> Column:
    """Parse a SQL expression; a syntax error becomes a DataError naming ``where``."""
    from pyspark.errors import PySparkException

    try:
        return F.expr(text)
    except PySparkException as exc:
        detail = str(exc).strip().split("\n", 1)[0]
        raise DataError(f"{where}: cannot parse SQL expression {text!r}: {detail}") from exc


# ------------------------------------------------------------------ text and hashes like polars


def _polars_text(values: pa.Array) -> pa.Array:
    """Arrow UDF body: the text polars gives each value (``cast(pl.String)``)."""
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series.cast(pl.String).to_arrow().cast(pa.string())


_POLARS_TEXT: Callable[..., Column] | None = None


def _as_text(column: Column, dtype: DataType) -> Column:
    """``column`` as the string polars would make of it."""
    global _POLARS_TEXT
    if isinstance(dtype, StringType):
        return column
    if isinstance(dtype, IntegralType | BooleanType | DateType | DecimalType):
        return column.cast("string")
    if _POLARS_TEXT is None:
        _POLARS_TEXT = F.arrow_udf(_polars_text, "string")  # type: ignore[attr-defined]
    return _POLARS_TEXT(column)


def _hash(columns: list[str], types: dict[str, DataType]) -> Column:
    # Same bytes as coolie_core.engines.polars.transform._hash_expr: unit separator, "\x00" for null.
    parts = [F.coalesce(_as_text(F.col(c), types[c]), F.lit("\x00")) for c in columns]
    return F.sha2(F.concat_ws("\x1f", *parts), 256)


# ------------------------------------------------------------------ casts


def _iso_timestamp(col: Column) -> Column:
    """Text in :data:`~coolie_core.values.ISO_DATETIME` as a timestamp, null for any other text.

    The same texts as the Polars engine: Spark's own cast also takes ``2024``, ``2024-3-1`` or a
    leading blank, and no offset after ``HH:MM``. The parts are reassembled into one canonical
    text (seconds and offset filled in), which Spark's cast parses.
    """

    def part(group: int, default: str) -> Column:
        found = F.regexp_extract(col, ISO_DATETIME, group)
        return F.when(found == "", F.lit(default)).otherwise(found)

    offset = F.regexp_replace(part(5, "+00:00"), r"^Z$", "+00:00")
    canonical = F.concat(
        part(1, ""),
        F.lit(" "),
        part(2, "00:00"),
        part(3, ":00"),
        part(4, ""),
        F.regexp_replace(offset, r"^([+-]\d{2}):?(\d{2})$", "$1:$2"),
    )
    return F.when(col.rlike(ISO_DATETIME), canonical.try_cast("timestamp"))


def _converted(column: str, type_name: str, fmt: str | None, dtype: DataType, *, where: str) -> Column:
    """The cast value, null where the value does not convert (like polars' non-strict cast)."""
    col = F.col(column)
    name = type_name.strip()
    target = _SPARK_TYPES.get(name, name.replace(" ", ""))
    pattern = None if fmt is None else spark_pattern(fmt, where=f"{where}.formats.{column}")
    if isinstance(dtype, StringType) and name == "date":
        return col.try_cast("date") if pattern is None else F.try_to_date(col, pattern)
    if isinstance(dtype, StringType) and name == "datetime":
        return _iso_timestamp(col) if pattern is None else F.try_to_timestamp(col, F.lit(pattern))
    if isinstance(dtype, StringType) and name == "string":
        return col
    if name == "string":
        return _as_text(col, dtype)
    if isinstance(dtype, StringType) and (name in _NUMERIC or name.startswith("decimal")):
        # polars reads " 1" as no number; Spark would trim it first.
        col = F.when(col.rlike(r"^\s|\s$"), F.lit(None).cast("string")).otherwise(col)
    if name in _UNSIGNED_MAX:
        wide = col.try_cast(target)
        return F.when((wide < 0) | (wide > F.lit(_UNSIGNED_MAX[name]).cast(target)), None).otherwise(wide)
    decimal = _DECIMAL_RE.fullmatch(name)
    if decimal is not None and not isinstance(dtype, IntegralType):
        # polars rounds to the scale half-to-even (on the shortest decimal text of a float);
        # Spark's cast rounds half-up: round first with bround, then cast exactly.
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        if isinstance(dtype, StringType):
            digits = precision - scale
            wide_scale = min(38 - digits, scale + 18)
            col = col.try_cast(f"decimal({digits + wide_scale},{wide_scale})")
        return F.bround(col, scale).try_cast(target)
    return col.try_cast(target)


def _cast(column: str, type_name: str, fmt: str | None, dtype: DataType, *, where: str) -> Column:
    """A strict cast: a value that does not convert fails the run with the column and value."""
    col = F.col(column)
    converted = _converted(column, type_name, fmt, dtype, where=where)
    failed = col.isNotNull() & converted.isNull()
    message = F.concat(
        F.lit(f"{where}: column {column}: cannot cast "),
        F.coalesce(col.cast("string"), F.lit("?")),
        F.lit(f" to {type_name.strip()}"),
    )
    return F.when(failed, F.raise_error(message)).otherwise(converted)


# ------------------------------------------------------------------ quarantine


def _polars_json(values: pa.Array) -> pa.Array:
    """Arrow UDF body: each struct as the JSON polars writes (``struct.json_encode``)."""
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series.struct.json_encode().to_arrow().cast(pa.string())


_POLARS_JSON: Callable[..., Column] | None = None


def with_spark_quarantine_columns(sdf: DataFrame) -> DataFrame:
    """The raw source row as JSON and empty reject columns (see :mod:`coolie_core.quarantine`)."""
    global _POLARS_JSON
    if _POLARS_JSON is None:
        _POLARS_JSON = F.arrow_udf(_polars_json, "string")  # type: ignore[attr-defined]
    data = [F.col(c) for c in sdf.columns if c != ORDER]
    no_text = F.lit(None).cast("string")
    return sdf.withColumns(
        {RAW_ROW: _POLARS_JSON(F.struct(*data)), REJECT_RULE: no_text, REJECT_REASON: no_text}
    )


def _rejection(rule: str, reason: Column, failed: Column) -> dict[str, Column]:
    """Mark rows where ``failed`` holds (or is null) as rejected (as :func:`~coolie_core.quarantine.add_rejection`)."""

    def extend(column: str, new: Column) -> Column:
        old = F.col(column)
        joined = F.when(old.isNull(), new).otherwise(F.concat(old, F.lit("; "), new))
        return F.when(F.coalesce(failed, F.lit(True)), joined).otherwise(old)

    return {REJECT_RULE: extend(REJECT_RULE, F.lit(rule)), REJECT_REASON: extend(REJECT_REASON, reason)}


def _quarantined_casts(
    sdf: DataFrame, transform: CastTransform, types: dict[str, DataType], *, where: str
) -> DataFrame:
    """Casts that reject (instead of fail on) values they cannot convert."""
    casts = {
        c: _converted(c, t, transform.formats.get(c), types[c], where=where)
        for c, t in transform.columns.items()
    }
    for column, converted in casts.items():
        original = F.col(column)
        reason = F.concat(
            F.lit(f"column {column}: "),
            _as_text(original, types[column]),
            F.lit(f" is not a valid {transform.columns[column]}"),
        )
        sdf = sdf.withColumns(_rejection("cast", reason, original.isNotNull() & converted.isNull()))
    return sdf.withColumns(casts)


# ------------------------------------------------------------------ transforms


def _alive(types: dict[str, DataType]) -> Column:
    """Rows no rule has removed or rejected (as :func:`coolie_core.engines.polars.transform.alive`)."""
    parts = [F.col(c).isNull() for c in (DROPPED, REJECT_RULE) if c in types]
    return reduce(lambda a, b: a & b, parts) if parts else F.lit(True)


def _apply(sdf: DataFrame, transform: Transform, *, where: str) -> DataFrame:
    types = {f.name: f.dataType for f in sdf.schema.fields}
    internal = [c for c in (*INTERNAL_COLUMNS, DROPPED) if c in types]
    available = [c for c in sdf.columns if c != ORDER and c not in internal]
    judged = _alive(types)

    def need(columns: list[str] | dict[str, str]) -> None:
        missing = [c for c in columns if c not in available]
        if missing:
            raise DataError(f"{where}: column(s) {missing} not found; available: {available}")

    if isinstance(transform, CastTransform):
        need(transform.columns)
        if DROPPED in types:  # a removed row's values are not cast (a filter may have removed bad ones)
            sdf = sdf.withColumns({c: F.when(F.col(DROPPED).isNull(), F.col(c)) for c in transform.columns})
        if REJECT_RULE in types:
            return _quarantined_casts(sdf, transform, types, where=where)
        return sdf.withColumns(
            {
                c: _cast(c, t, transform.formats.get(c), types[c], where=where)
                for c, t in transform.columns.items()
            }
        )
    if isinstance(transform, RenameTransform):
        need(transform.columns)
        return sdf.withColumnsRenamed(transform.columns)
    if isinstance(transform, DeriveTransform):
        return sdf.withColumns(
            {c: _sql(e, where=f"{where}.columns.{c}") for c, e in transform.columns.items()}
        )
    if isinstance(transform, FilterTransform):
        condition = _sql(transform.condition, where=f"{where}.condition")
        if DROPPED in types:
            failed = judged & ~F.coalesce(condition, F.lit(False))
            return sdf.withColumn(DROPPED, F.when(failed, F.lit("filter")).otherwise(F.col(DROPPED)))
        # A rejected row goes on to the quarantine table whatever a filter says of it.
        return sdf.filter(condition | ~judged) if internal else sdf.filter(condition)
    if isinstance(transform, DedupTransform):
        need(transform.keys + transform.order_by)
        # The last row by (order_by, input order), nulls first: the first by the reverse order.
        # Only the living rows are judged (removed and rejected rows rank apart and are kept).
        window = Window.partitionBy(*transform.keys, judged).orderBy(
            *[F.col(c).desc_nulls_last() for c in transform.order_by], F.col(ORDER).desc()
        )
        ranked = sdf.withColumn("__coolie_rank", F.row_number().over(window))
        duplicate = judged & (F.col("__coolie_rank") > 1)
        if DROPPED in types:
            marked = ranked.withColumn(DROPPED, F.when(duplicate, F.lit("dedup")).otherwise(F.col(DROPPED)))
            return marked.drop("__coolie_rank")
        return ranked.filter(~duplicate).drop("__coolie_rank")
    if isinstance(transform, SelectTransform):
        need(transform.columns)
        return sdf.select(*transform.columns, *internal, ORDER)
    if isinstance(transform, DropTransform):
        need(transform.columns)
        return sdf.drop(*transform.columns)
    if isinstance(transform, HashTransform):
        need(transform.of)
        return sdf.withColumn(transform.column, _hash(transform.of, types))
    if isinstance(transform, MaskTransform):
        need(transform.columns)
        if transform.method == "redact":
            masked = {
                c: F.when(F.col(c).isNull(), F.lit(None).cast("string")).otherwise(F.lit(REDACTED))
                for c in transform.columns
            }
        else:
            masked = {
                c: F.when(F.col(c).isNull(), F.lit(None).cast("string")).otherwise(_hash([c], types))
                for c in transform.columns
            }
        return sdf.withColumns(masked)
    if isinstance(transform, AggregateTransform):
        need(transform.by)
        aggregated = (
            (sdf.filter(judged) if internal else sdf)
            .groupBy(*transform.by)
            .agg(*[_sql(e, where=f"{where}.columns.{c}").alias(c) for c, e in transform.columns.items()])
        )
        # Polars sorts the groups by their keys (nulls first): that is the new input order.
        aggregated = aggregated.withColumn(ORDER, F.struct(*[F.col(c) for c in transform.by]))
        if not internal:
            return aggregated
        # Removed and rejected rows stay out of the groups and go on (to be counted, quarantined).
        passing = (
            sdf.filter(~judged)
            .select(*transform.by, *internal)
            .withColumn(ORDER, F.struct(*[F.col(c) for c in transform.by]))
        )
        return aggregated.unionByName(passing, allowMissingColumns=True)
    raise TypeError(f"unknown transform {transform!r}")  # pragma: no cover - the union is closed


def apply_spark_transforms(sdf: DataFrame, transforms: list[Transform], *, dataflow: str) -> DataFrame:
    """Apply the catalog's transforms in order (lazily, like the Polars engine).

    Raises:
        DataError: a transform names a missing column or holds invalid SQL.
    """
    for index, transform in enumerate(transforms):
        where = f"{dataflow}.transforms[{index}] ({transform.kind})"
        with spark_errors(where):
            sdf = _apply(sdf, transform, where=where)
    return sdf


# ------------------------------------------------------------------ window and watermark filters


def spark_literal(value: Any, dtype: DataType | None) -> Column:
    """A literal for a column of ``dtype``; timestamps from epoch microseconds (never through the
    Python process' timezone), naive ones taken as UTC."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        micros = (aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        stamp = F.timestamp_micros(F.lit(micros))
        return stamp.cast("timestamp_ntz") if isinstance(dtype, TimestampNTZType) else stamp
    return F.lit(value)


def _bound(
    column: str, value: Any, types: dict[str, DataType], *, where: str, timezone: str = "UTC"
) -> Column:
    dtype = types[column]
    typed = coerce_bound(value, polars_dtype_of(dtype), where=where, timezone=timezone)
    return spark_literal(typed, dtype)


def spark_window_filter(
    sdf: DataFrame, column: str, lo: Any, hi: Any, *, where: str, timezone: str
) -> DataFrame:
    """Keep ``lo <= column < hi``, bounds typed to the column (as :func:`coolie_core.engines.polars.filters.window_expr`)."""
    types = {f.name: f.dataType for f in sdf.schema.fields if f.name != ORDER}
    if column not in types:
        raise DataError(f"{where}: partition column {column} not found; available: {list(types)}")
    lower = _bound(column, lo, types, where=where, timezone=timezone)
    upper = _bound(column, hi, types, where=where, timezone=timezone)
    return sdf.filter((F.col(column) >= lower) & (F.col(column) < upper))


def spark_watermark_filter(
    sdf: DataFrame, watermark: Watermark, lookback: LookbackSpec | None, *, where: str
) -> DataFrame:
    """Keep rows newer than the watermark in any of its columns (as :func:`coolie_core.engines.polars.filters.watermark_expr`)."""
    types = {f.name: f.dataType for f in sdf.schema.fields if f.name != ORDER}
    parts = []
    for column, value in watermark.items():
        if column not in types:
            raise DataError(f"{where}: watermark column {column} not found; available: {list(types)}")
        parts.append(F.col(column) > _bound(column, minus_lookback(value, lookback), types, where=where))
    if not parts:
        return sdf
    return sdf.filter(reduce(lambda a, b: a | b, parts))
