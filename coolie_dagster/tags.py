"""Run tags coolie reads and writes (free-form run tags; asset tags are restricted)."""

from collections.abc import Sequence

__all__ = ["JOB_INDEX_TAG", "JOB_NUM_TAG", "MAX_RUNTIME_TAG", "STAGE_TAG", "run_limit_tags"]

JOB_NUM_TAG = "coolie/job_num"
"""How many shards the dataflows are split into."""
JOB_INDEX_TAG = "coolie/job_index"
"""Which shard (0-based) this run materialises."""
STAGE_TAG = "coolie/stage"
"""The catalog stage a run belongs to (for per-stage run limits)."""
MAX_RUNTIME_TAG = "dagster/max_runtime"
"""Seconds a run may take; Dagster's run monitoring enforces it."""


def run_limit_tags(
    stage: str, stage_timeout: int | None, flow_timeouts: Sequence[int | None]
) -> dict[str, str]:
    """Tags of a run of one stage's dataflows: the stage, and its time limit if there is one.

    The limit is the stage's ``timeout``; without one, the sum of the dataflows' ``timeout``s
    when every dataflow in the run declares one (they may run one after another), else none.
    """
    tags = {STAGE_TAG: stage}
    if stage_timeout is not None:
        tags[MAX_RUNTIME_TAG] = str(stage_timeout)
    elif flow_timeouts and all(t is not None for t in flow_timeouts):
        tags[MAX_RUNTIME_TAG] = str(sum(t for t in flow_timeouts if t is not None))
    return tags
