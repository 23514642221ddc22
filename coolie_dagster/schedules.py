"""Scheduled runs: one Dagster schedule per stage cron, never one per dataflow.

A dataflow runs at its own ``schedule`` or else its stage's, in the stage's timezone. Dataflows
sharing a (cron, timezone) share one schedule whose tick yields run requests that each select a
subset of assets:

* a stage with ``shards: N`` gives N requests tagged ``coolie/job_num`` / ``coolie/job_index``,
  each selecting the assets :func:`coolie_core.sharding.assign_shard` puts on that shard (the
  same split as ``coolie plan --job-num``);
* a partitioned dataflow runs its latest complete window (see :func:`latest_window`), in a request
  of its own: Dagster runs one partition key per run, and unpartitioned assets stay out of it.
* a run never spans stages: it carries ``coolie/stage`` (and the stage ``timeout`` as
  ``dagster/max_runtime``) like the stage jobs' runs, so per-stage run limits hold for it too.

Names say what runs: a stage's ``schedule`` gives ``<stage>_schedule``; dataflows with their own
``schedule`` give ``<dataflow>_schedule`` (several dataflows of one stage sharing the same own
cron share one schedule, ``<stage>_<cron>_schedule``, so the count stays per cron, not per
dataflow). Dagster resolves a schedule's ``target`` into one job, and a job may hold only one
partitions definition: when one schedule covers dataflows with different partition specs, the
extra specs get their own (``<name>_<every>_<hash>_schedule``).

Whether a schedule starts running on a fresh instance is the catalog's ``default_status``: the
stage's for its schedule, the dataflow's (else its stage's) for a dataflow's own schedule.
"""

import datetime as dt
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg

from coolie_core.catalog import LoadedCatalog
from coolie_core.models import Dataflow, PartitionSpec
from coolie_core.models.automation import DefaultStatus
from coolie_core.sharding import assign_shard
from coolie_core.windows import Window, floor_boundary, normalize_bound, plan_windows
from coolie_dagster.tags import JOB_INDEX_TAG, JOB_NUM_TAG, STAGE_TAG, run_limit_tags
from coolie_dagster.translator import CoolieTranslator

__all__ = ["JOB_INDEX_TAG", "JOB_NUM_TAG", "STAGE_TAG", "build_schedules", "latest_window"]


def latest_window(spec: PartitionSpec, *, now: dt.datetime) -> Window | None:
    """The last complete window of ``spec`` at ``now``: the last key ``plan_windows`` gives up to now.

    A bounded spec whose end has passed gives its final window; None when no window has ended yet
    (or for open-ended integer partitions, which have no notion of time).

    >>> spec = PartitionSpec(column="ts", every="month", start=dt.date(2024, 1, 1))
    >>> latest_window(spec, now=dt.datetime(2024, 6, 15, 8, tzinfo=dt.UTC)).key
    '2024-05-01'
    """
    every, step, tz = spec.every, spec.step, spec.timezone
    if every == "integer":
        if not isinstance(spec.end, int):
            return None
        end: dt.datetime | int = spec.end
        before: dt.datetime | int = floor_boundary(spec.end - 1, every=every, step=step)
    else:
        end_t = floor_boundary(now, every=every, step=step, timezone=tz)
        if spec.end is not None:
            end_t = min(end_t, normalize_bound(spec.end, timezone=tz))
        end = end_t
        # Plan only the window holding the instant before ``end``: never the whole history.
        before = floor_boundary(end_t - dt.timedelta(microseconds=1), every=every, step=step, timezone=tz)
    windows = plan_windows(spec, start=before, end=end)
    return windows[-1] if windows else None


@dataclass(frozen=True, slots=True)
class _Member:
    flow: Dataflow
    key: dg.AssetKey
    shards: int
    timeout: int | None
    """The stage's timeout (seconds), the run's ``dagster/max_runtime``."""


def _partitions_identity(spec: PartitionSpec | None) -> str | None:
    """Equal for specs that give the same Dagster partitions (the column does not matter)."""
    if spec is None:
        return None
    return json.dumps(spec.model_dump(mode="json", exclude={"column"}), sort_keys=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text.replace("*", "x")).strip("_").lower() or "x"


def _requests(
    members: Sequence[_Member], *, tick: dt.datetime, log: logging.Logger | None
) -> list[dg.RunRequest]:
    """The run requests of one tick: per stage and shard, one unpartitioned request and one per window.

    Runs stay within one stage so they carry the stage's tags (its concurrency limit and timeout)
    like the stage jobs' runs do.
    """
    requests: list[dg.RunRequest] = []
    by_stage: dict[tuple[str, int, int | None], list[_Member]] = defaultdict(list)
    for member in members:
        by_stage[(member.flow.stage, member.shards, member.timeout)].append(member)
    stamp = tick.astimezone(dt.UTC).isoformat()
    for (stage, job_num, timeout), group in sorted(by_stage.items(), key=lambda kv: kv[0][0]):
        shard_of = {m.flow.name: assign_shard(m.flow, job_num) for m in group}
        for job_index in range(job_num):
            shard = [m for m in group if shard_of[m.flow.name] == job_index]
            tags = run_limit_tags(stage, timeout, [m.flow.timeout for m in shard])
            if job_num > 1:
                tags |= {JOB_NUM_TAG: str(job_num), JOB_INDEX_TAG: str(job_index)}
            by_key: dict[str | None, list[_Member]] = defaultdict(list)
            for member in shard:
                spec = member.flow.partitions
                window = None if spec is None else latest_window(spec, now=tick)
                if spec is not None and window is None:
                    if log is not None:
                        log.info(f"coolie: {member.flow.name} has no complete window at {stamp}; not run")
                    continue
                by_key[None if window is None else window.key].append(member)
            for partition_key, selected in sorted(by_key.items(), key=lambda kv: kv[0] or ""):
                requests.append(
                    dg.RunRequest(
                        run_key=f"{stamp}|{stage}|shard {job_index}/{job_num}|{partition_key or '-'}",
                        asset_selection=sorted((m.key for m in selected), key=lambda k: k.to_user_string()),
                        partition_key=partition_key,
                        tags=tags,
                    )
                )
    return requests


