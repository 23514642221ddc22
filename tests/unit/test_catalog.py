"""Catalog loading and validation: every problem reported, with file, line, dataflow and field."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.errors import CatalogError, CatalogIssue

DEMO = Path(__file__).parents[2] / "examples" / "demo" / "catalog.yaml"


def flow(name: str, *, src: str = "raw/x", dest: str | None = None, **extra: Any) -> dict[str, Any]:
    source = (
        {"format": "delta", "connection": "lake", "table": src.removeprefix("lake/")}
        if src.startswith("lake/")
        else {"format": "csv", "connection": "raw", "path": src.removeprefix("raw/") + "/*.csv"}
    )
    return {
        "name": name,
        "source": source,
        "destination": {"connection": "lake", "table": dest or name},
        **extra,
    }


def write(tmp_path: Path, dataflows: list[dict[str, Any]], name: str = "catalog.yaml", **top: Any) -> Path:
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": dataflows,
        **top,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def issues_of(path: Path) -> list[CatalogIssue]:
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    return info.value.issues


def test_demo_catalog_is_valid() -> None:
    """The shipped demo catalog loads: 9 dataflows over bronze, silver and gold."""
    loaded = load_catalog(DEMO)
    assert len(loaded.catalog.dataflows) >= 8
    assert {f.stage for f in loaded.catalog.dataflows} == {"bronze", "silver", "gold"}
    assert {f.load for f in loaded.catalog.dataflows} == {
        "append",
        "overwrite",
        "merge",
        "replace_window",
        "scd2",
    }
    assert any(f.watermark_columns for f in loaded.catalog.dataflows)
    assert any(f.partitions for f in loaded.catalog.dataflows)


def test_three_mistakes_in_three_dataflows_are_all_reported(tmp_path: Path) -> None:
    """Validation does not stop at the first problem: each names file, line, dataflow and field."""
    path = write(
        tmp_path,
        [
            flow("orders_daily", destination=None)
            | {"destination": {"connection": "lake", "table": "o", "load": "merge"}},
            flow("customers") | {"schedul": "0 * * * *"},
            flow("payments", retry={"count": -1}),
        ],
    )
    found = issues_of(path)
    assert [(i.dataflow, i.field) for i in found] == [
        ("orders_daily", "destination.merge_keys"),
        ("customers", "schedul"),
        ("payments", "retry.count"),
    ]
    assert found[0].message == "required for load merge"
    assert all(i.file == str(path) and i.line is not None for i in found)
    assert found[0].render().startswith(f"{path}:")


@pytest.mark.parametrize(
    ("mutation", "field", "fragment"),
    [
        (
            {"destination": {"connection": "lake", "table": "t", "load": "replace_window"}},
            "partitions",
            "required",
        ),
        (
            {"destination": {"connection": "nope", "table": "t"}},
            "destination.connection",
            "unknown connection",
        ),
        (
            {"source": {"format": "delta", "connection": "raw", "table": "t"}},
            "source.connection",
            "needs a delta connection",
        ),
        (
            {"source": {"format": "csv", "connection": "raw", "path": "../../etc/*.csv"}},
            "source.path",
            "escapes",
        ),
        ({"destination": {"connection": "lake", "table": "/etc/passwd"}}, "destination.table", "escapes"),
        ({"name": "Bad-Name"}, "name", "pattern"),
        ({"schedule": "every day"}, "schedule", "cron"),
        ({"lookback": {"days": 1}}, "watermark_columns", "lookback"),
        (
            {"partitions": {"column": "d", "every": "fortnight", "start": "2024-01-01"}},
            "partitions.every",
            "Input should be",
        ),
        (
            {"partitions": {"column": "d", "every": "month", "start": "2024-01-01", "timezone": "Mars/Base"}},
            "partitions.timezone",
            "unknown timezone",
        ),
        (
            {"transforms": [{"kind": "cast", "columns": {"x": "int"}}]},
            "transforms[0].columns",
            "unknown type",
        ),
        ({"transforms": [{"kind": "explode"}]}, "transforms[0]", "kind"),
        ({"owners": ["bob"]}, "owners", "team:name"),
        ({"group": True}, "group", ""),
    ],
)
def test_field_errors_name_the_field(
    tmp_path: Path, mutation: dict[str, Any], field: str, fragment: str
) -> None:
    """Each rule violation is reported at the field a user must fix."""
    path = write(tmp_path, [flow("a") | mutation])
    found = issues_of(path)
    assert any(i.field.startswith(field) and fragment in i.message for i in found), [
        i.render() for i in found
    ]


def test_unknown_top_level_key_and_bad_yaml(tmp_path: Path) -> None:
    """Typos at the top level and syntax errors are reported with the file and line."""
    path = write(tmp_path, [flow("a")], conections={})
    assert [i.field for i in issues_of(path)] == ["conections"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataflows:\n  - name: a\n    source: {format: csv\n")
    (issue,) = issues_of(broken)
    assert "invalid YAML" in issue.message
    assert issue.line is not None


def test_json_catalog_and_relative_paths(tmp_path: Path) -> None:
    """A JSON catalog loads like YAML; relative paths resolve against the catalog's folder."""
    import json

    sub = tmp_path / "conf"
    sub.mkdir()
    doc = {
        "connections": {
            "raw": {"kind": "files", "path": "../data"},
            "lake": {"kind": "delta", "path": "${LAKE_ROOT_UNSET:-lake}"},
        },
        "dataflows": [flow("a")],
    }
    (sub / "c.json").write_text(json.dumps(doc))
    catalog = load_catalog(sub / "c.json").catalog
    assert catalog.connections["raw"].path == str(tmp_path / "data")  # type: ignore[union-attr]
    assert catalog.connections["lake"].path == str(sub / "lake")  # type: ignore[union-attr]


