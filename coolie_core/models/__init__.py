"""The catalog schema: connections and dataflows, validated by pydantic.

Every model is frozen and rejects unknown keys, so a typo in a catalog is an error, never a
silently ignored setting. Attribute docstrings become the descriptions of the JSON Schema that
``coolie schema`` prints for editors.
"""

from coolie_core.models._base import (
    NAME_PATTERN,
    DurationSpec,
    LoadStrategy,
    LookbackSpec,
    PartitionSpec,
    RetrySpec,
)
from coolie_core.models.checks import (
    AcceptedValuesCheck,
    CheckSpec,
    FreshnessCheck,
    NotNullCheck,
    RowCountCheck,
    UniqueCheck,
)
from coolie_core.models.connections import (
    Connection,
    DeltaConnection,
    FilesConnection,
    PythonConnection,
    SqlConnection,
)
from coolie_core.models.dataflow import Catalog, CatalogDefaults, Dataflow, StageSpec
from coolie_core.models.destination import CdcSpec, DestinationSpec, ScdSpec
from coolie_core.models.quality import (
    AcceptedValuesRule,
    ExpressionRule,
    NotNullRule,
    QuarantineRule,
    QuarantineSpec,
    SchemaDrift,
)
from coolie_core.models.sources import DeltaSource, FileSource, PythonSource, SourceSpec, SqlSource
from coolie_core.models.transforms import (
    AggregateTransform,
    CastTransform,
    DedupTransform,
    DeriveTransform,
    DropTransform,
    FilterTransform,
    HashTransform,
    MaskTransform,
    RenameTransform,
    SelectTransform,
    Transform,
)

__all__ = [
    "NAME_PATTERN",
    "AcceptedValuesCheck",
    "AcceptedValuesRule",
    "AggregateTransform",
    "CastTransform",
    "Catalog",
    "CatalogDefaults",
    "CdcSpec",
    "CheckSpec",
    "Connection",
    "Dataflow",
    "DedupTransform",
    "DeltaConnection",
    "DeltaSource",
    "DeriveTransform",
    "DestinationSpec",
    "DropTransform",
    "DurationSpec",
    "ExpressionRule",
    "FileSource",
    "FilesConnection",
    "FilterTransform",
    "FreshnessCheck",
    "HashTransform",
    "LoadStrategy",
    "LookbackSpec",
    "MaskTransform",
    "NotNullCheck",
    "NotNullRule",
    "PartitionSpec",
    "PythonConnection",
    "PythonSource",
    "QuarantineRule",
    "QuarantineSpec",
    "RenameTransform",
    "RetrySpec",
    "RowCountCheck",
    "ScdSpec",
    "SchemaDrift",
    "SelectTransform",
    "SourceSpec",
    "SqlConnection",
    "SqlSource",
    "StageSpec",
    "Transform",
    "UniqueCheck",
]
