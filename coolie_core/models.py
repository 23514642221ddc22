"""The catalog schema: connections and dataflows, validated by pydantic.

Every model is frozen and rejects unknown keys, so a typo in a catalog is an error, never a
silently ignored setting. Attribute docstrings become the descriptions of the JSON Schema that
``coolie schema`` prints for editors.
"""

import datetime as dt
import re
from typing import Annotated, Any, Literal, Self

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

__all__ = [
    "NAME_PATTERN",
    "AcceptedValuesCheck",
    "AggregateTransform",
    "CastTransform",
    "Catalog",
    "CatalogDefaults",
    "CdcSpec",
    "CheckSpec",
    "Connection",
    "Dataflow",
    "DedupTransform",
    "DeltaConnection",
    "DeltaSource",
    "DeriveTransform",
    "DestinationSpec",
    "DropTransform",
    "DurationSpec",
    "FileSource",
    "FilesConnection",
    "FilterTransform",
    "FreshnessCheck",
    "HashTransform",
    "LoadStrategy",
    "LookbackSpec",
    "MaskTransform",
    "NotNullCheck",
    "PartitionSpec",
    "PythonConnection",
    "PythonSource",
    "RenameTransform",
    "RetrySpec",
    "RowCountCheck",
    "ScdSpec",
    "SelectTransform",
    "SourceSpec",
    "SqlConnection",
    "SqlSource",
    "StageSpec",
    "Transform",
    "UniqueCheck",
]

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
"""Dataflow, stage and connection names: lower-case letters, digits, underscores."""

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=128)]
ColumnName = Annotated[str, Field(min_length=1)]

LoadStrategy = Literal["append", "overwrite", "merge", "replace_window", "scd2"]

_DTYPE_RE = re.compile(
    r"^(string|int8|int16|int32|int64|uint8|uint16|uint32|uint64|float32|float64|boolean"
    r"|date|datetime|decimal\(\s*\d+\s*,\s*\d+\s*\))$"
)


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, populate_by_name=False
    )


# --------------------------------------------------------------------------- small specs


class DurationSpec(_Model):
    """A length of time, e.g. ``{days: 3}`` or ``{hours: 1, minutes: 30}``."""

    weeks: int = Field(0, ge=0)
    days: int = Field(0, ge=0)
    hours: int = Field(0, ge=0)
    minutes: int = Field(0, ge=0)
    seconds: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.as_timedelta() == dt.timedelta(0):
            raise ValueError("a duration must be longer than zero, e.g. {days: 1}")
        return self

    def as_timedelta(self) -> dt.timedelta:
        return dt.timedelta(
            weeks=self.weeks,
            days=self.days,
            hours=self.hours,
            minutes=self.minutes,
            seconds=self.seconds,
        )


class LookbackSpec(DurationSpec):
    """Re-read a trailing window before the stored watermark.

    Use time units for date/datetime watermarks and ``amount`` for numeric ones.
    """

    amount: int | None = Field(None, gt=0)
    """For integer watermarks: re-read rows with ``watermark - amount < column``."""

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        has_time = self.as_timedelta() > dt.timedelta(0)
        if has_time == (self.amount is not None):
            raise ValueError("give either time units ({days: 3}) or {amount: N}, not both/neither")
        return self


class RetrySpec(_Model):
    """How often and how patiently a dataflow is retried after a transient error.

    Only transient errors (I/O, Delta commit conflicts, dropped database connections) are
    retried; catalog, schema and cast errors fail at once.
    """

    count: int = Field(0, ge=0, le=100)
    """Retries after the first attempt (0 = no retry)."""
    delay: float = Field(1.0, ge=0)
    """Seconds before the first retry."""
    backoff: Literal["fixed", "exponential"] = "exponential"
    """``exponential`` doubles the delay after each attempt."""
    max_delay: float = Field(300.0, ge=0)
    """Upper bound on one delay, in seconds."""
    jitter: float = Field(0.0, ge=0)
    """Up to this many seconds of random delay added to each wait."""


