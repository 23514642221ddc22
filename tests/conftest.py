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
