"""Connections: where data lives (files, Delta roots, SQL databases, python code)."""

import re
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from coolie_core.models._base import _Model

_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


class _StorageConnection(_Model):
    """A folder on disk or a prefix in an object store (``s3://``, ``az://``, ``abfss://``, ``gs://``)."""

    storage_options: dict[str, str] = Field(default_factory=dict)
    """Object-store options for polars, delta-rs and coolie alike (object_store keys such as
    ``aws_endpoint_url``, ``aws_region``, ``azure_storage_account_name``). Usually unneeded: each
    cloud's standard environment variables apply. Credentials only as ``${ENV}`` references."""

    @field_validator("path", check_fields=False)
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        # Imported here: the storage package imports the models.
        from coolie_core.storage.uris import CLOUD_SCHEMES

        match = _URI_SCHEME.match(value)
        if match and match.group(1).lower() not in CLOUD_SCHEMES | {"file"}:
            raise ValueError(
                f"unsupported storage scheme '{match.group(1)}://' in {value!r}; "
                "use s3://, az://, abfss://, gs:// or a local path"
            )
        return value

    @field_validator("storage_options")
    @classmethod
    def _secrets_by_reference(cls, value: dict[str, str]) -> dict[str, str]:
        from coolie_core.storage.options import check_option_values

        check_option_values(value)
        return value


class FilesConnection(_StorageConnection):
    """A folder of data files (parquet, csv, json, jsonl), local or in an object store."""

    kind: Literal["files"]
    path: str
    """Base folder or URI (``s3://bucket/prefix``...). Relative paths resolve against the catalog
    file's folder; ``${VAR}`` and ``${VAR:-default}`` are expanded from the environment."""


class DeltaConnection(_StorageConnection):
    """A root folder (local or an object-store URI) holding Delta tables."""

    kind: Literal["delta"]
    path: str
    """Root folder or URI of the tables (relative to the catalog file; ``${VAR}`` expanded)."""


class SqlConnection(_Model):
    """A SQL database reached by a SQLAlchemy URL (SQLite works out of the box)."""

    kind: Literal["sql"]
    url: str
    """SQLAlchemy URL. Put secrets in environment variables: ``postgresql://etl:${PG_PASSWORD}@db/x``.
    References are expanded only when connecting and never logged. A value substituted into the
    user or password may hold any character (it is URL-quoted; do not pre-encode it); a whole URL
    given by reference (``${DB_URL}``) is used as given, percent-encoded by you."""

    @field_validator("url")
    @classmethod
    def _no_inline_password(cls, value: str) -> str:
        match = re.match(r"^[a-z0-9+]+://[^:/@]+:([^@]+)@", value)
        if match and not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", match.group(1)):
            raise ValueError(
                "the URL holds a literal password; reference an environment variable instead, "
                "e.g. postgresql://user:${PG_PASSWORD}@host/db"
            )
        return value


class PythonConnection(_Model):
    """Python code that produces data: a module importable by dotted name or a ``.py`` file."""

    kind: Literal["python"]
    module: str | None = None
    """Dotted module name, e.g. ``mypkg.sources``."""
    path: str | None = None
    """A ``.py`` file, relative to the catalog file."""

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.module is None) == (self.path is None):
            raise ValueError("give exactly one of module or path")
        return self


Connection = Annotated[
    FilesConnection | DeltaConnection | SqlConnection | PythonConnection,
    Field(discriminator="kind"),
]
