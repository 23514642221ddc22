"""Every source format, transform, window and watermark filter: the Spark engine reads exactly the
rows (values, types and order) the Polars engine reads — and fails the same way on bad input."""

import datetime as dt
import decimal
import hashlib
import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import write_deltalake
from polars.testing import assert_frame_equal

from coolie_core.catalog import LoadedCatalog
from coolie_core.engines import engine_by_name
from coolie_core.errors import DataError, SourceError
from coolie_core.models import LookbackSpec
from coolie_core.windows import Window

pytestmark = pytest.mark.spark

UTC = dt.UTC
CSV = textwrap.dedent(
    '''\
    id,name,amount,flag,day,ts,ts_off,small,price,note
    1,"Alice, A.",1.5,yes,03/01/2024,2024-01-03 10:00:00,2024-01-03T10:00:00+02:00,7,12.345,"two
    lines"
    2,"",2.25, N ,4/1/2024,2024-01-04 11:30:00,2024-01-04T11:30:00+0000,255,0.5,
    3,,-3.0,1,05/01/2024,2024-01-05 00:00:01,2024-01-05T23:59:59-05:00,0,-7.125,"say ""hi"""
    4,Dan,,false,,,,,,
    '''
)


def _sources(root: Path) -> None:
    raw = root / "raw"
    (raw / "csv").mkdir(parents=True)
    (raw / "csv" / "events.csv").write_text(CSV, encoding="utf-8")
    (raw / "semi").mkdir()
    (raw / "semi" / "rows.csv").write_text("k;v\na;1\nb;2\n", encoding="utf-8")
    typed = pl.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "i": pl.Series([1, None, -3, 4, 5, 6], dtype=pl.Int32),
            "u": pl.Series([1, 2, None, 4, 5, 200], dtype=pl.UInt8),
            "f": [0.1, 1e20, None, 123456789.0, 1.5e-7, -0.0],
            "s": ["a", None, "", "ünï", "a\x1fb", "x"],
            "t": [dt.datetime(2024, 1, 1, 2, 3, 4, 500, tzinfo=UTC), None, dt.datetime(2024, 2, 1, tzinfo=UTC)] * 2,
            "n": [dt.datetime(2024, 1, 1, 2, 3, 4), None, dt.datetime(2024, 3, 1, 12)] * 2,
            "d": [dt.date(2024, 1, 1), dt.date(2024, 1, 31), None, dt.date(2024, 2, 1), dt.date(2024, 2, 29), dt.date(2024, 3, 1)],
            "dec": pl.Series(["1.50", "-0.05", None, "0.00", "10.10", "3.33"]).cast(pl.Decimal(12, 2)),
            "b": [True, False, None, True, True, False],
            "k": ["x", "y", "x", "y", "x", None],
            "v": [3, 1, 3, None, 2, 5],
        }
    )  # fmt: skip
    (raw / "typed").mkdir()
    typed.head(3).write_parquet(raw / "typed" / "part-1.parquet")
    typed.tail(3).write_parquet(raw / "typed" / "part-2.parquet")
    (raw / "jsonl").mkdir()
    nested = [
        {"id": i, "meta": {"tag": f"t{i % 2}", "n": i}, "ts": f"2024-01-0{i}T00:00:00Z"} for i in range(1, 6)
    ]
    (raw / "jsonl" / "a.jsonl").write_text("\n".join(json.dumps(r) for r in nested) + "\n", encoding="utf-8")
    (raw / "json").mkdir()
    (raw / "json" / "a.json").write_text(
        json.dumps([{"id": 1, "x": "p"}, {"id": 2, "y": 2.5}]), encoding="utf-8"
    )
    partitioned = typed.select("id", "k", "d", "dec", "t").with_columns(pl.col("k").fill_null("a b%c"))
    write_deltalake(str(root / "lake" / "parts"), partitioned.head(4).to_arrow(), partition_by=["k", "d"])
    write_deltalake(
        str(root / "lake" / "parts"), partitioned.tail(2).to_arrow(), mode="append", partition_by=["k", "d"]
    )
    write_deltalake(str(root / "lake" / "empty"), typed.head(0).select("id", "v").to_arrow())
    with sqlite3.connect(root / "erp.sqlite") as conn:
        conn.execute("CREATE TABLE pay (pid INTEGER PRIMARY KEY, amount REAL, at TEXT)")
        conn.executemany(
            "INSERT INTO pay VALUES (?, ?, ?)", [(i, i * 1.25, f"2024-01-0{i}T00:00:00") for i in range(1, 8)]
        )
    conn.close()
    (root / "code.py").write_text(
        textwrap.dedent(
            """\
            import polars as pl

            def rows(watermark=None, window=None):
                frame = pl.DataFrame({"n": list(range(10)), "sq": [i * i for i in range(10)]})
                low = (watermark or {}).get("n", -1)
                return frame.filter(pl.col("n") > low)
            """
        ),
        encoding="utf-8",
    )


