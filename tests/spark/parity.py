"""Helpers of the Spark-vs-Polars parity tests: a catalog written for one engine, and the run
records the two engines must agree on."""

import json
from pathlib import Path
from typing import Any

import yaml

from coolie_core.catalog import LoadedCatalog, load_catalog

RECORD_KEYS = ("dataflow", "status", "rows_read", "rows_written", "rows_filtered", "watermark_after")


def write_catalog(root: Path, document: dict[str, Any]) -> LoadedCatalog:
    """``document`` as ``root/catalog.yaml``, loaded."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return load_catalog(path)


def run_records(root: Path) -> list[tuple[str, ...]]:
    """The run records under ``root/.coolie/runs`` (:data:`RECORD_KEYS`), sorted."""
    records = [
        json.loads(line)
        for f in sorted((root / ".coolie" / "runs").glob("*.jsonl"))
        for line in f.read_text(encoding="utf-8").splitlines()
    ]
    return sorted(tuple(str(r.get(k)) for k in RECORD_KEYS) for r in records)
