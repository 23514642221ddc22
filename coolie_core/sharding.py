"""Stable assignment of dataflows to shards (``job_num`` workers, ``job_index`` this one).

The hash is SHA-256 of the name (never Python's per-process salted builtin hashing), so
every process on every machine agrees. A dataflow with a ``group`` goes where its group goes:
``group % job_num`` for an integer group, the hash of the group name otherwise.
"""

import hashlib
from collections.abc import Iterable

from coolie_core.models import Dataflow

__all__ = ["ShardSpec", "assign_shard", "select_shard", "stable_hash"]


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process.

    >>> stable_hash("orders")
    2023957755765852388
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


class ShardSpec:
    """``job_num`` workers, of which this is ``job_index`` (0-based)."""

    __slots__ = ("job_index", "job_num")

    def __init__(self, *, job_num: int, job_index: int) -> None:
        if job_num < 1:
            raise ValueError(f"job_num must be at least 1, got {job_num}")
        if not 0 <= job_index < job_num:
            raise ValueError(f"job_index must be in 0..{job_num - 1} for job_num {job_num}, got {job_index}")
        self.job_num = job_num
        self.job_index = job_index

    def __repr__(self) -> str:
        return f"ShardSpec(job_num={self.job_num}, job_index={self.job_index})"


def assign_shard(flow: Dataflow, job_num: int) -> int:
    """The shard index (``0 <= i < job_num``) that runs ``flow``."""
    if job_num < 1:
        raise ValueError(f"job_num must be at least 1, got {job_num}")
    group = flow.group
    if isinstance(group, int):
        return group % job_num
    key = f"group:{group}" if group is not None else flow.name
    return stable_hash(key) % job_num


def select_shard(flows: Iterable[Dataflow], shard: ShardSpec | None) -> list[Dataflow]:
    """The dataflows of ``shard`` (all of them when ``shard`` is None), input order kept."""
    if shard is None:
        return list(flows)
    return [f for f in flows if assign_shard(f, shard.job_num) == shard.job_index]
