"""Fault injection for crash-safety tests: kill, fail or pause the process at a named point of a run.

``COOLIE_FAULT`` holds one or more comma-separated faults:

* ``<point>`` or ``<point>:<dataflow>`` kills the process with SIGKILL at that point — no
  cleanup, no flush, like a power cut.
* ``oserror:<point>[:<dataflow>[:<times>]]`` raises an :class:`OSError` (``EIO``) the first
  ``<times>`` times (default 1) this process reaches the point for that dataflow — an I/O blip
  that the dataflow's retry spec retries like any transient error. An empty ``<dataflow>`` means
  every dataflow, e.g. ``oserror:before_commit::2``.

Points: ``after_read``, ``before_commit``, ``after_commit``, ``after_files`` (parquet
destinations before the watermark is stored; Spark appends between the Parquet files and the
Delta commit), ``delta_commit`` (a merge or scd2 has its table
snapshot and is about to commit), ``after_chunk`` (a replay chunk has committed),
``after_quarantine`` (rejected rows are written, the batch is not).

``COOLIE_PAUSE=<point>:<dataflow>:<file>`` pauses there instead: the process creates
``<file>.waiting`` and waits (up to 120 s) until ``<file>`` exists — so a test can make another
writer commit in between and provoke a real commit conflict.

Unset (the default), each point costs one dictionary lookup.
"""

import errno
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

__all__ = ["FAULT_ENV", "PAUSE_ENV", "fault_point"]

FAULT_ENV = "COOLIE_FAULT"
PAUSE_ENV = "COOLIE_PAUSE"

_raised: Counter[tuple[str, str]] = Counter()
"""How often each ``oserror`` fault has fired in this process, per (fault, dataflow)."""
_lock = threading.Lock()


def _should_raise(fault: str, point: str, dataflow: str) -> bool:
    """Whether an ``oserror:...`` fault fires now (and count it when it does)."""
    parts = fault.split(":")
    name = parts[1] if len(parts) > 1 else ""
    flow = parts[2] if len(parts) > 2 else ""
    times = int(parts[3]) if len(parts) > 3 and parts[3] else 1
    if name != point or (flow and flow != dataflow):
        return False
    with _lock:
        if _raised[fault, dataflow] >= times:
            return False
        _raised[fault, dataflow] += 1
    return True


def fault_point(point: str, dataflow: str) -> None:
    """Die, fail or pause here if ``COOLIE_FAULT`` / ``COOLIE_PAUSE`` names this point (and dataflow).

    Raises:
        OSError: an ``oserror:`` fault names this point and has not used up its count.
    """
    wanted = os.environ.get(FAULT_ENV)
    if wanted:
        for fault in wanted.split(","):
            if fault.startswith("oserror:"):
                if _should_raise(fault, point, dataflow):
                    raise OSError(errno.EIO, f"injected I/O error at {point} of dataflow {dataflow}")
                continue
            name, _, flow = fault.partition(":")
            if name == point and (not flow or flow == dataflow):
                os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        name, flow, release = pause.split(":", 2)
        if name == point and flow == dataflow:
            Path(release + ".waiting").touch()
            deadline = time.monotonic() + 120
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.05)
