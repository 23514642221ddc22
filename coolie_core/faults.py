"""Fault injection for crash-safety tests: kill the process at a named point of a run.

Set ``COOLIE_FAULT`` to ``<point>`` or ``<point>:<dataflow>`` (points: ``after_read``,
``before_commit``, ``after_commit``, ``after_files`` for parquet destinations, ``after_chunk``).
The process then dies with SIGKILL at that point — no cleanup, no flush, like a power cut.
Unset (the default), this costs one dictionary lookup.
"""

import os
import signal

__all__ = ["FAULT_ENV", "fault_point"]

FAULT_ENV = "COOLIE_FAULT"


def fault_point(point: str, dataflow: str) -> None:
    """Die here if ``COOLIE_FAULT`` names this point (and dataflow)."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, flow = wanted.partition(":")
    if name == point and (not flow or flow == dataflow):
        os.kill(os.getpid(), signal.SIGKILL)
