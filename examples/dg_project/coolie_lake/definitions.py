"""The code location ``dg`` (and ``dagster dev``) loads: every component under ``defs/``."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Everything declared in ``coolie_lake/defs`` (the ``lake`` coolie component)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
