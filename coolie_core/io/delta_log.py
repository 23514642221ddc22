"""The newest commit of a local Delta table, read without loading the table (issue 17).

Reading a dataflow's state (:func:`coolie_core.watermarks.read_delta_watermark`) needs its
application transaction version and the commit that set it. Loading the table for that costs
~1.5 ms of CPU per dataflow (delta-rs replays the log and the file list), most of a run that
finds nothing new. When the table's newest commit is that dataflow's batch commit (the usual case:
each dataflow owns its table), both are in that one small JSON file: the ``txn`` action of
``coolie:<dataflow>`` is the newest, so it is the table's transaction version, and its
``commitInfo`` is what ``DeltaTable.history()`` returns for it. Anything else (another writer's
commit, maintenance, a store that is not the local disk, an unreadable file) answers None and
the caller loads the table as before. :func:`newest_version` is a Delta source's fingerprint the
same way (its table version, from the log's file names).
"""

import json
import os
import re
from typing import Any

from coolie_core.storage import StorageLocation

__all__ = ["NewestBatchCommit", "newest_batch_commit", "newest_version"]

_COMMIT = re.compile(r"^\d{20}\.json$")


class NewestBatchCommit:
    """Answers the two questions the watermark reader asks a ``DeltaTable`` from one commit."""

    def __init__(self, app: str, version: int, commit: dict[str, Any]) -> None:
        self._app, self._version, self._commit = app, version, commit

    def transaction_version(self, app_id: str) -> int | None:
        """The application transaction version (only of the app this commit was read for)."""
        if app_id != self._app:
            raise ValueError(f"read for {self._app}, asked for {app_id}")
        return self._version

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest commit's ``commitInfo`` (what ``DeltaTable.history`` gives first)."""
        return [self._commit]


def newest_version(location: StorageLocation) -> int | None:
    """The version of a local table's newest commit file (what ``DeltaTable.version()`` loads);
    None for other stores, no log or an unreadable one (load the table instead)."""
    if not location.is_local:
        return None
    try:
        with os.scandir(location.path / "_delta_log") as entries:
            names = [e.name for e in entries if _COMMIT.match(e.name)]
    except OSError:
        return None
    return int(max(names)[:20]) if names else None


def newest_batch_commit(
    location: StorageLocation, *, app: str, dataflow_key: str, batch_key: str, dataflow: str
) -> NewestBatchCommit | None:
    """The newest commit of the table at ``location`` when it is ``dataflow``'s batch commit.

    Args:
        location: the table (only local tables are read; None for others).
        app: the dataflow's application transaction id.
        dataflow_key: the commit metadata key naming the dataflow.
        batch_key: the commit metadata key holding the batch number.
        dataflow: the dataflow's name.
    """
    version_read = newest_version(location)
    if version_read is None:
        return None
    try:
        text = (location.path / "_delta_log" / f"{version_read:020d}.json").read_text(encoding="utf-8")
    except OSError:
        return None
    commit: dict[str, Any] | None = None
    version: int | None = None
    for line in text.splitlines():
        # Only the two actions needed are parsed (a rewrite commit holds many add/remove lines).
        if line.startswith('{"commitInfo"'):
            commit = _parsed(line, "commitInfo")
        elif line.startswith('{"txn"'):
            txn = _parsed(line, "txn")
            if txn is not None and txn.get("appId") == app and isinstance(txn.get("version"), int):
                version = txn["version"]
    if commit is None or version is None:
        return None
    if commit.get(dataflow_key) != dataflow or str(commit.get(batch_key)) != str(version):
        return None
    return NewestBatchCommit(app, version, commit)


def _parsed(line: str, action: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line).get(action)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
