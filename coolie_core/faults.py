"""Fault injection for crash-safety tests: kill or pause the process at a named point of a run.

``COOLIE_FAULT=<point>`` or ``<point>:<dataflow>`` kills the process with SIGKILL at that point —
no cleanup, no flush, like a power cut. Points: ``after_read``, ``before_commit``,
``after_commit``, ``after_files`` (parquet destinations, before the watermark is stored),
``delta_commit`` (a merge has its table snapshot and is about to commit).

``COOLIE_PAUSE=<point>:<dataflow>:<file>`` pauses there instead: the process creates
``<file>.waiting`` and waits (up to 120 s) until ``<file>`` exists — so a test can make another
writer commit in between and provoke a real commit conflict.

Unset (the default), each point costs one dictionary lookup.
"""

import os
import signal
import time
from pathlib import Path

__all__ = ["FAULT_ENV", "PAUSE_ENV", "fault_point"]

FAULT_ENV = "COOLIE_FAULT"
PAUSE_ENV = "COOLIE_PAUSE"


def fault_point(point: str, dataflow: str) -> None:
    """Die or pause here if ``COOLIE_FAULT`` / ``COOLIE_PAUSE`` names this point (and dataflow)."""
    wanted = os.environ.get(FAULT_ENV)
    if wanted:
        name, _, flow = wanted.partition(":")
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
