"""``CoolieResource``: the one door from Dagster ops into ``coolie_core``.

It loads the catalog once per process (re-loading only when a catalog file changes) and hands
each run a :class:`~coolie_core.driver.Driver` stamped with the Dagster run id. Retries are off in
that Driver: Dagster's ``RetryPolicy`` (built from the same catalog) re-runs the op, and stacking
both loops would square the attempts.

Catalogs with Spark dataflows also get ``pyspark`` (:func:`build_spark_resource`): Spark assets
ask for it and hand its session to coolie's Spark engine — one session per process.
"""

import threading
from pathlib import Path
from typing import Any

import dagster as dg

from coolie_core.catalog import CATALOG_SUFFIXES, LoadedCatalog, load_catalog
from coolie_core.driver import Driver

__all__ = [
    "SPARK_RESOURCE_KEY",
    "CoolieResource",
    "build_spark_resource",
    "load_catalog_cached",
    "uses_spark",
]

SPARK_RESOURCE_KEY = "pyspark"
"""Resource key of the Spark session resource (present only when the catalog has Spark dataflows)."""

_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...], LoadedCatalog]] = {}
_CACHE_LOCK = threading.Lock()


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, mtime and size of every catalog file: a changed file means a reload."""
    files = (
        sorted(
            p
            for p in path.rglob("*")
            if p.suffix in CATALOG_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if path.is_dir()
        else [path]
    )
    stats = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:  # vanished between listing and stat: load_catalog reports it properly
            continue
        stats.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(stats)


def load_catalog_cached(path: str | Path) -> LoadedCatalog:
    """Load (and validate) a catalog once per process; reload when one of its files changes.

    >>> load_catalog_cached("examples/demo/catalog.yaml") is load_catalog_cached("examples/demo/catalog.yaml")
    True
    """
    resolved = Path(path).expanduser().resolve()
    fingerprint = _fingerprint(resolved)
    with _CACHE_LOCK:
        cached = _CACHE.get(resolved)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
    loaded = load_catalog(resolved)
    with _CACHE_LOCK:
        _CACHE[resolved] = (fingerprint, loaded)
    return loaded


class CoolieResource(dg.ConfigurableResource["CoolieResource"]):
    """Runs catalog dataflows for Dagster assets.

    Attributes:
        catalog_path: the catalog file or folder (the same one the definitions were built from).
        state_dir: where coolie keeps run records and non-Delta watermarks (default ``.coolie``
            beside the catalog).
    """

    catalog_path: str
    state_dir: str | None = None

    def load_catalog(self) -> LoadedCatalog:
        """The validated catalog, loaded once per process."""
        return load_catalog_cached(self.catalog_path)

    def get_driver(self, *, run_id: str) -> Driver:
        """A Driver for one Dagster run: records and commits carry ``run_id``; no inner retries."""
        return Driver(self.load_catalog(), state_dir=self.state_dir, run_id=run_id, retries=False)


def uses_spark(loaded: LoadedCatalog) -> bool:
    """Whether any enabled dataflow of the catalog runs on the Spark engine."""
    catalog = loaded.catalog
    return any(catalog.engine_for(flow) == "spark" for flow in catalog.dataflows if flow.enabled)


def build_spark_resource(spark_config: dict[str, str] | None = None) -> Any:
    """``dagster_pyspark.LazyPySparkResource`` with coolie's Spark settings: the session starts when
    the first Spark dataflow runs and is shared by every op of the process.

    ``spark.master`` comes from ``$COOLIE_SPARK_MASTER`` (default ``local[2]``): point it at a
    cluster (``spark://host:7077``, ``yarn``, ``k8s://...``) to run there; ``spark_config`` adds or
    overrides settings. Importing pyspark is deferred to this call.
    """
    from dagster_pyspark import LazyPySparkResource

    from coolie_core.engines.spark import spark_config as coolie_spark_config

    return LazyPySparkResource(spark_config={**coolie_spark_config(), **(spark_config or {})})
