"""Connections: where data lives (files, Delta roots, SQL databases, python code)."""

import re
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from coolie_core.models._base import _Model


class FilesConnection(_Model):
    """A local folder of data files (parquet, csv, json, jsonl)."""

    kind: Literal["files"]
    path: str
    """Base folder. Relative paths resolve against the catalog file's folder; ``${VAR}`` and
    ``${VAR:-default}`` are expanded from the environment."""


class DeltaConnection(_Model):
    """A root folder holding Delta tables."""

    kind: Literal["delta"]
    path: str
    """Root folder of the tables (relative to the catalog file; ``${VAR}`` expanded)."""


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
