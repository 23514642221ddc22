"""SIGKILL trials and commit conflicts on the S3 server, like tests/reliability/test_fault_injection.py.

The references (clean runs) are built on disk by the local suite's own machinery; each trial
uploads the reference's state before the batch to a fresh prefix of one bucket, disturbs a real
``coolie`` process whose catalog names ``s3://`` URIs, and requires the table on S3 to end exactly
as the clean run's: rows, watermark and batch numbers. The local and the S3 lake must agree.

``COOLIE_S3_FAULT_TRIALS`` (default 20) sets the trials per load strategy and for replay.
"""

import json
import math
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_core.storage import StorageLocation, delta_table_exists
from coolie_core.watermarks import BATCH_KEY, DATAFLOW_KEY, WINDOW_KEY, read_delta_watermark
from tests.reliability.conftest import canonical_rows
from tests.reliability.conftest import check_log as check_local_log
from tests.reliability.test_fault_injection import (
    FLOW,
    POINTS,
    SCENARIOS,
    SEED,
    STRATEGIES,
    References,
    ReplayReference,
    State,
    build_replay_reference,
    check_invariants,
    disturbed_run,
    finish,
    outcome_name,
    pick_disturbance,
    run_trials,
    start_cli,
    startup_seconds,  # noqa: F401 - a fixture this module uses
    wait_for,
)
from tests.storage.conftest import S3Server

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

TRIALS = int(os.environ.get("COOLIE_S3_FAULT_TRIALS", "20"))
CONFLICT_TRIALS = 4


class Lake:
    """One trial's lake: a prefix of the session's bucket, a local folder for catalog and state."""

    def __init__(self, server: S3Server, bucket: str, key: str, local: Path) -> None:
        self.server, self.bucket, self.key, self.local = server, bucket, key, local
        self.uri = f"s3://{bucket}/{key}"
        local.mkdir(parents=True, exist_ok=True)

    @property
    def table(self) -> str:
        return f"{self.uri}/lake/{FLOW}"

    def upload(self, folder: Path, *, under: str, skip: frozenset[str] = frozenset()) -> None:
        """Copy ``folder`` (a local raw folder or Delta table) to ``<prefix>/<under>``."""
        client = self.server.client()
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{self.key}/{under}/{file.relative_to(folder).as_posix()}"
            if key not in skip:
                client.put_object(Bucket=self.bucket, Key=key, Body=file.read_bytes())

    def sync_raw(self, mirror: Path) -> None:
        """Make ``<prefix>/raw`` hold exactly the files of ``mirror`` (a replaced extract is deleted)."""
        client = self.server.client()
        prefix = f"{self.key}/raw/"
        wanted = {p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()}
        present = set()
        for key in self.server.keys(self.bucket):
            if key.startswith(prefix) and key[len(prefix) :] not in wanted:
                client.delete_object(Bucket=self.bucket, Key=key)
            elif key.startswith(prefix):
                present.add(key)
        self.upload(mirror, under="raw", skip=frozenset(present))  # files land once, like real ones

    def write_catalog(self, document: dict[str, Any]) -> Path:
        document = {**document, "connections": dict(document["connections"])}
        document["connections"]["raw"] = {"kind": "files", "path": f"{self.uri}/raw"}
        document["connections"]["lake"] = {"kind": "delta", "path": f"{self.uri}/lake"}
        path = self.local / "catalog.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path

    def run_args(self, command: str = "run") -> list[str]:
        return [command, str(self.local / "catalog.yaml"), "--state-dir", str(self.local / "state")]

    def run(self, run_id: str) -> None:
        catalog = load_catalog(self.local / "catalog.yaml")
        with Driver(catalog, state_dir=self.local / "state", run_id=run_id) as driver:
            result = driver.run().result(FLOW)
        assert result.status != "failed", result.error


def check_remote_log(table: str, dataflow: str) -> int:
    """:func:`tests.reliability.conftest.check_log` for a table on S3."""
    delta = DeltaTable(table)
    version = delta.version()
    log = StorageLocation.parse(f"{table}/_delta_log")
    names = [info.uri.rpartition("/")[2] for info in log.list_objects()]
    commits = sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())
    assert commits == list(range(version + 1)), f"{table}: commit files {commits}, version {version}"
    history = delta.history()
    assert sorted(int(c["version"]) for c in history) == list(range(version + 1)), history
    batches = sorted(int(c[BATCH_KEY]) for c in history if c.get(DATAFLOW_KEY) == dataflow and BATCH_KEY in c)
    recorded = delta.transaction_version(f"coolie:{dataflow}") or 0
    assert batches == list(range(1, recorded + 1)), f"{table}: batches {batches}, app transaction {recorded}"
    return recorded  # the rows are read (so readable) by observe()


