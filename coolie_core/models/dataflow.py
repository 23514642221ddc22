"""The dataflow: source -> transforms -> destination, and the catalog document."""

import re
from typing import Annotated, Any, Literal, Self

from croniter import croniter
from pydantic import Field, Strict, field_validator, model_validator

from coolie_core.models._base import (
    ColumnName,
    LoadStrategy,
    LookbackSpec,
    Name,
    PartitionSpec,
    RetrySpec,
    _Model,
    known_timezone,
)
from coolie_core.models.automation import Automation, DefaultStatus
from coolie_core.models.checks import CheckSpec
from coolie_core.models.connections import Connection
from coolie_core.models.destination import DestinationSpec
from coolie_core.models.quality import QuarantineSpec
from coolie_core.models.sources import SourceSpec
from coolie_core.models.transforms import Transform


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
    automation: Automation | None = None
    """Declarative automation rules (see ``models.automation``); overrides the stage's."""
    default_status: DefaultStatus | None = None
    """Whether the schedule of its own ``schedule`` starts running (default: the stage's)."""
    group: Annotated[int, Strict()] | Name | None = None
    """Dataflows with the same group always land on the same shard."""
    checks: list[CheckSpec] = Field(default_factory=list)
    quarantine: QuarantineSpec | None = None
    """Rows breaking a rule (or a cast) go to a quarantine table instead of the destination."""
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
        if self.quarantine is not None and any(t.kind == "aggregate" for t in self.transforms):
            raise ValueError(
                "quarantine: not with an aggregate transform, which loses the source rows; "
                "quarantine in the dataflow that loads the raw rows"
            )
        if self.name in self.depends_on:
            raise ValueError("depends_on: a dataflow cannot depend on itself")
        if getattr(self.source, "incremental", None) == "files":
            if self.watermark_columns:
                raise ValueError(
                    "watermark_columns: not with source.incremental: files, which loads every new file "
                    "whole whatever its rows' timestamps (order duplicate keys with a dedup transform)"
                )
            if getattr(self.source, "on_bad_file", "fail") == "quarantine" and self.quarantine is None:
                raise ValueError(
                    "source.on_bad_file: quarantine needs the dataflow's quarantine block (the table "
                    "where unreadable files are recorded)"
                )
            if load in ("overwrite", "replace_window"):
                raise ValueError(
                    f"source.incremental: files loads each new file once, not with load {load} (it would "
                    "replace the table with only the new files' rows); use append, merge or scd2"
                )
        return self

    @model_validator(mode="before")
    @classmethod
    def _incremental_needs_files(cls, data: Any) -> Any:
        # Said plainly, instead of "unknown field" from the non-file source's model.
        source = data.get("source") if isinstance(data, dict) else None
        if isinstance(source, dict) and "incremental" in source:
            fmt = source.get("format")
            if fmt not in ("csv", "json", "jsonl", "parquet"):
                raise ValueError(
                    f"source.incremental: only file sources (csv, json, jsonl, parquet) take it, not {fmt}; "
                    "read other sources incrementally with watermark_columns"
                )
        return data

    @property
    def load(self) -> LoadStrategy:
        return self.destination.load


class StageSpec(_Model):
    """Settings shared by the dataflows of one stage."""

    schedule: str | None = None
    """Cron expression for the stage's scheduled runs."""
    automation: Automation | None = None
    """Declarative automation rules of its dataflows (see ``models.automation``)."""
    default_status: DefaultStatus = "stopped"
    """Whether the stage's schedule starts running on a fresh Dagster instance."""
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

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Dagster refuses an unknown execution timezone when the code location loads.
        return known_timezone(value)


class CatalogDefaults(_Model):
    """Defaults every dataflow inherits unless it says otherwise."""

    engine: Literal["polars", "spark"] = "polars"
    retry: RetrySpec = Field(default_factory=RetrySpec)
    owners: list[str] = Field(default_factory=list)
    max_workers: int = Field(4, ge=1, le=256)
    """Dataflows run in parallel within one run."""
    default_status: DefaultStatus = "stopped"
    """Whether coolie's sensors (file arrival, declarative automation) start running."""


_INDEX = "__coolie_dataflow_index__"


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
        """The dataflow called ``name`` (KeyError if none): a dict lookup, not a scan, so that
        callers looping over every dataflow stay linear in the catalog's size."""
        # The index lives in __dict__ beside the fields: pydantic ignores non-field keys when
        # comparing and dumping. A copy holding other dataflows (another list) re-indexes.
        key = (id(self.dataflows), len(self.dataflows))
        cached = self.__dict__.get(_INDEX)
        if cached is None or cached[0] != key:
            cached = self.__dict__[_INDEX] = (key, {flow.name: flow for flow in self.dataflows})
        try:
            return cached[1][name]
        except KeyError:
            raise KeyError(name) from None

    def retry_for(self, flow: Dataflow) -> RetrySpec:
        return flow.retry or self.defaults.retry

    def engine_for(self, flow: Dataflow) -> str:
        return flow.engine or self.defaults.engine

    def schedule_for(self, flow: Dataflow) -> str | None:
        stage = self.stages.get(flow.stage)
        return flow.schedule or (stage.schedule if stage else None)
