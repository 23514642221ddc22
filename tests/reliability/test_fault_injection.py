"""Fault injection: real ``coolie run`` / ``coolie replay`` processes killed, failed or raced.

Every trial is seeded (``COOLIE_FAULT_SEED``, ``COOLIE_FAULT_TRIALS`` scale it up locally). A
trial takes one of a few multi-batch scenarios per load strategy — source batches 1..k arriving
between runs — starts from the clean reference's state after batch ``s - 1``, adds batch ``s``
and runs ``coolie run`` as a subprocess that is disturbed:

* ``point``: ``COOLIE_FAULT=<point>:flow`` SIGKILLs it at a named point of the run;
* ``delay``: SIGKILL a random delay after the start (start-up, read, write or done);
* ``write``: SIGKILL a random delay after it passed ``after_read`` (somewhere in the write).

Sometimes the recovery run is killed too; sometimes the next batch arrives before it. Then the
remaining batches run to completion. After every kill the destination must be exactly the
reference's state before or after batch ``s`` (rows, watermark and batch: all or nothing), and
at the end exactly the reference's final state, with a valid Delta log in which every batch was
committed once. References are built once per scenario by clean in-process runs; rows compare
order-insensitively without ``_coolie_loaded_at`` / ``_coolie_run_id``.

Replay trials kill ``coolie replay`` once or twice, each time checking that the table is
the reference after some number of whole chunks (never fewer than before), then finish it.
Injected I/O errors (``COOLIE_FAULT=oserror:...``) check the retry path end to end, and commit
conflicts (``COOLIE_PAUSE``) make another writer commit while a run holds its snapshot.
"""

import datetime as dt
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_core.faults import FAULT_ENV, fault_point
from coolie_core.io.delta import delta_table_exists
from coolie_core.watermarks import WINDOW_KEY, Watermark, read_delta_watermark

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("COOLIE_FAULT_SEED", "20240611"))
TRIALS = int(os.environ.get("COOLIE_FAULT_TRIALS", "30"))
SCENARIOS = 4
"""Scenarios (data sets) per strategy; trials share their references."""
WORKERS = 3
"""Trials run concurrently (each mostly waits on its subprocess)."""
FLOW = "flow"
STRATEGIES = ("append", "overwrite", "merge", "replace_window", "scd2")
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
UTC_US = pl.Datetime("us", "UTC")

Canonical = Callable[[pl.DataFrame], pl.DataFrame]
CheckDeltaLog = Callable[[Path, str], int]


# --------------------------------------------------------------------------- scenarios


SCHEMAS: dict[str, dict[str, Any]] = {
    "append": {"id": pl.Int64, "v": pl.String, "ts": UTC_US},
    "merge": {"id": pl.Int64, "gen": pl.Int64, "v": pl.String, "op": pl.String, "ts": UTC_US},
    "scd2": {"id": pl.Int64, "v": pl.String, "ts": UTC_US},
    "overwrite": {"id": pl.Int64, "v": pl.String},
    "replace_window": {"id": pl.Int64, "day": pl.Date, "v": pl.String},
}


def _append_batches(rng: random.Random, k: int) -> list[list[dict[str, Any]]]:
    """New events with increasing ids and timestamps; now and then an empty batch."""
    batches, next_id, clock = [], 0, BASE
    for _ in range(k):
        rows = []
        for _ in range(0 if rng.random() < 0.15 else rng.randint(1, 4)):
            clock += dt.timedelta(minutes=rng.randint(1, 90))
            rows.append({"id": next_id, "v": f"e{next_id}", "ts": clock})
            next_id += 1
        batches.append(rows)
    return batches


def _merge_batches(rng: random.Random, k: int) -> list[list[dict[str, Any]]]:
    """Every batch changes every key together (generation ``i``; some deleted by the change
    feed); some keys also get an older, stale row placed anywhere in the file."""
    batches, keys = [], rng.randint(2, 4)
    for i in range(1, k + 1):
        keys += rng.randint(0, 2)
        rows = []
        for key in range(keys):
            ts = BASE + dt.timedelta(days=i, minutes=key)
            op = "D" if rng.random() < 0.2 else "U"
            rows.append({"id": key, "gen": i, "v": f"k{key}g{i}", "op": op, "ts": ts})
            if rng.random() < 0.3:
                stale = ts - dt.timedelta(seconds=30)
                rows.append({"id": key, "gen": i, "v": "stale", "op": "U", "ts": stale})
        rng.shuffle(rows)
        batches.append(rows)
    return batches


