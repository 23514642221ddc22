"""SIGKILL trials on a landing-zone dataflow (``source.incremental: files``): every rerun exact.

Each trial (seeded: ``COOLIE_FAULT_SEED``; ``COOLIE_LANDING_TRIALS`` scales it, default 20) picks
a load (append or merge, with quarantine), three drops of one to three files whose rows carry
random timestamps (often older than everything loaded), and the drop ``s`` whose ``coolie run``
is killed — at a named point (``COOLIE_FAULT``) or a random moment after the start. Drops before
``s`` are loaded in-process. After the kill the table and the quarantine table must each be the
clean reference before or after drop ``s``; one recovery run must make them the reference after
``s``; the remaining drops must end at the reference's final state, the Delta log must hold every
batch once, and an idle rerun must commit nothing. References come from clean in-process runs of
the same drops with the same modification times. Now and then a file is corrupt: with
``on_bad_file: quarantine`` it is one quarantine row, recorded with its batch, never retried.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_core.io.delta import delta_table_exists

from .conftest import Canonical, CheckDeltaLog

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("COOLIE_FAULT_SEED", "20240611"))
TRIALS = int(os.environ.get("COOLIE_LANDING_TRIALS", "20"))
WORKERS = 3
FLOW = "flow"
DROPS = 3
CLOCK = 1_700_000_000
POINTS = {
    "append": ("after_read", "after_quarantine", "before_commit", "after_commit"),
    "merge": ("after_read", "after_quarantine", "before_commit", "delta_commit", "after_commit"),
}


def drops_for(rng: random.Random, load: str) -> list[list[list[dict[str, Any]]]]:
    """``DROPS`` drops of 1-3 files of 1-4 rows; timestamps anywhere in 2020-2024 (so later drops
    are often older than what is loaded); now and then a row without ``v`` (quarantined) and a
    corrupt file (no rows: see :func:`write_drop`)."""
    drops, next_id = [], 0
    for d in range(DROPS):
        files = []
        for f in range(rng.randint(1, 3)):
            rows = []
            for _ in range(rng.randint(1, 4)):
                key = rng.randint(0, 5) if load == "merge" else next_id
                next_id += 1
                bad = rng.random() < 0.15
                day = f"{rng.randint(2020, 2024)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
                rows.append({"id": key, "ts": day, "v": None if bad else f"d{d}f{f}r{len(rows)}"})
            files.append([] if rng.random() < 0.15 else rows)
        drops.append(files)
    return drops


def write_drop(root: Path, index: int, files: list[list[dict[str, Any]]]) -> None:
    for f, rows in enumerate(files):
        path = root / "raw" / "drop" / f"d{index}-f{f}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not rows:  # a corrupt file: a row with more fields than the header
            path.write_text("id,ts,v\n1,2,3,4,5\n")
        else:
            pl.DataFrame(rows, schema={"id": pl.Int64, "ts": pl.String, "v": pl.String}).write_csv(path)
        stamp = CLOCK + index * 100 + f
        os.utime(path, (stamp, stamp))


def write_catalog(root: Path, load: str) -> Path:
    destination: dict[str, Any] = {"connection": "lake", "table": "events", "load": load}
    if load == "merge":
        destination["merge_keys"] = ["id"]
    document = {
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": [
            {
                "name": FLOW,
                "source": {
                    "format": "csv",
                    "connection": "raw",
                    "path": "drop/*.csv",
                    "incremental": "files",
                    "on_bad_file": "quarantine",
                },
                "transforms": [{"kind": "cast", "columns": {"id": "int64", "ts": "date", "v": "string"}}],
                "destination": destination,
                "quarantine": {"max_rejected": "100%", "rules": [{"kind": "not_null", "columns": ["v"]}]},
            }
        ],
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def run_in_process(catalog: Path) -> None:
    with Driver(load_catalog(catalog), state_dir=catalog.parent / "state") as driver:
        result = driver.run(dataflows=[FLOW]).result(FLOW)
    assert result.status in ("succeeded", "skipped"), (result.status, result.error)


State = tuple[pl.DataFrame | None, Counter[str]]


def snapshot(root: Path, canonical: Canonical) -> State:
    """The destination's rows (None: no table yet) and the quarantined raw rows (a multiset)."""
    table = root / "lake" / "events"
    rows = canonical(pl.read_delta(str(table))) if delta_table_exists(table) else None
    quarantine = root / "lake" / "_quarantine" / "events"
    raw = (
        pl.read_delta(str(quarantine)).get_column("raw_row").to_list()
        if delta_table_exists(quarantine)
        else []
    )
    # A bad file's row names it by path: the same file in the reference's folder is the same.
    return rows, Counter(r.replace(str(root), "<root>") for r in raw)


