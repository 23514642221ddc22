"""A python source for the demo: a date dimension covering the demo's order dates."""

import datetime as dt

import polars as pl


def date_dimension() -> pl.DataFrame:
    """One row per day of 2024 with calendar attributes."""
    days = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 12, 31), "1d", eager=True).alias("date")
    return pl.DataFrame(days).with_columns(
        pl.col("date").dt.year().alias("year"),
        pl.col("date").dt.quarter().alias("quarter"),
        pl.col("date").dt.month().alias("month"),
        pl.col("date").dt.week().alias("iso_week"),
        pl.col("date").dt.weekday().alias("weekday"),
        (pl.col("date").dt.weekday() >= 6).alias("is_weekend"),
    )