def _flow(name: str, source: dict[str, Any], *transforms: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": source,
        "transforms": list(transforms),
        "destination": {"connection": "lake", "table": f"out/{name}", "load": "append"},
        **extra,
    }


def _files(path: str, fmt: str, **extra: Any) -> dict[str, Any]:
    return {"format": fmt, "connection": "raw", "path": path, **extra}


CASTS = {
    "kind": "cast",
    "columns": {
        "day": "date", "ts": "datetime", "ts_off": "datetime", "flag": "boolean", "small": "uint8",
        "price": "decimal(10,3)", "amount": "float32", "id": "int16",
    },
    "formats": {"day": "%d/%m/%Y", "ts": "%Y-%m-%d %H:%M:%S", "ts_off": "%Y-%m-%dT%H:%M:%S%z"},
}  # fmt: skip
FLOWS = [
    _flow(
        "csv_casts",
        _files("csv/events.csv", "csv"),
        CASTS,
        {"kind": "rename", "columns": {"name": "customer"}},
        {
            "kind": "derive",
            "columns": {"total": "amount * 2", "size": "CASE WHEN small > 5 THEN 'big' ELSE 'small' END"},
        },
        {"kind": "filter", "condition": "id <> 4"},
    ),
    _flow("csv_options", _files("semi/*.csv", "csv", options={"separator": ";", "infer_schema_length": 10})),
    _flow(
        "hashes",
        _files("typed/*.parquet", "parquet", filter="id <> 6"),
        {"kind": "hash", "column": "key", "of": ["id", "i", "u", "f", "s", "t", "n", "d", "dec", "b"]},
        {"kind": "mask", "columns": ["s", "f"], "method": "hash"},
        {"kind": "mask", "columns": ["t", "k"], "method": "redact"},
        {"kind": "cast", "columns": {"f": "string", "n": "datetime", "d": "datetime", "i": "string"}},
    ),
    _flow(
        "dedup",
        _files("typed/*.parquet", "parquet"),
        {"kind": "select", "columns": ["id", "k", "v", "b"]},
        {"kind": "dedup", "keys": ["k"], "order_by": ["v"]},
        {"kind": "drop", "columns": ["b"]},
    ),
    _flow("dedup_ties", _files("typed/*.parquet", "parquet"), {"kind": "dedup", "keys": ["b"]}),
    _flow(
        "aggregate",
        _files("typed/*.parquet", "parquet"),
        {
            "kind": "aggregate",
            "by": ["k"],
            "columns": {"rows": "count(id)", "total": "sum(dec)", "top": "max(t)", "low": "min(v)"},
        },
    ),
    _flow(
        "nested",
        _files("jsonl/*.jsonl", "jsonl"),
        {"kind": "cast", "columns": {"ts": "datetime"}, "formats": {"ts": "%Y-%m-%dT%H:%M:%SZ"}},
    ),
    _flow("json_array", _files("json/*.json", "json")),
    _flow("delta_parts", {"format": "delta", "connection": "lake", "table": "parts", "filter": "id > 1"}),
    _flow("delta_empty", {"format": "delta", "connection": "lake", "table": "empty"}),
    _flow(
        "sql",
        {"format": "sql", "connection": "erp", "table": "pay", "filter": "pid <> 3"},
        {"kind": "cast", "columns": {"at": "datetime", "amount": "decimal(8,2)"}},
        watermark_columns=["pid"],
    ),
    _flow("python", {"format": "python", "connection": "code", "function": "rows"}, watermark_columns=["n"]),
    _flow(  # cast failures become rejects: the raw row as JSON, the rule and the reason
        "quarantined",
        _files("csv/events.csv", "csv"),
        {
            "kind": "cast",
            "columns": {"name": "int32", "day": "date", "amount": "decimal(4,1)"},
            "formats": {"day": "%d/%m/%Y"},
        },
        {"kind": "select", "columns": ["id", "name", "day", "amount"]},
        quarantine={"rules": [{"kind": "not_null", "columns": ["id"]}], "max_rejected": "100%"},
    ),
]
READS: list[tuple[str, dict[str, Any]]] = [
    *[(f["name"], {}) for f in FLOWS],
    (
        "hashes",
        {
            "window": Window(
                dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 1, tzinfo=UTC), every="month"
            )
        },
    ),
    (
        "delta_parts",
        {
            "window": Window(
                dt.datetime(2024, 1, 31, tzinfo=UTC), dt.datetime(2024, 3, 1, tzinfo=UTC), every="day"
            )
        },
    ),
    ("sql", {"watermark": {"pid": 4}}),
    ("python", {"watermark": {"n": 6}}),
    ("nested", {"watermark": {"ts": dt.datetime(2024, 1, 4, tzinfo=UTC)}}),
    ("nested", {"watermark": {"ts": dt.datetime(2024, 1, 4, tzinfo=UTC)}, "lookback": {"days": 2}}),
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedCatalog:
    from coolie_core.catalog import load_catalog

    root = tmp_path_factory.mktemp("parity")
    _sources(root)
    partitions = {
        "hashes": {"column": "n", "every": "month", "start": "2024-01-01"},
        "delta_parts": {"column": "d", "every": "month", "start": "2024-01-01", "timezone": "Europe/Berlin"},
    }
    flows = [
        {**f, **({"partitions": partitions[f["name"]]} if f["name"] in partitions else {})} for f in FLOWS
    ]
    document = {
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
            "erp": {"kind": "sql", "url": f"sqlite:///{root / 'erp.sqlite'}"},
            "code": {"kind": "python", "path": str(root / "code.py")},
        },
        "dataflows": flows,
    }
    (root / "catalog.json").write_text(json.dumps(document), encoding="utf-8")
    return load_catalog(root / "catalog.json")


