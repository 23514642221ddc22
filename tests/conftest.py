"""Fixtures shared by the integration and end-to-end tests."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from coolie_core.catalog import LoadedCatalog, load_catalog

WriteCatalog = Callable[..., LoadedCatalog]


@pytest.fixture
def write_catalog(tmp_path: Path) -> WriteCatalog:
    """Write a catalog document as YAML into ``tmp_path`` and load it.

    ``write_catalog(document, name="catalog.yaml")`` returns the validated ``LoadedCatalog``;
    writing the same name again replaces the file (a catalog edited between runs).
    """

    def write(document: dict[str, Any], *, name: str = "catalog.yaml") -> LoadedCatalog:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return load_catalog(path)

    return write


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the group markers into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long work first, and every Spark test on one xdist worker (``make test``: ``--dist loadgroup``).

    The Spark tests share one standalone cluster per worker process: grouping them starts it once
    and keeps two clusters from competing for the machine's cores. Sending that group and the
    fault-injection trials out first lets the short tests fill the other worker, instead of one
    long test finishing alone at the end.
    """
    spark_dir = Path(__file__).parent / "spark"

    def rank(item: pytest.Item) -> int:
        if spark_dir in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.xdist_group("spark"))
            return 0
        return 1 if item.get_closest_marker("faults") or item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: a module's tests keep their order
