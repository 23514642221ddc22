"""The Dagster instance config for a catalog: ``dagster.yaml`` plus the catalog's run limits.

Dagster reads run-queue limits only from the instance's ``dagster.yaml``, not from a code
location, so a stage's ``max_concurrent_runs`` becomes a tag concurrency limit on the
``coolie/stage`` run tag (which every stage job and schedule run carries) in a generated config:

    python -m coolie_dagster.instance_config CATALOG --base dagster.yaml > $DAGSTER_HOME/dagster.yaml

``make demo`` and ``make dev`` do this for the demo catalog.
"""

import argparse
import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_dagster.tags import STAGE_TAG

__all__ = ["build_instance_config"]


def build_instance_config(loaded: LoadedCatalog, base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with one ``coolie/stage`` tag concurrency limit per stage that sets one.

    Limits already in ``base`` for the same stage are replaced; others are kept.
    """
    config = copy.deepcopy(dict(base))
    runs = config.setdefault("concurrency", {}).setdefault("runs", {})
    limits = [
        limit
        for limit in runs.get("tag_concurrency_limits", [])
        if not (limit.get("key") == STAGE_TAG and limit.get("value") in loaded.catalog.stages)
    ]
    for stage, spec in sorted(loaded.catalog.stages.items()):
        if spec.max_concurrent_runs is not None:
            limits.append({"key": STAGE_TAG, "value": stage, "limit": spec.max_concurrent_runs})
    runs["tag_concurrency_limits"] = limits
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print dagster.yaml with the catalog's run limits.")
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--base", type=Path, default=Path("dagster.yaml"))
    args = parser.parse_args(argv)
    base = yaml.safe_load(args.base.read_text()) or {}
    config = build_instance_config(load_catalog(args.catalog), base)
    header = f"# Generated from {args.base} and {args.catalog} by coolie_dagster.instance_config.\n"
    sys.stdout.write(header + yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