class PartitionSpec(_Model):
    """Calendar (or integer) partitions of a dataflow: the chunks of replay and backfill.

    Chunks are left-closed, right-open ``[lo, hi)`` and aligned to the calendar: quarters start
    in Jan/Apr/Jul/Oct, weeks on Monday (ISO). A mid-period ``start`` gives a partial first chunk.
    """

    column: ColumnName
    """The source column the window filters on (date, datetime or integer)."""
    every: Literal["year", "quarter", "month", "week", "day", "hour", "minute", "integer"]
    """Chunk size. ``integer`` partitions an integer column in steps of ``step``."""
    step: int = Field(1, ge=1)
    """Multiples of ``every``: ``{every: minute, step: 15}``, ``{every: integer, step: 1000}``.
    Only for minute, hour, day and integer."""
    start: dt.datetime | dt.date | int
    """First boundary (inclusive). Dates mean midnight in ``timezone``."""
    end: dt.datetime | dt.date | int | None = None
    """Last boundary (exclusive); open-ended when omitted."""
    timezone: str = "UTC"
    """IANA timezone the calendar is aligned in."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name like 'UTC')") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        integer = self.every == "integer"
        if self.step != 1 and self.every not in ("minute", "hour", "day", "integer"):
            raise ValueError(f"step: only allowed with minute, hour, day or integer, not {self.every}")
        limits = {"minute": 1440, "hour": 24}
        if self.every in limits and self.step > limits[self.every]:
            raise ValueError(
                f"step: at most {limits[self.every]} for every: {self.every} (use a larger unit)"
            )
        for bound_name in ("start", "end"):
            bound = getattr(self, bound_name)
            if bound is None:
                continue
            if integer != (isinstance(bound, int) and not isinstance(bound, bool)):
                kind = "an integer" if integer else "a date or datetime"
                raise ValueError(f"{bound_name} must be {kind} for every: {self.every}")
        if self.end is not None and _as_comparable(self.end) <= _as_comparable(self.start):
            raise ValueError("end must be after start")
        return self


def _as_comparable(value: dt.datetime | dt.date | int) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return value


# --------------------------------------------------------------------------- connections


class FilesConnection(_Model):
    """A local folder of data files (parquet, csv, json, jsonl)."""

    kind: Literal["files"]
    path: str
    """Base folder. Relative paths resolve against the catalog file's folder; ``${VAR}`` and
    ``${VAR:-default}`` are expanded from the environment."""


class DeltaConnection(_Model):
    """A root folder holding Delta tables."""

    kind: Literal["delta"]
    path: str
    """Root folder of the tables (relative to the catalog file; ``${VAR}`` expanded)."""


class SqlConnection(_Model):
    """A SQL database reached by a SQLAlchemy URL (SQLite works out of the box)."""

    kind: Literal["sql"]
    url: str
    """SQLAlchemy URL. Put secrets in environment variables: ``postgresql://etl:${PG_PASSWORD}@db/x``.
    References are expanded only when connecting and never logged."""

    @field_validator("url")
    @classmethod
    def _no_inline_password(cls, value: str) -> str:
        match = re.match(r"^[a-z0-9+]+://[^:/@]+:([^@]+)@", value)
        if match and not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", match.group(1)):
            raise ValueError(
                "the URL holds a literal password; reference an environment variable instead, "
                "e.g. postgresql://user:${PG_PASSWORD}@host/db"
            )
        return value


class PythonConnection(_Model):
    """Python code that produces data: a module importable by dotted name or a ``.py`` file."""

    kind: Literal["python"]
    module: str | None = None
    """Dotted module name, e.g. ``mypkg.sources``."""
    path: str | None = None
    """A ``.py`` file, relative to the catalog file."""

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.module is None) == (self.path is None):
            raise ValueError("give exactly one of module or path")
        return self


Connection = Annotated[
    FilesConnection | DeltaConnection | SqlConnection | PythonConnection,
    Field(discriminator="kind"),
]

# --------------------------------------------------------------------------- sources


class FileSource(_Model):
    """Files under a ``files`` connection."""

    format: Literal["parquet", "csv", "json", "jsonl"]
    connection: Name
    path: str
    """File or glob relative to the connection, e.g. ``orders/*.csv``. ``..`` may not escape it."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Reader options: csv ``separator``, ``has_header``, ``encoding``, ``null_values``..."""
    filter: str | None = None
    """SQL predicate applied while reading, e.g. ``amount > 0``."""


class DeltaSource(_Model):
    """A Delta table under a ``delta`` connection (often another dataflow's destination)."""

    format: Literal["delta"]
    connection: Name
    table: str
    """Table folder relative to the connection, e.g. ``silver/orders``."""
    filter: str | None = None
    """SQL predicate applied while reading."""


class SqlSource(_Model):
    """A table or query in a ``sql`` connection. Watermarks and windows are bound parameters."""

    format: Literal["sql"]
    connection: Name
    table: str | None = None
    """Table name (optionally schema-qualified)."""
    query: str | None = None
    """A SELECT; coolie wraps it to push watermark/window filters down."""
    filter: str | None = None
    """SQL predicate applied by the database."""

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if self.table is not None and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", self.table
        ):
            raise ValueError(f"table must be a plain (schema.)name, got {self.table!r}")
        return self


class PythonSource(_Model):
    """A function in a ``python`` connection that returns a polars (Lazy)DataFrame or Arrow table.

    It is called with keyword arguments ``watermark`` (dict or None) and ``window`` (tuple or None)
    when its signature accepts them.
    """

    format: Literal["python"]
    connection: Name
    function: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    """Function name inside the connection's module."""
    filter: str | None = None
    """SQL predicate applied to what the function returns."""


SourceSpec = Annotated[FileSource | DeltaSource | SqlSource | PythonSource, Field(discriminator="format")]

# --------------------------------------------------------------------------- transforms


class CastTransform(_Model):
    """Cast columns to types; a value that cannot be cast fails the run naming column and value."""

    kind: Literal["cast"]
    columns: dict[ColumnName, str]
    """Column -> type: string, int8..int64, uint8..uint64, float32, float64, boolean, date,
    datetime (UTC), decimal(p,s)."""
    formats: dict[ColumnName, str] = Field(default_factory=dict)
    """strptime formats for string -> date/datetime, e.g. ``{order_ts: "%d/%m/%Y %H:%M"}``."""

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {c: t for c, t in value.items() if not _DTYPE_RE.match(t.strip())}
        if bad:
            raise ValueError(f"unknown type(s) {bad}; see the catalog reference for the type names")
        return value


class RenameTransform(_Model):
    """Rename columns: ``{old: new}``."""

    kind: Literal["rename"]
    columns: dict[ColumnName, ColumnName]


class DeriveTransform(_Model):
    """Add or replace columns computed by SQL expressions: ``{total: "price * qty"}``."""

    kind: Literal["derive"]
    columns: dict[ColumnName, str]


class FilterTransform(_Model):
    """Keep the rows for which a SQL predicate is true."""

    kind: Literal["filter"]
    condition: str


class DedupTransform(_Model):
    """Keep one row per key: the latest by ``order_by`` (last in input order when omitted)."""

    kind: Literal["dedup"]
    keys: list[ColumnName] = Field(min_length=1)
    order_by: list[ColumnName] = Field(default_factory=list)


class SelectTransform(_Model):
    """Keep only these columns, in this order."""

    kind: Literal["select"]
    columns: list[ColumnName] = Field(min_length=1)


class DropTransform(_Model):
    """Drop these columns."""

    kind: Literal["drop"]
    columns: list[ColumnName] = Field(min_length=1)


class HashTransform(_Model):
    """Add a column holding a stable hex SHA-256 of other columns (e.g. a surrogate key)."""

    kind: Literal["hash"]
    column: ColumnName
    of: list[ColumnName] = Field(min_length=1)


class MaskTransform(_Model):
    """Mask sensitive columns: ``hash`` (SHA-256 hex) or ``redact`` (a fixed string)."""

    kind: Literal["mask"]
    columns: list[ColumnName] = Field(min_length=1)
    method: Literal["hash", "redact"] = "hash"


class AggregateTransform(_Model):
    """Group rows and compute SQL aggregates: ``{by: [day], columns: {revenue: "sum(amount)"}}``."""

    kind: Literal["aggregate"]
    by: list[ColumnName] = Field(min_length=1)
    columns: dict[ColumnName, str] = Field(min_length=1)
    """Output column -> SQL aggregate expression (sum, count, min, max, avg...)."""


Transform = Annotated[
    AggregateTransform
    | CastTransform
    | RenameTransform
    | DeriveTransform
    | FilterTransform
    | DedupTransform
    | SelectTransform
    | DropTransform
    | HashTransform
    | MaskTransform,
    Field(discriminator="kind"),
]

# --------------------------------------------------------------------------- destination


class CdcSpec(_Model):
    """A change feed column on a merge: rows whose ``column`` is in ``delete`` remove the key."""

    column: ColumnName
    delete: list[str] = Field(default_factory=lambda: ["D"], min_length=1)


class ScdSpec(_Model):
    """Column names of an SCD2 history table."""

    valid_from: ColumnName = "valid_from"
    valid_to: ColumnName = "valid_to"
    is_current: ColumnName = "is_current"
    effective_column: ColumnName | None = None
    """Source column holding when a change happened (valid_from). Defaults to the first
    watermark column, else the load time."""
    track: list[ColumnName] = Field(default_factory=list)
    """Columns whose change makes a new version (all non-key columns when empty)."""


class DestinationSpec(_Model):
    """Where and how a dataflow writes."""

    connection: Name
    table: str
    """Table folder relative to the connection, e.g. ``silver/orders``."""
    format: Literal["delta", "parquet"] = "delta"
    """``parquet`` (a folder of files) supports append and overwrite only."""
    load: LoadStrategy = "append"
    """append | overwrite | merge | replace_window | scd2."""
    merge_keys: list[ColumnName] = Field(default_factory=list)
    """Business key for merge and scd2."""
    on_duplicate_keys: Literal["latest", "fail"] = "latest"
    """merge/scd2 with several source rows per key: keep the latest (by the watermark columns,
    else input order) or fail loudly."""
    cdc: CdcSpec | None = None
    """merge only: delete target rows flagged by the change feed."""
    scd2: ScdSpec = Field(default_factory=ScdSpec)
    """scd2 only: history column names."""
    partition_by: list[ColumnName] = Field(default_factory=list)
    """Physical Delta partition columns."""

    @model_validator(mode="after")
    def _load_rules(self) -> Self:
        keyed = self.load in ("merge", "scd2")
        if keyed and not self.merge_keys:
            raise ValueError(f"merge_keys: required for load {self.load}")
        if not keyed and self.merge_keys:
            raise ValueError(f"merge_keys: only used by merge and scd2, not load {self.load}")
        if self.cdc is not None and self.load != "merge":
            raise ValueError("cdc: only valid with load merge")
        if self.format == "parquet" and self.load not in ("append", "overwrite"):
            raise ValueError(
                f"format: load {self.load} needs format delta (parquet supports append and overwrite)"
            )
        return self


# --------------------------------------------------------------------------- checks


class _CheckBase(_Model):
    blocking: bool = False
    """A failing blocking check fails the materialisation (and skips downstream)."""


class RowCountCheck(_CheckBase):
    """The table holds at least ``min`` rows."""

    kind: Literal["row_count"]
    min: int = Field(1, ge=0)


class NotNullCheck(_CheckBase):
    """These columns hold no nulls."""

    kind: Literal["not_null"]
    columns: list[ColumnName] = Field(min_length=1)


class UniqueCheck(_CheckBase):
    """These columns together are unique."""

    kind: Literal["unique"]
    columns: list[ColumnName] = Field(min_length=1)


class AcceptedValuesCheck(_CheckBase):
    """A column only holds the listed values (nulls allowed)."""

    kind: Literal["accepted_values"]
    column: ColumnName
    values: list[str | int | float | bool] = Field(min_length=1)


class FreshnessCheck(_CheckBase):
    """The table was written within ``max_lag``."""

    kind: Literal["freshness"]
    max_lag: DurationSpec


CheckSpec = Annotated[
    RowCountCheck | NotNullCheck | UniqueCheck | AcceptedValuesCheck | FreshnessCheck,
    Field(discriminator="kind"),
]

# --------------------------------------------------------------------------- dataflow


def _valid_cron(value: str | None) -> str | None:
    if value is not None and not croniter.is_valid(value):
        raise ValueError(f"not a valid cron expression: {value!r}")
    return value


class Dataflow(_Model):
    """One source -> transforms -> destination flow.

    Its ``name`` is its identity: watermarks and shards hang off it, so renaming a dataflow
    starts it afresh (see the README on renaming).
    """

    name: Name
    stage: Name = "default"
    """Stage (layer) it belongs to: one Dagster job and asset group per stage."""
    description: str | None = None
    enabled: bool = True
    """Disabled dataflows are validated but never planned or run."""
    source: SourceSpec
    transforms: list[Transform] = Field(default_factory=list)
    destination: DestinationSpec
    watermark_columns: list[ColumnName] = Field(default_factory=list)
    """Incremental load: read only rows newer than the stored watermark of these columns."""
    lookback: LookbackSpec | None = None
    """Re-read a trailing window before the stored watermark (needs watermark_columns)."""
    partitions: PartitionSpec | None = None
    """Calendar partitions for replay/backfill (and replace_window)."""
    depends_on: list[Name] = Field(default_factory=list)
    """Extra upstream dataflows when lineage is not visible from source/destination
    (e.g. a SQL or python source fed by another dataflow)."""
    retry: RetrySpec | None = None
    """Overrides the catalog default retry."""
    schedule: str | None = None
    """Cron expression; overrides the stage's schedule."""
    group: Annotated[int, Strict()] | Name | None = None
    """Dataflows with the same group always land on the same shard."""
    checks: list[CheckSpec] = Field(default_factory=list)
    engine: Literal["polars", "spark"] | None = None
    """Overrides the catalog default engine."""
    owners: list[str] = Field(default_factory=list)
    """Emails or ``team:name``."""
    tags: dict[str, str] = Field(default_factory=dict)
    timeout: int | None = Field(None, gt=0)
    """Seconds a run of this dataflow may take (``dagster/max_runtime``)."""
    system_columns: bool = True
    """Add ``_coolie_loaded_at`` and ``_coolie_run_id`` to written rows."""

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return _valid_cron(value)

    @field_validator("owners")
    @classmethod
    def _owner_format(cls, value: list[str]) -> list[str]:
        bad = [
            o
            for o in value
            if not (re.fullmatch(r"[^@\s]+@[^@\s]+", o) or re.fullmatch(r"team:[A-Za-z0-9_-]+", o))
        ]
        if bad:
            raise ValueError(f"owners must be emails or team:name, got {bad}")
        return value

    @field_validator("tags")
    @classmethod
    def _tag_format(cls, value: dict[str, str]) -> dict[str, str]:
        pattern = r"[A-Za-z0-9_.-]{1,63}"
        bad = [
            f"{k}={v}"
            for k, v in value.items()
            if not (re.fullmatch(pattern, k) and re.fullmatch(pattern, v))
        ]
        if bad:
            raise ValueError(f"tag keys and values use [A-Za-z0-9_.-], at most 63 characters: {bad}")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        load = self.destination.load
        if load == "replace_window" and self.partitions is None:
            raise ValueError(
                "partitions: required for load replace_window (the window column and chunk size)"
            )
        if load == "replace_window" and self.watermark_columns:
            raise ValueError(
                "watermark_columns: not with load replace_window, which replaces whole windows; "
                "an incremental read would replace a window with only its new rows"
            )
        if self.lookback is not None and not self.watermark_columns:
            raise ValueError("watermark_columns: required when lookback is set")
        if load == "overwrite" and self.watermark_columns:
            raise ValueError(
                "watermark_columns: with load overwrite this would replace the table with only the new "
                "rows; use append, merge or replace_window for incremental loads"
            )
        if self.name in self.depends_on:
            raise ValueError("depends_on: a dataflow cannot depend on itself")
        return self

    @property
    def load(self) -> LoadStrategy:
        return self.destination.load


# --------------------------------------------------------------------------- catalog


class StageSpec(_Model):
    """Settings shared by the dataflows of one stage."""

    schedule: str | None = None
    """Cron expression for the stage's scheduled runs."""
    timezone: str = "UTC"
    """Timezone the schedule runs in."""
    shards: int = Field(1, ge=1, le=1024)
    """Each scheduled tick launches this many runs, each taking one shard of the dataflows."""
    max_concurrent_runs: int | None = Field(None, ge=1)
    """At most this many runs of the stage at once."""
    timeout: int | None = Field(None, gt=0)
    """Seconds a run of the stage may take."""
    description: str | None = None

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return _valid_cron(value)


class CatalogDefaults(_Model):
    """Defaults every dataflow inherits unless it says otherwise."""

    engine: Literal["polars", "spark"] = "polars"
    retry: RetrySpec = Field(default_factory=RetrySpec)
    owners: list[str] = Field(default_factory=list)
    max_workers: int = Field(4, ge=1, le=256)
    """Dataflows run in parallel within one run."""


class Catalog(_Model):
    """A coolie catalog document: ``connections`` and ``dataflows``.

    A folder of documents is merged into one catalog; each name must be unique across it.
    """

    version: Literal[1] = 1
    defaults: CatalogDefaults = Field(default_factory=CatalogDefaults)
    stages: dict[Name, StageSpec] = Field(default_factory=dict)
    """Optional stage settings. When given, every dataflow's stage must be listed (typo guard)."""
    connections: dict[Name, Connection] = Field(default_factory=dict)
    dataflows: list[Dataflow] = Field(default_factory=list)

    def dataflow(self, name: str) -> Dataflow:
        for flow in self.dataflows:
            if flow.name == name:
                return flow
        raise KeyError(name)

    def retry_for(self, flow: Dataflow) -> RetrySpec:
        return flow.retry or self.defaults.retry

    def engine_for(self, flow: Dataflow) -> str:
        return flow.engine or self.defaults.engine

    def schedule_for(self, flow: Dataflow) -> str | None:
        stage = self.stages.get(flow.stage)
        return flow.schedule or (stage.schedule if stage else None)
