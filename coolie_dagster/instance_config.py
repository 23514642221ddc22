"""The Dagster instance config for a catalog: ``dagster.yaml`` plus the catalog's run limits.

Dagster reads run-queue limits only from the instance's ``dagster.yaml``, not from a code
location, so a stage's ``max_concurrent_runs`` becomes a tag concurrency limit on the
``coolie/stage`` run tag (which every stage job and schedule run carries) in a generated config:

    python -m coolie_dagster.instance_config CATALOG --base dagster.yaml > $DAGSTER_HOME/dagster.yaml

``make demo`` and ``make dev`` do this for the demo catalog.

The storage of ``dagster.yaml`` is :class:`EnvironmentStorage`: PostgreSQL when
``$DAGSTER_PG_HOST`` is set (the other ``DAGSTER_PG_*`` variables give port, user, password and
database), else SQLite files under ``$DAGSTER_HOME``. One file serves a laptop and production.
"""

import argparse
import copy
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster._config import Field, StringSource
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log import EventLogStorage
from dagster._core.storage.runs import RunStorage
from dagster._core.storage.schedules import ScheduleStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_dagster.tags import STAGE_TAG

__all__ = ["PG_ENV", "EnvironmentStorage", "build_instance_config", "postgres_url_from_env"]

PG_ENV = {
    "host": "DAGSTER_PG_HOST",
    "port": "DAGSTER_PG_PORT",
    "username": "DAGSTER_PG_USERNAME",
    "password": "DAGSTER_PG_PASSWORD",
    "db_name": "DAGSTER_PG_DB",
}
"""The environment variables that switch the instance to PostgreSQL (``host`` is the switch)."""


def postgres_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The instance's PostgreSQL URL from the ``DAGSTER_PG_*`` variables; None without a host.

    Port defaults to 5432 and database to ``dagster``; user and password are required. The driver
    is psycopg2 (installed with dagster-postgres).

    >>> postgres_url_from_env({"DAGSTER_PG_HOST": "db", "DAGSTER_PG_USERNAME": "d", "DAGSTER_PG_PASSWORD": "p@ss"})
    'postgresql+psycopg2://d:p%40ss@db:5432/dagster'
    """
    from urllib.parse import quote

    env = os.environ if environ is None else environ
    host = env.get(PG_ENV["host"], "").strip()
    if not host:
        return None
    missing = [PG_ENV[k] for k in ("username", "password") if not env.get(PG_ENV[k])]
    if missing:
        raise ValueError(
            f"dagster.yaml: {PG_ENV['host']} is set, so the instance uses PostgreSQL, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"
        )
    port = env.get(PG_ENV["port"], "").strip() or "5432"
    if not port.isdigit():
        raise ValueError(f"dagster.yaml: {PG_ENV['port']} must be a port number, got {port!r}")
    user = quote(env[PG_ENV["username"]], safe="")
    password = quote(env[PG_ENV["password"]], safe="")
    db_name = quote(env.get(PG_ENV["db_name"], "").strip() or "dagster", safe="")
    # psycopg2 named explicitly: SQLAlchemy 2.1 made psycopg 3 the default driver of
    # ``postgresql://``, and dagster-postgres' webserver statement-timeout hook (``with conn:``)
    # closes a psycopg 3 connection, so every webserver query failed with "the connection is closed".
    return f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{db_name}"


class EnvironmentStorage(DagsterStorage, ConfigurableClass):
    """Dagster's run, event and schedule storage, chosen by the environment of each process.

    PostgreSQL (``dagster-postgres``) when ``$DAGSTER_PG_HOST`` is set, else SQLite under
    ``base_dir``. The webserver, the daemon, the code server and every run worker read the same
    ``dagster.yaml``, so they agree as long as they share the environment. ``dagster.yaml``::

        storage:
          custom:
            module: coolie_dagster.instance_config
            class: EnvironmentStorage
            config:
              base_dir: {env: DAGSTER_HOME}
    """

    def __init__(self, delegate: DagsterStorage, inst_data: ConfigurableClassData | None = None) -> None:
        self._delegate = delegate
        self._inst_data = inst_data
        super().__init__()  # type: ignore[no-untyped-call] # dagster's base __init__ is unannotated

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @property
    def delegate(self) -> DagsterStorage:
        """The storage in use: ``DagsterPostgresStorage`` or ``DagsterSqliteStorage``."""
        return self._delegate

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"base_dir": Field(StringSource, description="SQLite folder when Postgres is not configured.")}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "EnvironmentStorage":
        url = postgres_url_from_env()
        delegate: DagsterStorage
        if url is None:
            delegate = DagsterSqliteStorage.from_local(base_dir=str(config_value["base_dir"]))
        else:
            # Imported only when used: a SQLite instance works without dagster-postgres.
            from dagster_postgres import DagsterPostgresStorage

            delegate = DagsterPostgresStorage(postgres_url=url)
        return cls(delegate, inst_data=inst_data)

    @property
    def event_log_storage(self) -> EventLogStorage:
        return self._delegate.event_log_storage

    @property
    def run_storage(self) -> RunStorage:
        return self._delegate.run_storage

    @property
    def schedule_storage(self) -> ScheduleStorage:
        return self._delegate.schedule_storage


def build_instance_config(loaded: LoadedCatalog, base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with one ``coolie/stage`` tag concurrency limit per stage that sets one.

    Limits already in ``base`` for the same stage are replaced; others are kept.
    """
    config = copy.deepcopy(dict(base))
    runs = config.setdefault("concurrency", {}).setdefault("runs", {})
    limits = [
        limit
        for limit in runs.get("tag_concurrency_limits", [])
        if not (limit.get("key") == STAGE_TAG and limit.get("value") in loaded.catalog.stages)
    ]
    for stage, spec in sorted(loaded.catalog.stages.items()):
        if spec.max_concurrent_runs is not None:
            limits.append({"key": STAGE_TAG, "value": stage, "limit": spec.max_concurrent_runs})
    runs["tag_concurrency_limits"] = limits
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print dagster.yaml with the catalog's run limits.")
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--base", type=Path, default=Path("dagster.yaml"))
    args = parser.parse_args(argv)
    base = yaml.safe_load(args.base.read_text()) or {}
    config = build_instance_config(load_catalog(args.catalog), base)
    header = f"# Generated from {args.base} and {args.catalog} by coolie_dagster.instance_config.\n"
    sys.stdout.write(header + yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