@pytest.mark.parametrize(("name", "read"), READS, ids=[f"{n}-{'-'.join(r) or 'all'}" for n, r in READS])
def test_spark_reads_what_polars_reads(
    loaded: LoadedCatalog, spark: Any, name: str, read: dict[str, Any]
) -> None:
    catalog = loaded.catalog
    flow = catalog.dataflow(name)
    if "lookback" in read:
        flow = flow.model_copy(update={"lookback": LookbackSpec.model_validate(read["lookback"])})
    kwargs = {k: v for k, v in read.items() if k in ("window", "watermark")}
    expected = engine_by_name("polars").read_frame(catalog, flow, **kwargs)
    actual = engine_by_name("spark").read_frame(catalog, flow, **kwargs)
    assert expected.height > 0 or name == "delta_empty"
    assert actual.schema == expected.schema
    assert_frame_equal(actual, expected, check_exact=True)


def test_hash_matches_the_documented_bytes(loaded: LoadedCatalog, spark: Any) -> None:
    """Not only equal to polars: SHA-256 of the values' text, unit-separated, nulls as "\\x00"."""
    frame = engine_by_name("spark").read_frame(loaded.catalog, loaded.catalog.dataflow("hashes"))
    texts = {
        1: ["1", "1", "1", "0.1", "a", "2024-01-01 02:03:04.000500+00:00", "2024-01-01 02:03:04.000000",
            "2024-01-01", "1.50", "true"],
        2: ["2", "\x00", "2", "1e+20", "\x00", "\x00", "\x00", "2024-01-31", "-0.05", "false"],
    }  # fmt: skip
    keys = dict(frame.select("id", "key").iter_rows())
    for row, parts in texts.items():
        assert keys[row] == hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _broken(loaded: LoadedCatalog, name: str, **update: Any) -> Any:
    return loaded.catalog.dataflow(name).model_copy(update=update)


def test_a_bad_cast_fails_naming_column_and_value(loaded: LoadedCatalog, spark: Any) -> None:
    flow = _broken(
        loaded,
        "csv_casts",
        transforms=[
            loaded.catalog.dataflow("csv_casts")
            .transforms[0]
            .model_copy(update={"columns": {"name": "int32"}, "formats": {}})
        ],
    )
    with pytest.raises(DataError, match=r"csv_casts.*column name.*Alice, A\."):
        engine_by_name("spark").read_frame(loaded.catalog, flow)


def test_missing_columns_and_bad_options_fail_clearly(loaded: LoadedCatalog, spark: Any) -> None:
    catalog = loaded.catalog
    select = catalog.dataflow("dedup").transforms[0].model_copy(update={"columns": ["id", "nope"]})
    with pytest.raises(
        DataError, match=r"dedup\.transforms\[0\] \(select\): column\(s\) \['nope'\] not found"
    ):
        engine_by_name("spark").read_frame(catalog, _broken(loaded, "dedup", transforms=[select]))
    source = catalog.dataflow("csv_options").source.model_copy(update={"options": {"skip_rows": 1}})
    with pytest.raises(
        SourceError, match=r"csv_options: source.options.skip_rows is not supported by the Spark engine"
    ):
        engine_by_name("spark").read_frame(catalog, _broken(loaded, "csv_options", source=source))


def test_decimal_and_timestamp_values_round_trip(loaded: LoadedCatalog, spark: Any) -> None:
    frame = engine_by_name("spark").read_frame(loaded.catalog, loaded.catalog.dataflow("csv_casts"))
    assert frame["price"].to_list() == [
        decimal.Decimal("12.345"),
        decimal.Decimal("0.500"),
        decimal.Decimal("-7.125"),
    ]
    assert frame["ts_off"].to_list()[0] == dt.datetime(2024, 1, 3, 8, tzinfo=UTC)
