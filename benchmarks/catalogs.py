"""Generated catalogs of N dataflows for the Dagster load benchmark.

Dataflows come in chains of three, like a real lakehouse:

* ``b<i>`` (stage ``bronze``): CSV files appended to ``bronze/t<i>`` incrementally, a not-null check;
* ``s<i>`` (``silver``): ``bronze/t<i>`` merged into ``silver/t<i>``, unique and not-null checks;
* ``g<i>`` (``gold``): ``silver/t<i>`` aggregated into ``gold/t<i>``, monthly partitions
  (every fifth chain: daily), a row-count check;

so a third of the assets are partitioned, every asset has checks, and lineage links each chain.
Stages carry schedules; every tenth dataflow has its own cron (distinct crons stay few, as in
real catalogs). The same YAML feeds coolie and the bare-Dagster baseline.
"""

from pathlib import Path
from typing import Any

import yaml

_CRONS = ["*/30 * * * *", "5 */2 * * *", "0 6 * * 1-5"]


def chain(i: int) -> list[dict[str, Any]]:
    """The three dataflows of chain ``i``."""
    every = "day" if i % 5 == 0 else "month"
    flows: list[dict[str, Any]] = [
        {
            "name": f"b{i}",
            "stage": "bronze",
            "source": {"format": "csv", "connection": "raw", "path": f"orders_{i}/*.csv"},
            "destination": {"connection": "lake", "table": f"bronze/t{i}", "load": "append"},
            "watermark_columns": ["updated_at"],
            "checks": [{"kind": "not_null", "columns": ["id"]}],
        },
        {
            "name": f"s{i}",
            "stage": "silver",
            "source": {"format": "delta", "connection": "lake", "table": f"bronze/t{i}"},
            "transforms": [{"kind": "drop", "columns": ["_coolie_loaded_at", "_coolie_run_id"]}],
            "destination": {
                "connection": "lake",
                "table": f"silver/t{i}",
                "load": "merge",
                "merge_keys": ["id"],
            },
            "watermark_columns": ["updated_at"],
            "checks": [
                {"kind": "unique", "columns": ["id"]},
                {"kind": "not_null", "columns": ["id", "amount"]},
            ],
        },
        {
            "name": f"g{i}",
            "stage": "gold",
            "source": {"format": "delta", "connection": "lake", "table": f"silver/t{i}"},
            "transforms": [
                {"kind": "derive", "columns": {"day": "CAST(updated_at AS DATE)"}},
                {"kind": "aggregate", "by": ["day"], "columns": {"revenue": "SUM(amount)"}},
            ],
            "destination": {"connection": "lake", "table": f"gold/t{i}", "load": "replace_window"},
            "partitions": {"column": "day", "every": every, "start": "2024-01-01", "end": "2025-01-01"},
            "checks": [{"kind": "row_count", "min": 1}],
        },
    ]
    for flow in flows:
        n = int(flow["name"][1:]) * 3 + "bsg".index(flow["name"][0])
        if n % 10 == 7:
            flow["schedule"] = _CRONS[n % len(_CRONS)]
    return flows


def catalog_document(n: int) -> dict[str, Any]:
    """A catalog of exactly ``n`` dataflows (the last chain may be cut short)."""
    flows = [flow for i in range((n + 2) // 3) for flow in chain(i)][:n]
    return {
        "version": 1,
        "defaults": {"max_workers": 4, "owners": ["team:data"], "retry": {"count": 2, "delay": 1}},
        "stages": {
            "bronze": {"schedule": "0 * * * *"},
            "silver": {"schedule": "15 * * * *"},
            "gold": {"schedule": "30 2 * * *", "timeout": 3600},
        },
        "connections": {
            "raw": {"kind": "files", "path": "data/raw"},
            "lake": {"kind": "delta", "path": "data/lake"},
        },
        "dataflows": flows,
    }


def write_catalog(folder: Path, n: int) -> Path:
    """Write (once) the catalog of ``n`` dataflows as ``<folder>/catalog_<n>.yaml``."""
    path = folder / f"catalog_{n}.yaml"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.dump(catalog_document(n), sort_keys=False, Dumper=yaml.CSafeDumper), "utf-8")
        tmp.replace(path)
    return path