def same(a: State, b: State) -> bool:
    rows_a, rows_b = a[0], b[0]
    if (rows_a is None) != (rows_b is None):
        # A first batch whose every row was quarantined creates an empty table: same rows.
        present = rows_a if rows_a is not None else rows_b
        return present is not None and present.height == 0 and a[1] == b[1]
    return (rows_a is None or rows_b is None or rows_a.equals(rows_b)) and a[1] == b[1]


def references(root: Path, load: str, drops: list[Any], canonical: Canonical) -> list[State]:
    catalog = write_catalog(root, load)
    states = [snapshot(root, canonical)]
    for index, files in enumerate(drops):
        write_drop(root, index, files)
        run_in_process(catalog)
        states.append(snapshot(root, canonical))
    return states


def start_cli(catalog: Path, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("COOLIE_FAULT", "COOLIE_PAUSE")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coolie_core.cli",
            "run",
            str(catalog),
            "--state-dir",
            str(catalog.parent / "state"),
        ],
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def startup_seconds(tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long a small ``coolie run`` of a landing zone takes here (scales random kills)."""
    root = tmp_path_factory.mktemp("calibrate")
    catalog = write_catalog(root, "append")
    write_drop(root, 0, [[{"id": 1, "ts": "2024-01-01", "v": "x"}]])
    t0 = time.monotonic()
    proc = start_cli(catalog)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    return time.monotonic() - t0


def trial(
    number: int, base: Path, startup: float, canonical: Canonical, check_delta_log: CheckDeltaLog
) -> str:
    rng = random.Random(f"{SEED}-landing-{number}")
    load = rng.choice(["append", "merge"])
    drops = drops_for(rng, load)
    reference = references(base / f"ref-{number}", load, drops, canonical)
    root = base / f"trial-{number}"
    catalog = write_catalog(root, load)
    killed_at = rng.randint(0, DROPS - 1)
    for index in range(killed_at):
        write_drop(root, index, drops[index])
        run_in_process(catalog)
    write_drop(root, killed_at, drops[killed_at])
    if rng.random() < 0.5:
        point = rng.choice(POINTS[load])
        how = f"point {point}"
        proc = start_cli(catalog, COOLIE_FAULT=f"{point}:{FLOW}")
    else:
        delay = rng.uniform(0.3, 1.1) * startup
        how = f"delay {delay:.2f}s"
        proc = start_cli(catalog)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode in (0, -signal.SIGKILL), (
        f"trial {number} ({how}): exit {proc.returncode}\n{out}{err}"
    )
    before, after = reference[killed_at], reference[killed_at + 1]
    now = snapshot(root, canonical)
    context = f"trial {number} ({load}, drop {killed_at}, {how}, exit {proc.returncode})"
    assert (
        same(now, before) or same(now, after) or (same((now[0], before[1]), before) and now[1] == after[1])
    ), f"{context}: the table is neither before nor after the batch"
    run_in_process(catalog)  # recovery
    assert same(snapshot(root, canonical), after), f"{context}: recovery is not exact"
    for index in range(killed_at + 1, DROPS):
        write_drop(root, index, drops[index])
        run_in_process(catalog)
    assert same(snapshot(root, canonical), reference[-1]), f"{context}: final state differs"
    table = root / "lake" / "events"
    if delta_table_exists(table):
        check_delta_log(table, FLOW)
        version = DeltaTable(str(table)).version()
        run_in_process(catalog)
        assert DeltaTable(str(table)).version() == version, f"{context}: an idle rerun committed"
    shutil.rmtree(root)
    shutil.rmtree(base / f"ref-{number}")
    committed = "completed" if proc.returncode == 0 else "killed"
    return f"{how.split(' ')[0]}: {committed}"


def test_killed_landing_runs_rerun_exactly(
    tmp_path: Path, startup_seconds: float, canonical: Canonical, check_delta_log: CheckDeltaLog
) -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(
            pool.map(lambda n: trial(n, tmp_path, startup_seconds, canonical, check_delta_log), range(TRIALS))
        )
    tally = Counter(outcomes)
    assert sum(n for name, n in tally.items() if "killed" in name) >= TRIALS // 3, tally
