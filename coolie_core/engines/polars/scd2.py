"""SCD2 (slowly changing dimension, type 2) loads in one Delta merge commit.

Rules, per business key:

* A version is a row whose tracked columns differ from the previous version (null-safe). Rows
  identical to the version before them create nothing. Unless ``track`` lists them, the tracked
  columns are all but the keys, the effective column, the history and the system columns.
* Several changes of one key in one batch become a chain of versions: each closes at the next
  one's ``valid_from``; only the last is current.
* A change at the same ``valid_from`` as the current version corrects it in place (no new
  version); a change older than the current version is late and ignored. So there is never more
  than one current row per key.
* Two source rows of one key with the same timestamp: the later row in input order wins.

All of it — closing old versions, corrections and inserts — is one MERGE, so one commit.
"""

from typing import TYPE_CHECKING, Any

import polars as pl

from coolie_core.columns import LOADED_AT, scd2_tracked
from coolie_core.errors import DataError
from coolie_core.faults import fault_point
from coolie_core.io.delta import WriteResult, delta_table_exists, quote
from coolie_core.models import DestinationSpec
from coolie_core.storage import StorageLocation, delta_table, library_options, table_options

if TYPE_CHECKING:
    from coolie_core.io.delta import CommitInfo

__all__ = ["write_scd2"]

_ACTION = "__coolie_action"
_MK = "__coolie_mk_"


def _changed(columns: list[str], left_suffix: str = "", right_suffix: str = "__prev") -> pl.Expr:
    if not columns:
        return pl.lit(False)
    return pl.any_horizontal([pl.col(c + left_suffix).ne_missing(pl.col(c + right_suffix)) for c in columns])


