"""The catalog's SQL expressions (derive, filter, aggregate, quarantine rules, source filters) as
polars expressions: every reader and the driver-side steps of both engines parse them here.

>>> sql_expr("amount > 0", where="example").meta.root_names()
['amount']
"""

import polars as pl

from coolie_core.errors import DataError

__all__ = ["sql_expr"]


def sql_expr(text: str, *, where: str) -> pl.Expr:
    """Parse a SQL expression; a syntax error becomes a DataError naming ``where``."""
    try:
        return pl.sql_expr(text)
    except Exception as exc:  # polars raises several error types for SQL parsing
        raise DataError(f"{where}: cannot parse SQL expression {text!r}: {exc}") from exc
