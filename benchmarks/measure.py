"""Run one measured case in a fresh interpreter and read back its figures.

Every case is a child process (``python -m benchmarks.<module> ...``) that prints one JSON object
as its last stdout line, so the peaks of two cases never mix. Peak RSS is the child's own
``VmHWM`` (high-water mark of its address space since ``exec``), which :func:`emit` adds to the
report; for other commands (the ``dagster`` CLI) it is the kernel's ``ru_maxrss`` from
``os.wait4``, which also counts the parent's size at spawn time, so the runner keeps the parent
small (it generates data in children too).
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measured:
    """What one child process reported, plus the kernel's view of it."""

    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    """CPU time (all threads) of the timed part when the child reports it, else of the whole child:
    steadier than wall time on a busy machine."""
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """The case's own timing when it reported one (imports and setup excluded), else wall time."""
        return float(self.report.get("seconds", self.wall_s))


class CaseFailed(RuntimeError):
    """A benchmark child exited non-zero (its stderr tail is in the message)."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started (``VmHWM``), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def run_child(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Measured:
    """Run ``args`` (a command line) to completion; wall time, peak RSS and its JSON report.

    The last stdout line that parses as a JSON object is the report (none is fine: e.g. the
    ``dagster`` CLI).
    """
    environ = {**os.environ, **(env or {})}
    environ.setdefault("PYTHONPATH", str(ROOT))
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=cwd or ROOT, env=environ, stdout=out_file, stderr=err_file, text=True
        )
        # Reap the child ourselves: wait4 returns the kernel's resource usage of that one child.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-25:])
        raise CaseFailed(f"{' '.join(args)} exited {proc.returncode}:\n{tail}")
    report: dict[str, Any] = {}
    for line in reversed(out.strip().splitlines()):
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            report = parsed
            break
    return Measured(
        wall_s=wall,
        peak_rss_mb=float(report.get("peak_rss_mb", usage.ru_maxrss / 1024)),
        cpu_s=float(report.get("cpu_s", usage.ru_utime + usage.ru_stime)),
        report=report,
    )


def python_child(module: str, *args: str, env: dict[str, str] | None = None) -> Measured:
    """``run_child`` of ``python -m <module> args...`` with this interpreter."""
    return run_child([sys.executable, "-m", module, *args], env=env)


def emit(report: dict[str, Any]) -> None:
    """Print a child's report (plus its peak RSS) as its last stdout line."""
    print(json.dumps({**report, "peak_rss_mb": peak_rss_mb()}, default=str), flush=True)