def _scd2_batches(rng: random.Random, k: int) -> list[list[dict[str, Any]]]:
    """Changes of a few keys, one or two per key and batch; some repeat the current value."""
    batches, keys = [], rng.randint(2, 4)
    for i in range(1, k + 1):
        rows = []
        for key in range(keys):
            if i == 1 or rng.random() < 0.6:
                for change in range(rng.randint(1, 2)):
                    ts = BASE + dt.timedelta(days=i, hours=2 * key + change)
                    rows.append({"id": key, "v": rng.choice("abc"), "ts": ts})
        rng.shuffle(rows)
        batches.append(rows)
    return batches


def _overwrite_batches(rng: random.Random, k: int) -> list[list[dict[str, Any]]]:
    """Full snapshots; now and then an empty one (which keeps the table)."""
    batches = []
    for i in range(1, k + 1):
        ids = sorted(rng.sample(range(8), 0 if rng.random() < 0.15 else rng.randint(1, 5)))
        batches.append([{"id": j, "v": f"s{i}-{rng.randint(0, 9)}"} for j in ids])
    return batches


def _window_batches(rng: random.Random, k: int) -> list[list[dict[str, Any]]]:
    """Extracts covering one to three months (2024-01..2024-06), some with a gap month."""
    batches, next_id = [], 0
    for i in range(1, k + 1):
        first = rng.randint(1, 4)
        months = [m for m in range(first, first + rng.randint(1, 3)) if m <= 6]
        if len(months) == 3 and rng.random() < 0.5:
            months.pop(1)
        rows = []
        for month in months:
            for _ in range(rng.randint(1, 3)):
                rows.append({"id": next_id, "day": dt.date(2024, month, rng.randint(1, 28)), "v": f"x{i}"})
                next_id += 1
        batches.append(rows)
    return batches


GENERATORS = {
    "append": _append_batches,
    "merge": _merge_batches,
    "scd2": _scd2_batches,
    "overwrite": _overwrite_batches,
    "replace_window": _window_batches,
}
POINTS = {
    "append": ("after_read", "before_commit", "after_commit"),
    "overwrite": ("after_read", "before_commit", "after_commit"),
    "replace_window": ("after_read", "before_commit", "after_commit"),
    "merge": ("after_read", "before_commit", "delta_commit", "after_commit"),
    "scd2": ("after_read", "before_commit", "delta_commit", "after_commit"),
}


def flow_document(strategy: str) -> dict[str, Any]:
    """The catalog of one scenario: ``raw/flow/*.parquet`` -> ``lake/flow`` with the strategy."""
    destination: dict[str, Any] = {"connection": "lake", "table": FLOW, "load": strategy}
    flow: dict[str, Any] = {
        "name": FLOW,
        "source": {"format": "parquet", "connection": "raw", "path": f"{FLOW}/*.parquet"},
        "destination": destination,
        "retry": {"count": 2, "delay": 0, "backoff": "fixed"},
    }
    if strategy in ("append", "merge", "scd2"):
        flow["watermark_columns"] = ["ts"]
    if strategy == "merge":
        destination.update(merge_keys=["id"], cdc={"column": "op", "delete": ["D"]})
    if strategy == "scd2":
        destination.update(merge_keys=["id"], scd2={"effective_column": "ts"})
    if strategy == "replace_window":
        flow["partitions"] = {"column": "day", "every": "month", "start": "2024-01-01"}
    return {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [flow],
    }