def test_folder_of_files_merges_and_rejects_duplicates(tmp_path: Path) -> None:
    """A folder is one catalog; a dataflow name used in two files is an error naming both."""
    write(tmp_path, [flow("a")], name="one.yaml")
    (tmp_path / "two.yaml").write_text(yaml.safe_dump({"dataflows": [flow("b", src="lake/a")]}))
    loaded = load_catalog(tmp_path)
    assert loaded.order() == ["a", "b"]
    assert loaded.origins["b"] == str(tmp_path / "two.yaml")
    (tmp_path / "three.yaml").write_text(yaml.safe_dump({"dataflows": [flow("a", dest="other")]}))
    (issue,) = issues_of(tmp_path)
    assert issue.dataflow == "a"
    assert "one.yaml" in issue.message
    assert issue.file == str(tmp_path / "three.yaml")


def test_declared_stages_guard_typos(tmp_path: Path) -> None:
    """When stages are declared, a dataflow in an undeclared stage is an error."""
    path = write(tmp_path, [flow("a", stage="bronz")], stages={"bronze": {}})
    (issue,) = issues_of(path)
    assert (issue.dataflow, issue.field) == ("a", "stage")


def test_literal_password_in_sql_url_is_rejected(tmp_path: Path) -> None:
    """Secrets belong in environment variables, never in the catalog."""
    path = write(tmp_path, [flow("a")])
    doc = yaml.safe_load(path.read_text())
    doc["connections"]["db"] = {"kind": "sql", "url": "postgresql://etl:hunter2@db/x"}
    path.write_text(yaml.safe_dump(doc))
    (issue,) = issues_of(path)
    assert issue.field.startswith("connections.db")
    assert "hunter2" not in issue.render()
    doc["connections"]["db"]["url"] = "postgresql://etl:${PG_PASSWORD}@db/x"
    path.write_text(yaml.safe_dump(doc))
    load_catalog(path)


def test_diamond_orders_upstream_first(tmp_path: Path) -> None:
    """B and C read A; D reads B and C: A first, D last, ties by name."""
    path = write(
        tmp_path,
        [
            flow("d", src="lake/b", depends_on=["c"]),
            flow("c", src="lake/a"),
            flow("b", src="lake/a"),
            flow("a"),
        ],
    )
    loaded = load_catalog(path)
    assert loaded.order() == ["a", "b", "c", "d"]
    assert loaded.lineage.upstream["d"] == {"b", "c"}
    assert loaded.lineage.descendants("a") == {"b", "c", "d"}


@pytest.mark.parametrize(
    ("flows", "names", "fragment"),
    [
        ([flow("a", src="lake/b"), flow("b", src="lake/a")], {"a", "b"}, "cycle: a -> b -> a"),
        ([flow("a", dest="t"), flow("b", dest="t")], {"b"}, "dataflow a also writes"),
        ([flow("a", src="lake/a")], {"a"}, "reads its own destination"),
        ([flow("a", depends_on=["ghost"])], {"a"}, "'ghost' is not in the catalog"),
    ],
    ids=["cycle", "two-producers", "self-read", "missing-upstream"],
)
def test_graph_errors_name_the_dataflows(
    tmp_path: Path, flows: list[dict[str, Any]], names: set[str], fragment: str
) -> None:
    """Cycles, two producers of one table, self-reads and unknown upstreams are catalog errors."""
    found = issues_of(write(tmp_path, flows))
    assert any(fragment in i.message for i in found), [i.render() for i in found]
    assert {i.dataflow for i in found} <= names | {None}
    assert any(i.dataflow in names for i in found)


def test_loading_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    """The loader pauses Python's cyclic collector while it parses (a speed measure): it is running
    again after a load and after a refused catalog, and stays paused if the caller paused it."""
    import gc

    good = write(tmp_path, [flow("a")])
    bad = write(tmp_path, [flow("a", schedule="often")], name="bad.yaml")
    assert gc.isenabled()
    load_catalog(good)
    assert gc.isenabled()
    with pytest.raises(CatalogError):
        load_catalog(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        load_catalog(good)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_repeated_paths_resolve_the_same_and_escapes_are_refused_every_time(tmp_path: Path) -> None:
    """Path resolution is cached per distinct path: a second catalog with the same paths gets the
    same locations, and an escaping path is refused each time it is loaded (errors never cached)."""
    path = write(tmp_path, [flow("a"), flow("b", src="lake/a")])
    first, second = load_catalog(path), load_catalog(path)
    assert first.lineage.upstream == second.lineage.upstream == {"a": frozenset(), "b": frozenset({"a"})}
    escaping = write(tmp_path, [flow("a", dest="../outside")], name="escape.yaml")
    for _ in range(2):
        with pytest.raises(CatalogError, match=r"a\.destination\.table: .*escapes"):
            load_catalog(escaping)


def test_a_dumped_catalog_loads_again(tmp_path: Path) -> None:
    """Every default spelled out (as ``model_dump`` writes it) is a valid catalog: e.g. the
    landing-zone options at their defaults on a source that is no landing zone."""
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo" / "catalog.yaml"
    document = load_catalog(demo).catalog.model_dump(mode="json", exclude_none=True)
    again = tmp_path / "catalog.yaml"
    again.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    assert load_catalog(again).catalog == load_catalog(demo).catalog
