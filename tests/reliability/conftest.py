"""Helpers shared by the fault-injection suite and the soak test, offered as fixtures.

* ``canonical``: a table's rows without coolie's system columns, columns and rows in a fixed
  order, so two tables compare with ``equals`` whatever order their rows were written in.
* ``check_delta_log``: the Delta log of a destination is valid — the table opens, versions are
  contiguous from 0, and each incremental batch of a dataflow was committed exactly once.
"""

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.watermarks import BATCH_KEY, DATAFLOW_KEY

Canonical = Callable[[pl.DataFrame], pl.DataFrame]
CheckDeltaLog = Callable[[Path, str], int]


def canonical_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows without ``_coolie_*`` columns, columns by name and rows sorted by every column."""
    frame = frame.select(sorted(c for c in frame.columns if not c.startswith("_coolie_")))
    return frame.sort(frame.columns, nulls_last=True)


def check_log(table: Path, dataflow: str) -> int:
    """Assert the table's Delta log is valid; return the number of batches ``dataflow`` committed.

    Valid: the table opens at its latest version, the commit files are versions ``0..v`` with no
    gap, the history lists each of them once, and the ``coolie.batch`` numbers of the dataflow's
    commits are exactly ``1..n`` — no batch lost from the log, none committed twice — where ``n``
    is the application transaction version the watermark reader trusts.
    """
    delta = DeltaTable(str(table))
    version = delta.version()
    commits = sorted(int(p.stem) for p in (table / "_delta_log").glob("*.json") if p.stem.isdigit())
    assert commits == list(range(version + 1)), f"{table}: commit files {commits}, version {version}"
    history = delta.history()
    assert sorted(int(c["version"]) for c in history) == list(range(version + 1)), history
    batches = sorted(int(c[BATCH_KEY]) for c in history if c.get(DATAFLOW_KEY) == dataflow and BATCH_KEY in c)
    recorded = delta.transaction_version(f"coolie:{dataflow}") or 0
    assert batches == list(range(1, recorded + 1)), f"{table}: batches {batches}, app transaction {recorded}"
    pl.read_delta(str(table))  # every file the log references is there and readable
    return recorded


@pytest.fixture(scope="session")
def canonical() -> Canonical:
    """See :func:`canonical_rows`."""
    return canonical_rows


@pytest.fixture(scope="session")
def check_delta_log() -> CheckDeltaLog:
    """See :func:`check_log`."""
    return check_log