@dataclass(frozen=True)
class Scenario:
    """Source batches of one strategy; batch ``i`` arrives before run ``i``."""

    strategy: str
    number: int
    batches: list[list[dict[str, Any]]]

    @property
    def k(self) -> int:
        return len(self.batches)

    @property
    def replaces(self) -> bool:
        """Each batch is a full extract replacing the previous file (else files accumulate)."""
        return self.strategy in ("overwrite", "replace_window")

    @property
    def combinable(self) -> bool:
        """Whether a rerun that also sees the next batch must equal two separate runs: not when
        the next extract replaced this one (its windows are gone, and an empty extract keeps
        the table as it was)."""
        return not self.replaces

    def write_catalog(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "catalog.yaml"
        path.write_text(yaml.safe_dump(flow_document(self.strategy), sort_keys=False), encoding="utf-8")
        return path

    def arrive(self, root: Path, step: int) -> None:
        """Batch ``step`` (1-based) lands in the source folder."""
        folder = root / "raw" / FLOW
        folder.mkdir(parents=True, exist_ok=True)
        if self.replaces:
            for old in folder.glob("*.parquet"):
                old.unlink()
        frame = pl.DataFrame(self.batches[step - 1], schema=SCHEMAS[self.strategy])
        frame.write_parquet(folder / f"batch-{step:02d}.parquet")


def make_scenario(strategy: str, number: int) -> Scenario:
    rng = random.Random(f"{SEED}:scenario:{strategy}:{number}")
    return Scenario(strategy, number, GENERATORS[strategy](rng, rng.randint(2, 4)))


# --------------------------------------------------------------------------- states


@dataclass(frozen=True)
class State:
    """What a destination holds: canonical rows (None: no table), watermark, batches committed.

    Rows with a negative ``id`` were written by a foreign writer (conflict tests): they are
    counted in ``foreign`` and left out of ``rows``.
    """

    rows: pl.DataFrame | None
    watermark: Watermark | None
    batch: int
    foreign: int = 0

    def same(self, other: "State", *, batch: bool = True) -> bool:
        if (self.rows is None) != (other.rows is None):
            return False
        if self.rows is not None and other.rows is not None and not self.rows.equals(other.rows):
            return False
        return self.watermark == other.watermark and (not batch or self.batch == other.batch)

    def describe(self) -> str:
        rows = "no table" if self.rows is None else f"{self.rows.height} rows"
        return f"{rows}, watermark {self.watermark}, batch {self.batch}"


def observe(root: Path, strategy: str, canonical: Canonical, check_log: CheckDeltaLog) -> State:
    """The destination's state, after checking its Delta log and the strategy's invariants."""
    table = root / "lake" / FLOW
    if not (table / "_delta_log").is_dir() or not any((table / "_delta_log").glob("*.json")):
        return State(None, None, 0)
    batches = check_log(table, FLOW)
    stored = read_delta_watermark(table, dataflow=FLOW)
    assert stored.batch == batches
    everything = canonical(pl.read_delta(str(table)))
    rows = everything.filter(pl.col("id") >= 0)
    check_invariants(strategy, rows)
    return State(rows, stored.value, stored.batch, everything.height - rows.height)


def check_invariants(strategy: str, rows: pl.DataFrame) -> None:
    """What must hold of any committed state, whatever the reference says.

    merge: no key twice, no stale row won, and every key present carries the same generation
    (a half-applied merge would mix two). scd2: per key a gapless chain of versions, only the
    last one current, and no version equal to the one before it. Others: no id twice.
    """
    if strategy == "scd2":
        for (key,), versions in rows.sort("valid_from").group_by("id", maintain_order=True):
            current = versions["is_current"].to_list()
            assert current == [False] * (len(current) - 1) + [True], f"key {key}: {versions}"
            assert versions["valid_to"].to_list()[:-1] == versions["valid_from"].to_list()[1:], versions
            assert versions["valid_to"][-1] is None, versions
            values = versions["v"].to_list()
            assert all(a != b for a, b in itertools.pairwise(values)), versions
        return
    if strategy in STRATEGIES:
        assert rows["id"].is_unique().all(), f"an id twice: {rows}"
    if strategy == "merge":
        assert "stale" not in rows["v"].to_list(), rows
        assert rows["gen"].n_unique() <= 1, f"half-applied merge: {rows}"


@dataclass
class Reference:
    """A clean run of a scenario: the state after each step, and a copy of the folder."""

    scenario: Scenario
    folder: Path
    states: list[State] = field(default_factory=list)

    def snapshot(self, step: int) -> Path:
        return self.folder / f"step-{step}"


def build_reference(
    scenario: Scenario, folder: Path, canonical: Canonical, check_log: CheckDeltaLog
) -> Reference:
    """Run the scenario cleanly in-process, one run per batch, keeping every step's state."""
    reference = Reference(scenario, folder)
    work = folder / "work"
    catalog = scenario.write_catalog(work)
    shutil.copytree(work, reference.snapshot(0))
    reference.states.append(observe(work, scenario.strategy, canonical, check_log))
    for step in range(1, scenario.k + 1):
        scenario.arrive(work, step)
        with Driver(load_catalog(catalog), state_dir=work / "state", run_id=f"reference-{step}") as driver:
            result = driver.run().result(FLOW)
        assert result.status != "failed", result.error
        shutil.copytree(work, reference.snapshot(step))
        reference.states.append(observe(work, scenario.strategy, canonical, check_log))
    return reference


class References:
    """References built on first use, once per scenario (thread-safe)."""

    def __init__(self, folder: Path, canonical: Canonical, check_log: CheckDeltaLog) -> None:
        self.folder = folder
        self.canonical = canonical
        self.check_log = check_log
        self._built: dict[tuple[str, int], Reference] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, strategy: str, number: int) -> Reference:
        key = (strategy, number)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._built:
                self._built[key] = build_reference(
                    make_scenario(strategy, number),
                    self.folder / f"{strategy}-{number}",
                    self.canonical,
                    self.check_log,
                )
            return self._built[key]


@pytest.fixture(scope="module")
def references(
    tmp_path_factory: pytest.TempPathFactory, canonical: Canonical, check_delta_log: CheckDeltaLog
) -> References:
    return References(tmp_path_factory.mktemp("references"), canonical, check_delta_log)


