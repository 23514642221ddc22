"""Structured run records: one JSON line per dataflow attempt outcome, failures included."""

import datetime as dt
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RunLog", "read_records"]


class RunLog:
    """Append run records as JSON lines to ``<folder>/runs-YYYY-MM-DD.jsonl`` (thread-safe)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> None:
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        line = json.dumps(record, default=str, sort_keys=True)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / f"runs-{day}.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")


def read_records(folder: str | Path) -> list[dict[str, Any]]:
    """All records in ``folder``, oldest file first."""
    records: list[dict[str, Any]] = []
    for file in sorted(Path(folder).glob("runs-*.jsonl")):
        with file.open(encoding="utf-8") as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    return records