def _schedule(
    name: str,
    *,
    cron: str,
    timezone: str,
    members: list[_Member],
    description: str,
    status: DefaultStatus,
) -> dg.ScheduleDefinition:
    def tick(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        # A generator: Dagster accepts a single request or an iterator here, not a list.
        when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        requests = _requests(members, tick=when, log=context.log)
        if not requests:
            yield dg.SkipReason(f"no dataflow has a complete window at {when.isoformat()}")
        yield from requests

    return dg.ScheduleDefinition(
        name=name,
        cron_schedule=cron,
        execution_timezone=timezone,
        target=dg.AssetSelection.assets(*sorted({m.key for m in members}, key=lambda k: k.to_user_string())),
        execution_fn=tick,
        description=description,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if status == "running" else dg.DefaultScheduleStatus.STOPPED
        ),
    )


def build_schedules(
    loaded: LoadedCatalog, *, translator: CoolieTranslator | None = None
) -> list[dg.ScheduleDefinition]:
    """The schedules of the catalog's enabled dataflows (see the module docs for their names).

    Example:
        >>> from coolie_core.catalog import load_catalog
        >>> schedules = build_schedules(load_catalog("examples/demo/catalog.yaml"))  # doctest: +SKIP
        >>> [s.name for s in schedules]  # doctest: +SKIP
        ['bronze_schedule', 'gold_schedule', 'silver_schedule']
    """
    translator = translator or CoolieTranslator()
    catalog = loaded.catalog
    # (stage, cron, timezone, own cron?, status) -> members
    groups: dict[tuple[str, str, str, bool, DefaultStatus], list[_Member]] = defaultdict(list)
    for flow in catalog.dataflows:
        cron = catalog.schedule_for(flow)
        if not flow.enabled or cron is None:
            continue
        stage = catalog.stages.get(flow.stage)
        timezone = stage.timezone if stage else "UTC"
        shards = stage.shards if stage else 1
        timeout = stage.timeout if stage else None
        stage_status: DefaultStatus = stage.default_status if stage else "stopped"
        own = stage is None or stage.schedule != cron
        status = (flow.default_status or stage_status) if own else stage_status
        groups[(flow.stage, cron, timezone, own, status)].append(
            _Member(flow, translator.get_asset_key(flow), shards, timeout)
        )

    schedules: list[dg.ScheduleDefinition] = []
    used: set[str] = set()
    for (stage_name, cron, timezone, own, status), members in sorted(groups.items()):
        if not own:
            prefix = stage_name
        elif len(members) == 1:
            prefix = members[0].flow.name
        else:
            prefix = f"{stage_name}_{_slug(cron)}"
        if f"{prefix}_schedule" in used:  # a dataflow named like a stage, two statuses on one cron
            prefix += (
                "_" + hashlib.sha256(f"{stage_name}|{cron}|{timezone}|{status}".encode()).hexdigest()[:6]
            )
        used.add(f"{prefix}_schedule")
        by_spec: dict[str | None, list[_Member]] = defaultdict(list)
        for member in members:
            by_spec[_partitions_identity(member.flow.partitions)].append(member)
        partitioned = sorted(k for k in by_spec if k is not None)
        # Unpartitioned dataflows ride on the first schedule; each further partitions spec gets its own.
        splits = [by_spec.get(None, []) + (by_spec[partitioned[0]] if partitioned else [])]
        names = [f"{prefix}_schedule"]
        for identity in partitioned[1:]:
            spec = by_spec[identity][0].flow.partitions
            assert spec is not None
            splits.append(by_spec[identity])
            names.append(
                f"{prefix}_{spec.every}_{hashlib.sha256(identity.encode()).hexdigest()[:6]}_schedule"
            )
        for name, split in zip(names, splits, strict=True):
            flows = ", ".join(sorted(m.flow.name for m in split)[:5]) + (", ..." if len(split) > 5 else "")
            what = f"stage {stage_name}" if not own else f"stage {stage_name}, own schedule"
            schedules.append(
                _schedule(
                    name,
                    cron=cron,
                    timezone=timezone,
                    members=split,
                    status=status,
                    description=(
                        f"coolie {what}: runs {len(split)} dataflow(s) at '{cron}' ({timezone}): {flows}"
                    ),
                )
            )
    return schedules