def observe(lake: Lake, strategy: str) -> State:
    """The S3 table's state, after checking its Delta log and the strategy's invariants."""
    if not delta_table_exists(lake.table):
        return State(None, None, 0)
    batches = check_remote_log(lake.table, FLOW)
    stored = read_delta_watermark(lake.table, dataflow=FLOW)
    assert stored.batch == batches
    everything = canonical_rows(pl.read_delta(lake.table))
    rows = everything.filter(pl.col("id") >= 0)
    check_invariants(strategy, rows)
    return State(rows, stored.value, stored.batch, everything.height - rows.height)


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(tmp_path_factory.mktemp("s3-references"), canonical_rows, check_local_log)


@pytest.fixture
def bucket(s3_env: S3Server) -> str:
    return s3_env.new_bucket()


def lake_before(
    reference: Any, step: int, server: S3Server, bucket: str, folder: Path, name: str
) -> tuple[Lake, Path]:
    """A lake on S3 holding the reference's state before batch ``step`` (its mirror of raw files)."""
    from tests.reliability.test_fault_injection import flow_document

    lake = Lake(server, bucket, name, folder)
    mirror = folder / "mirror"
    (mirror / "raw").mkdir(parents=True)
    lake.write_catalog(flow_document(reference.scenario.strategy))
    # The batches before are run on S3 itself (a copied table would carry the reference's listing
    # times, older than every uploaded file). They are not checked one by one (a third of these
    # trials' time): a wrong state before the trial's batch fails the trial's own check, which
    # requires exactly the reference's state before or after the batch.
    for earlier in range(1, step + 1):
        reference.scenario.arrive(mirror, earlier)
        next_second()
        lake.sync_raw(mirror / "raw")
        if earlier < step:
            lake.run(f"before-{earlier}")
    return lake, mirror


