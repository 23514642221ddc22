"""Run named tasks in dependency order, independent ones in parallel, up to ``max_workers``.

No business logic lives here: a task is any ``Callable[[str], R]``. A failed task fails only
itself and skips its descendants; ``stop_on_error`` launches nothing new after the first failure.
Tasks must not start their own thread pools: the whole run shares one pool of ``max_workers``.
"""

import heapq
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = ["ExecutionResult", "TaskEvent", "TaskRecord", "execute"]

R = TypeVar("R")

Status = Literal["succeeded", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class TaskRecord(Generic[R]):
    """What happened to one task.

    Attributes:
        name: the task's name.
        status: succeeded, failed or skipped.
        result: what the task returned (succeeded only).
        error: the exception it raised (failed only).
        reason: why it was skipped, e.g. ``upstream orders failed`` or ``stop_on_error``.
        started: ``clock()`` when the task began, None when it never ran.
        ended: ``clock()`` when the task returned or raised, None when it never ran.
    """

    name: str
    status: Status
    result: R | None = None
    error: BaseException | None = None
    reason: str | None = None
    started: float | None = None
    ended: float | None = None


@dataclass(frozen=True, slots=True)
class TaskEvent(Generic[R]):
    """A progress event; ``record`` is None for ``started`` and set otherwise."""

    name: str
    kind: Literal["started", "finished", "skipped"]
    record: TaskRecord[R] | None = None


@dataclass(frozen=True, slots=True)
class ExecutionResult(Generic[R]):
    """The records of one run, keyed by name in input order (not completion order)."""

    records: dict[str, TaskRecord[R]]

    def _count(self, status: Status) -> int:
        return sum(1 for r in self.records.values() if r.status == status)

    @property
    def total(self) -> int:
        """Number of tasks."""
        return len(self.records)

    @property
    def succeeded(self) -> int:
        """Number of tasks that succeeded."""
        return self._count("succeeded")

    @property
    def failed(self) -> int:
        """Number of tasks that raised."""
        return self._count("failed")

    @property
    def skipped(self) -> int:
        """Number of tasks that never ran."""
        return self._count("skipped")

    @property
    def ok(self) -> bool:
        """True when every task succeeded."""
        return self.succeeded == self.total


def execute(
    names: Sequence[str],
    *,
    upstream: Mapping[str, Collection[str]],
    task: Callable[[str], R],
    max_workers: int = 4,
    stop_on_error: bool = False,
    on_event: Callable[[TaskEvent[R]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ExecutionResult[R]:
    """Run ``task(name)`` for every name, each after its upstreams succeeded.

    Upstreams outside ``names`` are ignored. Ready names start in input order. ``on_event`` is
    called on the calling thread. A ``KeyboardInterrupt`` or other non-``Exception`` raised by a
    task stops launching, lets running tasks finish, then propagates.

    Args:
        names: the tasks to run (unique).
        upstream: name -> names it depends on.
        task: called once per name in a worker thread; must not start its own pool.
        max_workers: tasks running at once.
        stop_on_error: after the first failure launch nothing new; the rest is skipped.
        on_event: progress callback.
        clock: timestamps for ``TaskRecord.started``/``ended``.

    Returns:
        One record per name.

    Raises:
        ValueError: duplicate names, ``max_workers < 1`` or a dependency cycle.

    >>> result = execute(["a", "b"], upstream={"b": ["a"]}, task=str.upper)
    >>> [(r.name, r.status, r.result) for r in result.records.values()]
    [('a', 'succeeded', 'A'), ('b', 'succeeded', 'B')]
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    order = list(names)
    index = {name: i for i, name in enumerate(order)}
    if len(index) != len(order):
        dupes = sorted({n for n in order if order.count(n) > 1})
        raise ValueError(f"duplicate task names: {', '.join(dupes)}")
    deps = {n: {u for u in upstream.get(n, ()) if u in index} for n in order}
    _check_acyclic(order, deps)
    downstream: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for u in deps[n]:
            downstream[u].append(n)

    records: dict[str, TaskRecord[R]] = {}
    waiting = {n: len(deps[n]) for n in order}
    ready = [index[n] for n in order if not waiting[n]]  # a heap of input positions
    heapq.heapify(ready)
    running: dict[Future[tuple[float, float, R | None, BaseException | None]], str] = {}
    stopping = False
    interrupt: BaseException | None = None

    def emit(event: TaskEvent[R]) -> None:
        if on_event is not None:
            on_event(event)

    def run(name: str) -> tuple[float, float, R | None, BaseException | None]:
        started = clock()
        try:
            result = task(name)
        except BaseException as exc:  # reported in the record; interrupts re-raised below
            return started, clock(), None, exc
        return started, clock(), result, None

    def skip(name: str, reason: str) -> None:
        records[name] = TaskRecord(name=name, status="skipped", reason=reason)
        emit(TaskEvent(name=name, kind="skipped", record=records[name]))

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="coolie") as pool:
        while True:
            # Submit only what can run now, so a submitted task is a started task.
            while ready and not stopping and len(running) < max_workers:
                name = order[heapq.heappop(ready)]
                running[pool.submit(run, name)] = name
                emit(TaskEvent(name=name, kind="started"))
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: index[running[f]]):
                name = running.pop(future)
                started, ended, result, error = future.result()
                if error is None:
                    records[name] = TaskRecord(
                        name=name, status="succeeded", result=result, started=started, ended=ended
                    )
                    for child in downstream[name]:
                        waiting[child] -= 1
                        if not waiting[child] and child not in records:
                            heapq.heappush(ready, index[child])
                else:
                    records[name] = TaskRecord(
                        name=name, status="failed", error=error, started=started, ended=ended
                    )
                    if not isinstance(error, Exception):
                        interrupt = interrupt or error
                    stopping = stopping or stop_on_error or interrupt is not None
                emit(TaskEvent(name=name, kind="finished", record=records[name]))
                if error is not None:
                    for child in _descendants(name, downstream=downstream, index=index):
                        if child not in records:
                            skip(child, f"upstream {name} failed")
    if interrupt is not None:
        raise interrupt
    for name in order:
        if name not in records:
            skip(name, "stop_on_error")
    return ExecutionResult(records={n: records[n] for n in order})


def _descendants(name: str, *, downstream: Mapping[str, list[str]], index: Mapping[str, int]) -> list[str]:
    """Every name reachable downstream of ``name``, in input order."""
    seen: set[str] = set()
    stack = list(downstream[name])
    while stack:
        child = stack.pop()
        if child not in seen:
            seen.add(child)
            stack.extend(downstream[child])
    return sorted(seen, key=index.__getitem__)


def _check_acyclic(order: list[str], deps: Mapping[str, set[str]]) -> None:
    """Raise ValueError naming one dependency cycle, if there is any."""
    waiting = {n: len(deps[n]) for n in order}
    downstream: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for u in deps[n]:
            downstream[u].append(n)
    queue = [n for n in order if not waiting[n]]
    while queue:
        for child in downstream[queue.pop()]:
            waiting[child] -= 1
            if not waiting[child]:
                queue.append(child)
    left = [n for n in order if waiting[n]]
    if not left:
        return
    # Every name left has an upstream that is also left: walking upstream must revisit one.
    path: list[str] = []
    node = left[0]
    while node not in path:
        path.append(node)
        node = min((u for u in deps[node] if waiting[u]), key=order.index)
    members = path[path.index(node) :][::-1]  # walked upstream; print it downstream
    first = members.index(min(members, key=order.index))
    cycle = [*members[first:], *members[:first], members[first]]
    raise ValueError(f"dependency cycle: {' -> '.join(cycle)} (each runs after the one before it)")