# --------------------------------------------------------------------------- processes


def start_cli(args: list[str], **env: str) -> subprocess.Popen[str]:
    """``coolie <args>`` in a fresh interpreter, with only the faults given here."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COOLIE_FAULT", "COOLIE_PAUSE")}
    return subprocess.Popen(
        [sys.executable, "-m", "coolie_core.cli", *args],
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


def wait_for(marker: Path, proc: subprocess.Popen[str]) -> bool:
    """Wait until ``marker`` exists; False when the process ended first."""
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.02)
    return True


@dataclass(frozen=True)
class Disturbance:
    """How one process is disturbed: ``point`` (COOLIE_FAULT), ``delay`` (SIGKILL a delay after
    the start) or ``write`` (SIGKILL a delay after it passed its pause point)."""

    mode: str
    point: str = ""
    delay: float = 0.0

    def __str__(self) -> str:
        return f"point {self.point}" if self.mode == "point" else f"{self.mode} +{self.delay:.3f}s"


def pick_disturbance(rng: random.Random, points: tuple[str, ...], startup: float) -> Disturbance:
    mode = rng.choices(["point", "delay", "write"], weights=[0.4, 0.3, 0.3])[0]
    if mode == "point":
        return Disturbance("point", point=rng.choice(points))
    if mode == "delay":
        return Disturbance("delay", delay=rng.uniform(0.3, 1.1) * startup)
    return Disturbance("write", delay=rng.uniform(0.0, 0.25))


def disturbed_run(args: list[str], disturbance: Disturbance, *, pause_at: str, scratch: Path) -> int:
    """Run the CLI and disturb it; return its exit code (-9 when killed, 0 when it finished)."""
    fault = {"COOLIE_FAULT": f"{disturbance.point}:{FLOW}"} if disturbance.mode == "point" else {}
    release = scratch / f"release-{time.monotonic_ns()}"
    pause = {"COOLIE_PAUSE": f"{pause_at}:{FLOW}:{release}"} if disturbance.mode == "write" else {}
    proc = start_cli(args, **fault, **pause)
    try:
        if disturbance.mode == "write" and wait_for(Path(f"{release}.waiting"), proc):
            release.touch()
        if disturbance.mode != "point":
            try:
                proc.wait(timeout=disturbance.delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
    except BaseException:
        proc.kill()
        finish(proc)
        raise
    code, out, err = finish(proc)
    assert code in (0, -signal.SIGKILL), f"{disturbance}: exit {code}\n{out}{err}"
    return code


def outcome_name(disturbance: Disturbance, code: int, committed: bool) -> str:
    """``point after_read: killed before commit``, ``delay: completed``..."""
    mode = f"point {disturbance.point}" if disturbance.mode == "point" else disturbance.mode
    if code == 0:
        return f"{mode}: completed"
    return f"{mode}: killed {'after' if committed else 'before'} commit"


@pytest.fixture(scope="module")
def startup_seconds(tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long a small ``coolie run`` takes here, WORKERS at once (scales ``delay`` kills)."""
    folder = tmp_path_factory.mktemp("calibrate")
    scenario = make_scenario("append", 0)

    def timed(index: int) -> float:
        root = folder / str(index)
        catalog = scenario.write_catalog(root)
        scenario.arrive(root, 1)
        t0 = time.monotonic()
        code, out, err = finish(start_cli(["run", str(catalog), "--state-dir", str(root / "state")]))
        assert code == 0, out + err
        return time.monotonic() - t0

    with ThreadPoolExecutor(WORKERS) as pool:
        return statistics.median(pool.map(timed, range(WORKERS)))


def run_trials(name: str, trial: Callable[[int], str], count: int) -> Counter[str]:
    """Run ``count`` trials concurrently and count their outcomes; if any failed, raise the
    lowest-numbered failure with the list of all failed trial numbers."""
    failures: list[tuple[int, BaseException]] = []
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def guarded(number: int) -> None:
        try:
            outcome = trial(number)
        except BaseException as exc:
            with lock:
                failures.append((number, exc))
        else:
            with lock:
                outcomes[outcome] += 1

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(guarded, range(count)))
    print(f"\n{name}: {count} trials (seed {SEED}): {dict(sorted(outcomes.items()))}")
    if failures:
        failures.sort(key=lambda item: item[0])
        number, first = failures[0]
        first.add_note(
            f"{name}: trials {[n for n, _ in failures]} of {count} failed (seed {SEED}), shown: {number}"
        )
        raise first
    return outcomes


