"""Column lineage from the catalog's transforms: which source columns each written column comes from.

Each output column is traced back through the dataflow's transforms, last to first:

* ``rename``: the new name becomes the old one;
* ``derive`` / ``aggregate``: a computed column becomes the columns its SQL expression reads
  (``by`` columns of an aggregate pass through);
* ``hash``: the hash column becomes its ``of`` columns;
* ``cast``, ``mask``, ``select``, ``drop``, ``filter``, ``dedup``: names pass through.

Columns coolie adds itself (``_coolie_*``, SCD2 bookkeeping) have no source column. A column
whose expression cannot be parsed is left out rather than guessed.
"""

import functools

import dagster as dg
import polars as pl

from coolie_core.models import (
    AggregateTransform,
    Dataflow,
    DeriveTransform,
    HashTransform,
    RenameTransform,
)

__all__ = ["column_lineage", "source_columns"]


@functools.lru_cache(maxsize=4096)
def _expression_columns(text: str) -> frozenset[str] | None:
    try:
        return frozenset(pl.sql_expr(text).meta.root_names())
    except Exception:  # not parseable here: the load would have reported it
        return None


def _generated(flow: Dataflow) -> set[str]:
    columns = set()
    if flow.load == "scd2":
        scd2 = flow.destination.scd2
        columns = {value for value in scd2.model_dump().values() if isinstance(value, str)}
        columns.discard(scd2.effective_column)
    return columns


def source_columns(flow: Dataflow, column: str) -> frozenset[str] | None:
    """The source columns an output column is computed from (None: unknown or coolie's own)."""
    if column.startswith("_coolie_") or column in _generated(flow):
        return None
    names = frozenset([column])
    for transform in reversed(flow.transforms):
        traced: set[str] = set()
        for name in names:
            if isinstance(transform, RenameTransform):
                old = {new: old for old, new in transform.columns.items()}
                traced.add(old.get(name, name))
            elif isinstance(transform, DeriveTransform | AggregateTransform) and name in transform.columns:
                found = _expression_columns(transform.columns[name])
                if found is None:
                    return None
                traced |= found
            elif isinstance(transform, HashTransform) and name == transform.column:
                traced |= set(transform.of)
            else:
                traced.add(name)
        names = frozenset(traced)
    return names


def column_lineage(flow: Dataflow, columns: list[str], *, source: dg.AssetKey) -> dg.TableColumnLineage:
    """Dagster's column lineage of the written columns onto the source asset's columns."""
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for column in columns:
        found = source_columns(flow, column)
        if found:
            deps[column] = [dg.TableColumnDep(asset_key=source, column_name=c) for c in sorted(found)]
    return dg.TableColumnLineage(deps_by_column=deps)