def write_scd2(
    path: StorageLocation,
    frame: pl.DataFrame,
    *,
    destination: DestinationSpec,
    info: "CommitInfo",
    order_columns: list[str],
    evolve_schema: bool = False,
    snapshot: Any = None,
) -> WriteResult:
    """Apply ``frame`` as a batch of changes to an SCD2 history table.

    ``evolve_schema`` adds the frame's new columns to the table (schema drift policy ``evolve``);
    the current versions count as null in them. ``snapshot``: the ``DeltaTable`` to read the
    current versions from and commit against (a commit by someone else since then conflicts).
    """
    from deltalake import write_deltalake

    spec = destination.scd2
    keys = destination.merge_keys
    effective = spec.effective_column or (order_columns[0] if order_columns else LOADED_AT)
    if effective not in frame.columns:
        raise DataError(f"dataflow {info.dataflow}: scd2 effective column {effective} is not in the data")
    tracked = scd2_tracked(frame.columns, destination, effective)
    vf, vt, cur = spec.valid_from, spec.valid_to, spec.is_current

    # One row per (key, timestamp): the later input row wins; then drop no-op versions.
    batch = (
        frame.with_row_index("__coolie_order")
        .with_columns(pl.col(effective).alias(vf))
        .sort([*keys, vf, "__coolie_order"])
        .unique(subset=[*keys, vf], keep="last", maintain_order=True)
        .drop("__coolie_order")
    )
    prev = [pl.col(c).shift(1).over(keys).alias(c + "__prev") for c in tracked]
    batch = batch.with_columns(prev).with_columns(
        (pl.col(vf).shift(1).over(keys).is_null() | _changed(tracked)).alias("__keep")
    )
    batch = batch.filter("__keep").drop(["__keep", *(c + "__prev" for c in tracked)])

    if not delta_table_exists(path):
        out = batch.with_columns(pl.col(vf).shift(-1).over(keys).alias(vt)).with_columns(
            pl.col(vt).is_null().alias(cur)
        )
        if info.accounts is not None:
            info.accounts["rows_written"] = out.height
        write_deltalake(
            path.uri,
            out.to_arrow(),
            mode="append",
            partition_by=destination.partition_by or None,
            schema_mode="merge" if evolve_schema else None,
            commit_properties=info.properties(),
            **table_options(path),
        )
        return WriteResult(out.height, delta_table(path).version())

    table = snapshot if snapshot is not None else delta_table(path)
    stored = set(table.schema().to_arrow().names)
    current = (
        pl.scan_delta(path.uri, version=table.version(), storage_options=library_options(path))
        .filter(pl.col(cur))
        .join(batch.select(keys).unique().lazy(), on=keys, how="semi")
        .select([*keys, *(c for c in tracked if c in stored), vf])
        .collect()
        .with_columns(pl.lit(None, dtype=batch.schema[c]).alias(c) for c in tracked if c not in stored)
    )
    joined = batch.join(current, on=keys, how="left", suffix="__cur")
    cur_from = pl.col(vf + "__cur")
    has_current = cur_from.is_not_null()
    # Late rows (older than the current version) are ignored.
    joined = joined.filter(~has_current | (pl.col(vf) >= cur_from))
    # A first version equal to the current one is a no-op; a change at the same instant corrects it.
    first = pl.col(vf).rank("ordinal").over(keys) == 1
    same_as_current = has_current & ~_changed(tracked, "", "__cur")
    joined = joined.filter(~(first & same_as_current))
    # Recompute "first" after filtering, then classify.
    first = pl.col(vf).rank("ordinal").over(keys) == 1
    joined = joined.with_columns(
        pl.when(first & has_current & (pl.col(vf) == cur_from))
        .then(pl.lit("fix"))
        .otherwise(pl.lit("insert"))
        .alias(_ACTION),
        (first & has_current & (pl.col(vf) > cur_from)).alias("__closes"),
    )
    joined = joined.with_columns(pl.col(vf).shift(-1).over(keys).alias(vt)).with_columns(
        pl.col(vt).is_null().alias(cur)
    )
    columns = [*list(batch.columns), vt, cur]
    inserts_and_fixes = joined.select(
        [
            *columns,
            _ACTION,
            *(pl.when(pl.col(_ACTION) == "fix").then(pl.col(k)).otherwise(None).alias(_MK + k) for k in keys),
        ]
    )
    # A closed version reads a column new to the table as null, as every older row. delta-rs'
    # merge with merge_schema copies a matched source row's new columns into the target row,
    # whatever the update says (an explicit NULL included): the close rows carry nulls there.
    closes = joined.filter("__closes").select(
        [
            *(pl.col(c) if c in stored else pl.lit(None, dtype=joined.schema[c]).alias(c) for c in columns),
            pl.lit("close").alias(_ACTION),
            *(pl.col(k).alias(_MK + k) for k in keys),
        ]
    )
    source = pl.concat([closes, inserts_and_fixes], how="vertical_relaxed")
    if source.height == 0:
        return WriteResult(0, None)

    predicate = " AND ".join(
        [*(f"t.{quote(k)} = s.{quote(_MK + k)}" for k in keys), f"t.{quote(cur)} = true"]
    )
    target_columns = list(columns)
    if info.accounts is not None:
        info.accounts["rows_written"] = int(joined.height)
    fault_point("delta_commit", info.dataflow)
    metrics = (
        table.merge(
            source=source.to_arrow(),
            predicate=predicate,
            source_alias="s",
            target_alias="t",
            merge_schema=evolve_schema,
            commit_properties=info.properties(),
        )
        .when_matched_update(
            updates={quote(vt): f"s.{quote(vf)}", quote(cur): "false"},
            predicate=f"s.{quote(_ACTION)} = 'close'",
        )
        .when_matched_update(
            updates={quote(c): f"s.{quote(c)}" for c in target_columns if c not in keys and c not in (vf,)},
            predicate=f"s.{quote(_ACTION)} = 'fix'",
        )
        .when_not_matched_insert(
            updates={quote(c): f"s.{quote(c)}" for c in target_columns},
            predicate=f"s.{quote(_ACTION)} = 'insert'",
        )
        .execute()
    )
    table.update_incremental()
    written = int(joined.height)
    return WriteResult(written, table.version(), dict(metrics))