def in_process_run(root: Path, run_id: str) -> None:
    with Driver(load_catalog(root / "catalog.yaml"), state_dir=root / "state", run_id=run_id) as driver:
        result = driver.run().result(FLOW)
    assert result.status != "failed", result.error


def run_args(root: Path) -> list[str]:
    return ["run", str(root / "catalog.yaml"), "--state-dir", str(root / "state"), "--json"]


# --------------------------------------------------------------------------- coolie run under SIGKILL


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sigkilled_runs_recover_to_the_clean_result(
    strategy: str,
    references: References,
    startup_seconds: float,
    tmp_path: Path,
    canonical: Canonical,
    check_delta_log: CheckDeltaLog,
) -> None:
    """``coolie run`` killed with SIGKILL at a named point or at a random moment leaves the
    destination exactly before or after the batch — rows, watermark and batch together — and
    the runs after it end exactly where a clean sequence of runs ends."""

    def trial(number: int) -> str:
        rng = random.Random(f"{SEED}:run:{strategy}:{number}")
        reference = references.get(strategy, rng.randrange(SCENARIOS))
        scenario, states = reference.scenario, reference.states
        step = rng.randint(1, scenario.k)
        before, after = states[step - 1], states[step]
        root = tmp_path / f"trial-{number}"
        shutil.copytree(reference.snapshot(step - 1), root)
        scenario.arrive(root, step)
        committed, first = False, ""
        for kill in range(2 if rng.random() < 0.2 else 1):
            disturbance = pick_disturbance(rng, POINTS[strategy], startup_seconds)
            code = disturbed_run(run_args(root), disturbance, pause_at="after_read", scratch=root)
            state = observe(root, strategy, canonical, check_delta_log)
            where = f"trial {number} (scenario {scenario.number}, batch {step}/{scenario.k}, kill {kill + 1}: {disturbance})"
            if state.same(after) and not state.same(before):
                committed = True
            elif state.same(before) and not state.same(after):
                assert not committed, f"{where}: a committed batch went missing"
            else:
                assert state.same(before), (
                    f"{where}: {state.describe()} is neither before nor after the batch"
                )
            if disturbance.mode == "point" and code != 0:
                expected = after if disturbance.point == "after_commit" else before
                assert state.same(expected), f"{where}: {state.describe()} != {expected.describe()}"
            first = first or outcome_name(disturbance, code, committed)
        combined = step < scenario.k and scenario.combinable and rng.random() < 0.3
        if combined:
            scenario.arrive(root, step + 1)
        in_process_run(root, f"recover-{number}")
        for later in range(step + 2 if combined else step + 1, scenario.k + 1):
            scenario.arrive(root, later)
            in_process_run(root, f"later-{number}-{later}")
        final, clean = observe(root, strategy, canonical, check_delta_log), states[-1]
        where = f"trial {number} (scenario {scenario.number}, batch {step}, next batch too: {combined})"
        if combined and strategy == "scd2" and final.watermark and clean.watermark:
            # A batch of scd2 changes that change nothing commits nothing (README): run alone it
            # leaves the watermark behind, folded into the batch before it, it moves it on.
            assert final.watermark["ts"] >= clean.watermark["ts"], where
            final = State(final.rows, clean.watermark, final.batch)
        assert final.same(clean, batch=not combined), f"{where}: {final.describe()} != {clean.describe()}"
        assert final.batch <= clean.batch, where
        return first

    outcomes = run_trials(f"run[{strategy}]", trial, TRIALS)
    if TRIALS >= 20:  # the default seed's named points do kill (fewer trials: maybe not)
        assert any(kind.startswith("point") and "killed" in kind for kind in outcomes), outcomes


# --------------------------------------------------------------------------- coolie replay under SIGKILL


@dataclass
class ReplayReference:
    """A clean replay: the pre-replay folder, the state after each chunk, the windows in order."""

    folder: Path
    args: list[str]
    start: dt.date
    end: dt.date
    save_watermark: bool
    version: int
    """Delta version of the table before the replay."""
    states: list[State] = field(default_factory=list)
    windows: list[str] = field(default_factory=list)


def replay_source(rng: random.Random, tag: str, *, merge: bool) -> pl.DataFrame:
    """Rows dated 2023-12-01..2024-07-31; for merge, a few keys, at most one row per key and day."""
    days = [dt.date(2023, 12, 1) + dt.timedelta(days=d) for d in range(0, 243, rng.randint(3, 9))]
    rows = []
    for number, day in enumerate(days):
        key = rng.randrange(6) if merge else number + (1000 if tag == "old" else 0)
        rows.append({"id": key, "day": day, "tag": tag, "v": rng.randint(0, 99)})
    return pl.DataFrame(rows).unique(["id", "day"], keep="first", maintain_order=True)


