"""Run tags coolie reads and writes (free-form run tags; asset tags are restricted)."""

__all__ = ["JOB_INDEX_TAG", "JOB_NUM_TAG", "MAX_RUNTIME_TAG", "STAGE_TAG"]

JOB_NUM_TAG = "coolie/job_num"
"""How many shards the dataflows are split into."""
JOB_INDEX_TAG = "coolie/job_index"
"""Which shard (0-based) this run materialises."""
STAGE_TAG = "coolie/stage"
"""The catalog stage a run belongs to (for per-stage run limits)."""
MAX_RUNTIME_TAG = "dagster/max_runtime"
"""Seconds a run may take; Dagster's run monitoring enforces it."""
