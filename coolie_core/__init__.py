"""coolie's engine: the catalog, the runs, the engines (no Dagster import).

The errors a user's own code may raise or catch are importable from here, e.g. a python source
function raising ``coolie_core.PermanentSourceError`` for a failure retrying cannot fix.
"""

from coolie_core.errors import (
    CastError,
    CoolieError,
    DataError,
    PermanentSourceError,
    SourceError,
    TransientError,
)

__all__ = ["CastError", "CoolieError", "DataError", "PermanentSourceError", "SourceError", "TransientError"]