def build_replay_reference(
    number: int, folder: Path, canonical: Canonical, check_log: CheckDeltaLog
) -> ReplayReference:
    """Load an old source normally, replace the source, then replay 3-5 months of it cleanly
    (odd scenarios merge, even ones append; about half hand the watermark over)."""
    rng = random.Random(f"{SEED}:replay-scenario:{number}")
    merge = number % 2 == 1
    destination: dict[str, Any] = {"connection": "lake", "table": FLOW, "load": "append"}
    if merge:
        destination.update(load="merge", merge_keys=["id"])
    document = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": FLOW,
                "source": {"format": "parquet", "connection": "raw", "path": f"{FLOW}/*.parquet"},
                "destination": destination,
                "watermark_columns": ["day"],
                "partitions": {"column": "day", "every": "month", "start": "2023-12-01"},
            }
        ],
    }
    pre = folder / "pre"
    (pre / "raw" / FLOW).mkdir(parents=True)
    (pre / "catalog.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    replay_source(rng, "old", merge=merge).write_parquet(pre / "raw" / FLOW / "old.parquet")
    in_process_run(pre, "seed")
    (pre / "raw" / FLOW / "old.parquet").unlink()
    replay_source(rng, "new", merge=merge).write_parquet(pre / "raw" / FLOW / "new.parquet")
    months = [dt.date(2023, 12, 1)] + [dt.date(2024, m, 1) for m in range(1, 9)]
    first = rng.randint(0, 3)
    start, end = months[first], months[first + rng.randint(3, 5)]
    save = rng.random() < 0.5
    args = ["-d", FLOW, "--start", start.isoformat(), "--end", end.isoformat()]
    reference = ReplayReference(
        pre,
        args + (["--save-watermark"] if save else []),
        start,
        end,
        save,
        DeltaTable(str(pre / "lake" / FLOW)).version(),
    )
    work = folder / "work"
    shutil.copytree(pre, work)

    def record(*_: object) -> None:
        reference.states.append(observe(work, "replay", canonical, check_log))

    record()
    with Driver(load_catalog(work / "catalog.yaml"), state_dir=work / "state", run_id="reference") as driver:
        (result,) = driver.run_replay([FLOW], start=start, end=end, save_watermark=save, on_chunk=record)
    assert result.status == "succeeded", result.error
    reference.windows = [c.window for c in result.chunks]
    if save:
        record()
    return reference


def replay_windows(root: Path, since: int) -> list[str]:
    """Windows of the replay commits after version ``since``, oldest first."""
    history = DeltaTable(str(root / "lake" / FLOW)).history()
    commits = sorted(
        (c for c in history if c["version"] > since and WINDOW_KEY in c), key=lambda c: c["version"]
    )
    return [str(c[WINDOW_KEY]) for c in commits]


def test_sigkilled_replays_resume_to_the_clean_result(
    startup_seconds: float, tmp_path: Path, canonical: Canonical, check_delta_log: CheckDeltaLog
) -> None:
    """``coolie replay`` killed once or twice (after a chunk, at a random moment, or during
    a later chunk) holds whole chunks only and never goes backwards; the replay that finishes
    commits each remaining chunk once: table, watermark and replay commits equal a clean replay's."""
    lock = threading.Lock()
    built: dict[int, ReplayReference] = {}

    def reference_for(number: int) -> ReplayReference:
        with lock:
            if number not in built:
                built[number] = build_replay_reference(
                    number, tmp_path / f"reference-{number}", canonical, check_delta_log
                )
            return built[number]

    def trial(number: int) -> str:
        rng = random.Random(f"{SEED}:replay:{number}")
        reference = reference_for(rng.randrange(SCENARIOS))
        states = reference.states
        root = tmp_path / f"trial-{number}"
        shutil.copytree(reference.folder, root)
        args = [
            "replay",
            str(root / "catalog.yaml"),
            *reference.args,
            "--state-dir",
            str(root / "state"),
            "--json",
        ]
        progress, first = 0, ""
        for kill in range(rng.randint(1, 2)):
            disturbance = pick_disturbance(rng, ("after_chunk",), startup_seconds)
            code = disturbed_run(args, disturbance, pause_at="after_chunk", scratch=root)
            state = observe(root, "replay", canonical, check_delta_log)
            where = f"trial {number} (kill {kill + 1}: {disturbance})"
            matches = [j for j in range(progress, len(states)) if state.same(states[j])]
            assert matches, f"{where}: {state.describe()} is no state of the clean replay from {progress} on"
            progress = matches[0]
            if code == 0:
                assert state.same(states[-1]), f"{where}: finished at state {progress} of {len(states) - 1}"
            first = first or outcome_name(disturbance, code, progress > 0)
        with Driver(
            load_catalog(root / "catalog.yaml"), state_dir=root / "state", run_id=f"finish-{number}"
        ) as d:
            (result,) = d.run_replay(
                [FLOW], start=reference.start, end=reference.end, save_watermark=reference.save_watermark
            )
        assert result.status == "succeeded", result.error
        final = observe(root, "replay", canonical, check_delta_log)
        assert final.same(states[-1]), f"trial {number}: {final.describe()} != {states[-1].describe()}"
        assert replay_windows(root, reference.version) == reference.windows, f"trial {number}: chunk twice"
        return first

    outcomes = run_trials("replay", trial, TRIALS)
    if TRIALS >= 20:
        assert any(kind.startswith("point") and "killed" in kind for kind in outcomes), outcomes


# --------------------------------------------------------------------------- injected I/O errors


IO_TRIALS = 6


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_injected_io_errors_are_retried_and_exact(
    strategy: str,
    references: References,
    tmp_path: Path,
    canonical: Canonical,
    check_delta_log: CheckDeltaLog,
) -> None:
    """``COOLIE_FAULT=oserror:<point>:flow:<n>`` raises an OSError the first n times a point is
    reached. With n <= the retry count (2) the run succeeds after n retries with exactly the
    clean batch; with n = 3 it fails as transient with nothing written (after the commit:
    everything written), and the next run completes it — never a row twice."""

    def trial(number: int) -> str:
        rng = random.Random(f"{SEED}:io:{strategy}:{number}")
        reference = references.get(strategy, rng.randrange(SCENARIOS))
        step = rng.randint(1, reference.scenario.k)
        point, times = rng.choice(POINTS[strategy]), rng.randint(1, 3)
        before, after = reference.states[step - 1], reference.states[step]
        root = tmp_path / f"trial-{number}"
        shutil.copytree(reference.snapshot(step - 1), root)
        reference.scenario.arrive(root, step)
        code, out, err = finish(start_cli(run_args(root), COOLIE_FAULT=f"oserror:{point}:{FLOW}:{times}"))
        where = f"trial {number} (batch {step}, oserror at {point} x{times}): exit {code}\n{out}{err}"
        assert code in (0, 1), where
        record = json.loads(out.splitlines()[-1])
        injected = [r for r in record["retries"] if "injected I/O error" in r]
        assert len(injected) == len(record["retries"]), where
        if point == "after_read" and code == 0 and record["rows_read"] > 0:
            assert len(injected) == min(times, 2), where  # reached on every attempt
        state = observe(root, strategy, canonical, check_delta_log)
        if code == 0:
            assert state.same(after), f"{where}: {state.describe()} != {after.describe()}"
            return f"{point}: {record['status']} after {len(injected)} injected errors"
        assert record["status"] == "failed", where
        assert record["transient"], where
        assert "injected I/O error" in record["error"], where
        assert record["attempts"] == 3, where
        assert state.same(after if point == "after_commit" else before), f"{where}: {state.describe()}"
        in_process_run(root, f"rerun-{number}")
        assert observe(root, strategy, canonical, check_delta_log).same(after), where
        return f"{point}: failed, rerun completed"

    run_trials(f"io[{strategy}]", trial, IO_TRIALS)


def test_injected_io_error_fails_a_replay_that_then_resumes(
    tmp_path: Path, canonical: Canonical, check_delta_log: CheckDeltaLog
) -> None:
    """An I/O error right after a replay chunk committed fails the replay (exit 1) with that
    chunk kept; the next replay commits only the remaining chunks."""
    reference = build_replay_reference(0, tmp_path / "reference", canonical, check_delta_log)
    root = tmp_path / "trial"
    shutil.copytree(reference.folder, root)
    args = [
        "replay",
        str(root / "catalog.yaml"),
        *reference.args,
        "--state-dir",
        str(root / "state"),
        "--json",
    ]

    code, out, err = finish(start_cli(args, COOLIE_FAULT=f"oserror:after_chunk:{FLOW}"))

    assert code == 1, out + err
    record = json.loads(out.splitlines()[-1])
    assert record["status"] == "failed"
    assert "injected I/O error" in record["error"]
    assert observe(root, "replay", canonical, check_delta_log).same(reference.states[1])
    code, out, err = finish(start_cli(args))
    assert code == 0, out + err
    assert json.loads(out.splitlines()[-1])["chunks_skipped"] == 1
    assert observe(root, "replay", canonical, check_delta_log).same(reference.states[-1])
    assert replay_windows(root, reference.version) == reference.windows


# --------------------------------------------------------------------------- commit conflicts


CONFLICT_TRIALS = 4


def foreign_commit(table: Path, marker: int) -> None:
    """Another writer appends one current row with key ``marker`` (negative) to the table."""
    current = pl.read_delta(str(table))
    if "is_current" in current.columns:
        current = current.filter(pl.col("is_current"))
    row = current.head(1).with_columns(pl.lit(marker, pl.Int64).alias("id"))
    write_deltalake(str(table), row.to_arrow(), mode="append")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_commit_conflicts_are_retried_and_exact(
    strategy: str,
    references: References,
    tmp_path: Path,
    canonical: Canonical,
    check_delta_log: CheckDeltaLog,
) -> None:
    """A run pauses holding what it read (merge and scd2: their table snapshot too) while another
    writer commits — a foreign row, or the same batch of the same dataflow run by a second
    process. The paused run must then land its batch exactly once or see that it is in: the
    table is the clean batch (plus the foreign row where the load keeps it), each batch number
    committed once."""

    # Batches that change an existing table, so the run reaches its pause point.
    candidates = [
        (reference, step)
        for reference in (references.get(strategy, n) for n in range(SCENARIOS))
        for step in range(2, reference.scenario.k + 1)
        if reference.states[step - 1].rows is not None
        and not reference.states[step].same(reference.states[step - 1])
    ]

    def trial(number: int) -> str:
        rng = random.Random(f"{SEED}:conflict:{strategy}:{number}")
        reference, step = rng.choice(candidates)
        twin = number % 2 == 0
        point = "delta_commit" if strategy in ("merge", "scd2") else "before_commit"
        root = tmp_path / f"trial-{number}"
        shutil.copytree(reference.snapshot(step - 1), root)
        reference.scenario.arrive(root, step)
        release = root / "release"
        proc = start_cli(run_args(root), COOLIE_PAUSE=f"{point}:{FLOW}:{release}")
        table = root / "lake" / FLOW
        writer = "same dataflow" if twin else "foreign writer"
        try:
            paused = wait_for(Path(f"{release}.waiting"), proc)
            if paused and twin:
                in_process_run(root, f"twin-{number}")
            elif paused:
                foreign_commit(table, -1 - number)
        finally:
            release.touch()
            code, out, err = finish(proc)
        where = f"trial {number} (batch {step}, {writer}): exit {code}\n{out}{err}"
        assert paused, where
        assert code == 0, where
        record = json.loads(out.splitlines()[-1])
        state, expected = observe(root, strategy, canonical, check_delta_log), reference.states[step]
        assert state.same(expected), f"{where}: {state.describe()} != {expected.describe()}"
        if writer == "foreign writer" and strategy in ("append", "merge", "scd2"):
            assert state.foreign == 1, where
        return f"{writer}: {record['status']} after {record['attempts']} attempt(s)"

    run_trials(f"conflict[{strategy}]", trial, CONFLICT_TRIALS)


# --------------------------------------------------------------------------- a table killed while being created


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_log_folder_without_commits_is_no_table(
    strategy: str,
    references: References,
    tmp_path: Path,
    canonical: Canonical,
    check_delta_log: CheckDeltaLog,
) -> None:
    """A process killed while creating the destination can leave ``_delta_log/`` holding only a
    temporary commit file. That is no table: the next run creates it with its first batch
    (before, merge, replace_window and scd2 failed on it for good: "No files in log segment")."""
    reference = references.get(strategy, 0)
    root = tmp_path / "root"
    shutil.copytree(reference.snapshot(0), root)
    log = root / "lake" / FLOW / "_delta_log"
    log.mkdir(parents=True)
    (log / "_commit_0b9f0c6e-killed.json.tmp").write_text('{"commitInfo": {}}\n', encoding="utf-8")
    assert not delta_table_exists(root / "lake" / FLOW)
    for step in (1, 2):
        reference.scenario.arrive(root, step)
        in_process_run(root, f"after-kill-{step}")
        state = observe(root, strategy, canonical, check_delta_log)
        assert state.same(reference.states[step]), (
            f"{state.describe()} != {reference.states[step].describe()}"
        )


def test_oserror_faults_fire_the_given_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """``oserror:<point>:<dataflow>:<times>`` raises on the first ``times`` visits per dataflow
    (an empty dataflow matches any); several faults are comma-separated."""
    monkeypatch.setenv(FAULT_ENV, "oserror:unit_point_a::2,oserror:unit_point_b:only_this")
    for dataflow in ("one", "two"):
        for _ in range(2):
            with pytest.raises(OSError, match=f"injected I/O error at unit_point_a of dataflow {dataflow}"):
                fault_point("unit_point_a", dataflow)
        fault_point("unit_point_a", dataflow)  # used up
    fault_point("unit_point_b", "another")
    with pytest.raises(OSError, match="unit_point_b"):
        fault_point("unit_point_b", "only_this")
    fault_point("unit_point_b", "only_this")
