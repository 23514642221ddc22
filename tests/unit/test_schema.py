"""The committed JSON Schema for editors matches the models."""

import json
from pathlib import Path

from coolie_core.models import Catalog

SCHEMA = Path(__file__).parents[2] / "docs" / "catalog.schema.json"


def test_committed_schema_is_current() -> None:
    """docs/catalog.schema.json is what `coolie schema` prints (regenerate it after model changes)."""
    assert json.loads(SCHEMA.read_text()) == Catalog.model_json_schema(), (
        "run: coolie schema > docs/catalog.schema.json"
    )


def test_schema_carries_field_descriptions() -> None:
    """Attribute docstrings become descriptions editors show on hover."""
    dataflow = Catalog.model_json_schema()["$defs"]["Dataflow"]["properties"]
    assert "watermark" in dataflow["watermark_columns"]["description"]
