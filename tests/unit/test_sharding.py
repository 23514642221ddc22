"""Sharding: every dataflow in exactly one shard, groups together, the same in every process."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coolie_core.models import Dataflow
from coolie_core.sharding import ShardSpec, assign_shard, select_shard

# No example database: the checkout is shared and tests must not leave files in it.
SETTINGS = settings(database=None, max_examples=200, deadline=None)

names = st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True)
job_nums = st.integers(min_value=1, max_value=16)
groups = st.one_of(
    st.none(), st.integers(min_value=-50, max_value=50), st.sampled_from(["alpha", "beta", "gamma"])
)


def flow(name: str, group: int | str | None = None) -> Dataflow:
    return Dataflow.model_validate(
        {
            "name": name,
            "group": group,
            "source": {"format": "csv", "connection": "raw", "path": "x.csv"},
            "destination": {"connection": "lake", "table": "t"},
        }
    )


def shards_of(flows: list[Dataflow], job_num: int) -> list[list[str]]:
    return [
        [f.name for f in select_shard(flows, ShardSpec(job_num=job_num, job_index=i))] for i in range(job_num)
    ]


@SETTINGS
@given(flow_names=st.sets(names, max_size=40), job_num=job_nums)
def test_shards_partition_the_dataflows(flow_names: set[str], job_num: int) -> None:
    """Over all job_index values every dataflow is selected exactly once, input order kept."""
    flows = [flow(n) for n in sorted(flow_names)]

    shards = shards_of(flows, job_num)

    selected = [n for shard in shards for n in shard]
    assert sorted(selected) == sorted(flow_names)
    assert len(selected) == len(set(selected))
    for i, shard in enumerate(shards):
        assert shard == sorted(shard)  # select_shard keeps input order
        assert all(assign_shard(flow(n), job_num) == i for n in shard)


@SETTINGS
@given(members=st.dictionaries(names, groups, max_size=40), job_num=job_nums)
def test_a_group_stays_on_one_shard(members: dict[str, int | str | None], job_num: int) -> None:
    """Dataflows sharing a group land together; an integer group lands on ``group % job_num``."""
    flows = [flow(n, g) for n, g in members.items()]

    shard_of = {name: i for i, shard in enumerate(shards_of(flows, job_num)) for name in shard}

    assert set(shard_of) == set(members)
    by_group: dict[int | str, set[int]] = {}
    for name, group in members.items():
        if group is not None:
            by_group.setdefault(group, set()).add(shard_of[name])
        if isinstance(group, int):
            assert shard_of[name] == group % job_num
    assert all(len(shards) == 1 for shards in by_group.values())


def test_one_worker_takes_everything() -> None:
    flows = [flow("orders"), flow("customers", 7), flow("items", "alpha")]
    assert select_shard(flows, ShardSpec(job_num=1, job_index=0)) == flows
    assert select_shard(flows, None) == flows


@pytest.mark.parametrize(
    ("job_num", "job_index", "message"),
    [
        (0, 0, "job_num must be at least 1, got 0"),
        (-2, 0, "job_num must be at least 1, got -2"),
        (4, 4, r"job_index must be in 0\.\.3 for job_num 4, got 4"),
        (4, -1, r"job_index must be in 0\.\.3 for job_num 4, got -1"),
        (1, 1, r"job_index must be in 0\.\.0 for job_num 1, got 1"),
    ],
)
def test_shard_spec_rejects_bad_index_or_num(job_num: int, job_index: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShardSpec(job_num=job_num, job_index=job_index)


def test_assign_shard_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="job_num must be at least 1"):
        assign_shard(flow("orders"), 0)


_CHILD = """
import json, sys
from coolie_core.models import Dataflow
from coolie_core.sharding import assign_shard

members = json.loads(sys.argv[1])
flows = [
    Dataflow.model_validate({
        "name": name, "group": group,
        "source": {"format": "csv", "connection": "raw", "path": "x.csv"},
        "destination": {"connection": "lake", "table": "t"},
    })
    for name, group in members
]
shards = {f.name: [assign_shard(f, n) for n in range(1, 17)] for f in flows}
print(json.dumps({"builtin_hash": hash("orders"), "shards": shards}))
"""


def test_assignments_are_identical_across_hash_seeds() -> None:
    """Two interpreters with different PYTHONHASHSEED (so different ``hash()``) shard identically."""
    members: list[tuple[str, int | str | None]] = [(f"flow_{i}", None) for i in range(40)]
    members += [("grouped_a", "alpha"), ("grouped_b", "alpha"), ("pinned", 5)]

    def child(seed: str) -> dict[str, object]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(members)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        out: dict[str, object] = json.loads(done.stdout)
        return out

    one, two = child("1"), child("2")

    assert one["builtin_hash"] != two["builtin_hash"]  # the seeds really differ
    assert one["shards"] == two["shards"]
    here = {n: [assign_shard(flow(n, g), k) for k in range(1, 17)] for n, g in members}
    assert one["shards"] == here