def next_second() -> None:
    """Wait for the next whole second: object stores date files by the second, and a file from
    the second of the last listing counts as listed then (coolie_core.batches)."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.01)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sigkilled_runs_on_s3_recover_to_the_clean_result(
    strategy: str,
    references: References,
    startup_seconds: float,  # noqa: F811 - the imported fixture
    s3_env: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    """A ``coolie run`` on S3 killed at a named point or a random moment leaves the table exactly
    before or after the batch; the rerun ends exactly where the clean local run ended."""

    def trial(number: int) -> str:
        rng = random.Random(f"{SEED}:s3-run:{strategy}:{number}")
        reference = references.get(strategy, rng.randrange(SCENARIOS))
        states = reference.states
        step = rng.randint(1, reference.scenario.k)
        before, after = states[step - 1], states[step]
        lake, _ = lake_before(reference, step, s3_env, bucket, tmp_path / f"trial-{number}", f"t{number}")
        disturbance = pick_disturbance(rng, POINTS[strategy], startup_seconds)
        code = disturbed_run(lake.run_args(), disturbance, pause_at="after_read", scratch=lake.local)
        state = observe(lake, strategy)
        where = f"trial {number} (scenario {reference.scenario.number}, batch {step}: {disturbance})"
        assert state.same(before) or state.same(after), f"{where}: {state.describe()} is neither"
        if disturbance.mode == "point" and code != 0:
            expected = after if disturbance.point == "after_commit" else before
            assert state.same(expected), f"{where}: {state.describe()} != {expected.describe()}"
        committed = state.same(after) and not state.same(before)
        lake.run(f"recover-{number}")
        final = observe(lake, strategy)
        assert final.same(after), f"{where}: rerun {final.describe()} != {after.describe()}"
        return outcome_name(disturbance, code, committed)

    outcomes = run_trials(f"s3 run[{strategy}]", trial, TRIALS)
    if TRIALS >= 20:
        assert any(kind.startswith("point") and "killed" in kind for kind in outcomes), outcomes


def replay_windows(table: str, since: int) -> list[str]:
    history = DeltaTable(table).history()
    commits = sorted(
        (c for c in history if c["version"] > since and WINDOW_KEY in c), key=lambda c: c["version"]
    )
    return [str(c[WINDOW_KEY]) for c in commits]


def test_sigkilled_replays_on_s3_resume_to_the_clean_result(
    startup_seconds: float,  # noqa: F811 - the imported fixture
    s3_env: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    """``coolie replay`` on S3 killed once or twice holds whole chunks only; the replay that
    finishes commits each remaining chunk once and ends equal to the clean local replay."""
    lock = threading.Lock()
    built: dict[int, ReplayReference] = {}

    def reference_for(number: int) -> ReplayReference:
        with lock:
            if number not in built:
                built[number] = build_replay_reference(
                    number, tmp_path / f"reference-{number}", canonical_rows, check_local_log
                )
            return built[number]

    def trial(number: int) -> str:
        rng = random.Random(f"{SEED}:s3-replay:{number}")
        reference = reference_for(rng.randrange(SCENARIOS))
        states = reference.states
        lake = Lake(s3_env, bucket, f"r{number}", tmp_path / f"trial-{number}")
        lake.upload(reference.folder / "lake" / FLOW, under=f"lake/{FLOW}")
        lake.upload(reference.folder / "raw", under="raw")
        document = yaml.safe_load((reference.folder / "catalog.yaml").read_text(encoding="utf-8"))
        lake.write_catalog(document)
        args = [*lake.run_args("replay"), *reference.args, "--json"]
        progress, first = 0, ""
        for kill in range(rng.randint(1, 2)):
            disturbance = pick_disturbance(rng, ("after_chunk",), startup_seconds)
            code = disturbed_run(args, disturbance, pause_at="after_chunk", scratch=lake.local)
            state = observe(lake, "replay")
            where = f"trial {number} (kill {kill + 1}: {disturbance})"
            matches = [j for j in range(progress, len(states)) if state.same(states[j])]
            assert matches, f"{where}: {state.describe()} is no state of the clean replay from {progress} on"
            progress = matches[0]
            if code == 0:
                assert state.same(states[-1]), f"{where}: finished at state {progress} of {len(states) - 1}"
            first = first or outcome_name(disturbance, code, progress > 0)
        catalog = load_catalog(lake.local / "catalog.yaml")
        with Driver(catalog, state_dir=lake.local / "state", run_id=f"finish-{number}") as driver:
            (result,) = driver.run_replay(
                [FLOW], start=reference.start, end=reference.end, save_watermark=reference.save_watermark
            )
        assert result.status == "succeeded", result.error
        final = observe(lake, "replay")
        assert final.same(states[-1]), f"trial {number}: {final.describe()} != {states[-1].describe()}"
        assert replay_windows(lake.table, reference.version) == reference.windows, f"trial {number}"
        return first

    outcomes = run_trials("s3 replay", trial, TRIALS)
    if TRIALS >= 20:
        assert any(kind.startswith("point") and "killed" in kind for kind in outcomes), outcomes


def foreign_commit(table: str, marker: int) -> None:
    """Another writer appends one current row with key ``marker`` (negative) to the S3 table."""
    current = pl.read_delta(table)
    if "is_current" in current.columns:
        current = current.filter(pl.col("is_current"))
    row = current.head(1).with_columns(pl.lit(marker, pl.Int64).alias("id"))
    write_deltalake(table, row.to_arrow(), mode="append")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_commit_conflicts_on_s3_are_retried_and_exact(
    strategy: str, references: References, s3_env: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Two writers commit to one table on S3 (a foreign row, or a second run of the same batch)
    while a ``coolie run`` holds its snapshot: delta-rs' conditional put makes one commit lose,
    coolie retries it, and the table is the clean batch, each batch number committed once."""
    candidates = [
        (reference, step)
        for reference in (references.get(strategy, n) for n in range(SCENARIOS))
        for step in range(2, reference.scenario.k + 1)
        if reference.states[step - 1].rows is not None
        and not reference.states[step].same(reference.states[step - 1])
    ]

    def trial(number: int) -> str:
        rng = random.Random(f"{SEED}:s3-conflict:{strategy}:{number}")
        reference, step = rng.choice(candidates)
        twin = number % 2 == 0
        point = "delta_commit" if strategy in ("merge", "scd2") else "before_commit"
        lake, _ = lake_before(reference, step, s3_env, bucket, tmp_path / f"trial-{number}", f"c{number}")
        release = lake.local / "release"
        proc = start_cli([*lake.run_args(), "--json"], COOLIE_PAUSE=f"{point}:{FLOW}:{release}")
        writer = "same dataflow" if twin else "foreign writer"
        try:
            paused = wait_for(Path(f"{release}.waiting"), proc)
            if paused and twin:
                lake.run(f"twin-{number}")
            elif paused:
                foreign_commit(lake.table, -1 - number)
        finally:
            release.touch()
            code, out, err = finish(proc)
        where = f"trial {number} (batch {step}, {writer}): exit {code}\n{out}{err}"
        assert paused, where
        assert code == 0, where
        record = json.loads(out.splitlines()[-1])
        state, expected = observe(lake, strategy), reference.states[step]
        assert state.same(expected), f"{where}: {state.describe()} != {expected.describe()}"
        if writer == "foreign writer" and strategy in ("append", "merge", "scd2"):
            assert state.foreign == 1, where
        return f"{writer}: {record['status']} after {record['attempts']} attempt(s)"

    outcomes = run_trials(f"s3 conflict[{strategy}]", trial, CONFLICT_TRIALS)
    assert any("foreign" in kind for kind in outcomes)
    assert any("same" in kind for kind in outcomes)
