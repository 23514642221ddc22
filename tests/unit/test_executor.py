"""Behaviour of the dependency-aware parallel executor."""

import itertools
import threading
from collections.abc import Callable

import pytest

from coolie_core.executor import ExecutionResult, TaskEvent, execute

WAIT = 10.0  # seconds a synchronisation primitive may block before the test fails instead of hanging


class Clock:
    """A thread-safe logical clock: each reading is larger than every earlier one."""

    def __init__(self) -> None:
        self._ticks = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return float(next(self._ticks))


def run(
    names: list[str],
    upstream: dict[str, list[str]],
    task: Callable[[str], str],
    *,
    max_workers: int = 4,
    stop_on_error: bool = False,
    on_event: Callable[[TaskEvent[str]], None] | None = None,
) -> ExecutionResult[str]:
    """``execute`` with a logical clock, so start/end times order events without wall time."""
    return execute(
        names,
        upstream=upstream,
        task=task,
        max_workers=max_workers,
        stop_on_error=stop_on_error,
        on_event=on_event,
        clock=Clock(),
    )


def test_diamond_and_chain_run_in_dependency_order_with_branches_overlapping() -> None:
    """Every task starts after its upstreams ended; b and c (the diamond's arms) overlap."""
    upstream = {"b": ["a"], "c": ["a"], "d": ["b", "c"], "f": ["e"], "g": ["f"]}
    arms = threading.Barrier(2, timeout=WAIT)  # breaks (task fails) unless b and c run together

    def task(name: str) -> str:
        if name in ("b", "c"):
            arms.wait()
        return name.upper()

    result = run(["a", "b", "c", "d", "e", "f", "g"], upstream, task, max_workers=4)

    assert result.ok, {n: r.error for n, r in result.records.items() if r.error}
    assert list(result.records) == ["a", "b", "c", "d", "e", "f", "g"]
    assert {n: r.result for n, r in result.records.items()} == {n: n.upper() for n in "abcdefg"}
    started = {n: r.started for n, r in result.records.items() if r.started is not None}
    ended = {n: r.ended for n, r in result.records.items() if r.ended is not None}
    for child, parents in upstream.items():
        for parent in parents:
            assert ended[parent] < started[child], (parent, child)
    assert started["b"] < ended["c"]
    assert started["c"] < ended["b"]


def test_failure_skips_exactly_its_descendants() -> None:
    """b fails: c and f (downstream of b) are skipped; a, d and e still succeed."""
    upstream = {"b": ["a"], "c": ["b"], "d": ["a"], "f": ["b", "e"]}
    calls: list[str] = []
    lock = threading.Lock()
    boom = RuntimeError("b broke")

    def task(name: str) -> str:
        with lock:
            calls.append(name)
        if name == "b":
            raise boom
        return name

    result = run(["a", "b", "c", "d", "e", "f"], upstream, task)

    statuses = {n: r.status for n, r in result.records.items()}
    assert statuses == {
        "a": "succeeded",
        "b": "failed",
        "c": "skipped",
        "d": "succeeded",
        "e": "succeeded",
        "f": "skipped",
    }
    assert result.records["b"].error is boom
    assert result.records["c"].reason == "upstream b failed"
    assert result.records["f"].reason == "upstream b failed"
    assert result.records["c"].started is None
    assert sorted(calls) == ["a", "b", "d", "e"]
    assert (result.total, result.succeeded, result.failed, result.skipped, result.ok) == (6, 3, 1, 2, False)


def test_transitive_descendants_name_the_failed_task() -> None:
    """In a chain a -> b -> c, a failure of a skips b and c, both blaming a."""

    def task(name: str) -> str:
        raise ValueError(name)

    result = run(["a", "b", "c"], {"b": ["a"], "c": ["b"]}, task)

    assert [r.status for r in result.records.values()] == ["failed", "skipped", "skipped"]
    assert result.records["c"].reason == "upstream a failed"


def test_stop_on_error_lets_running_tasks_finish_and_skips_the_rest() -> None:
    """a fails while b runs: b completes, nothing new is launched, c and d are skipped."""
    release_b = threading.Event()
    calls: list[str] = []

    def task(name: str) -> str:
        calls.append(name)
        if name == "a":
            raise OSError("disk gone")
        if name == "b":
            assert release_b.wait(WAIT)
        return name

    def on_event(event: TaskEvent[str]) -> None:
        if event.name == "a" and event.kind == "finished":
            release_b.set()  # a's failure has been seen before b can free its slot

    result = run(
        ["a", "b", "c", "d", "e"],
        {"e": ["a"]},
        task,
        max_workers=2,
        stop_on_error=True,
        on_event=on_event,
    )

    statuses = {n: (r.status, r.reason) for n, r in result.records.items()}
    assert statuses == {
        "a": ("failed", None),
        "b": ("succeeded", None),
        "c": ("skipped", "stop_on_error"),
        "d": ("skipped", "stop_on_error"),
        "e": ("skipped", "upstream a failed"),
    }
    assert sorted(calls) == ["a", "b"]


def test_without_stop_on_error_independent_tasks_continue() -> None:
    """The same failure without stop_on_error still runs every independent task."""

    def task(name: str) -> str:
        if name == "a":
            raise OSError("disk gone")
        return name

    result = run(["a", "b", "c", "d", "e"], {"e": ["a"]}, task, max_workers=2)

    assert [r.status for r in result.records.values()] == [
        "failed",
        "succeeded",
        "succeeded",
        "succeeded",
        "skipped",
    ]


def test_max_workers_bounds_concurrency() -> None:
    """Nine independent tasks with max_workers=3 never run more than three at once, and do reach three."""
    lock = threading.Lock()
    active = 0
    peak = 0
    batch = threading.Barrier(3, timeout=WAIT)

    def task(name: str) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        batch.wait()
        with lock:
            active -= 1
        return name

    result = run([f"t{i}" for i in range(9)], {}, task, max_workers=3)

    assert result.ok
    assert peak == 3


def test_ready_tasks_start_in_input_order() -> None:
    """With one worker, independent names run in the given order."""
    events: list[tuple[str, str]] = []

    result = run(
        ["c", "a", "b"], {}, str.upper, max_workers=1, on_event=lambda e: events.append((e.kind, e.name))
    )

    assert result.ok
    assert events == [
        ("started", "c"),
        ("finished", "c"),
        ("started", "a"),
        ("finished", "a"),
        ("started", "b"),
        ("finished", "b"),
    ]


def test_events_report_skips_with_their_record() -> None:
    """A skipped task emits one ``skipped`` event carrying its record; ``started`` has none."""
    events: list[TaskEvent[str]] = []

    def task(name: str) -> str:
        raise RuntimeError(name)

    run(["a", "b"], {"b": ["a"]}, task, max_workers=1, on_event=events.append)

    assert [(e.kind, e.name) for e in events] == [("started", "a"), ("finished", "a"), ("skipped", "b")]
    assert events[0].record is None
    finished, skipped = events[1].record, events[2].record
    assert finished is not None
    assert finished.status == "failed"
    assert skipped is not None
    assert skipped.reason == "upstream a failed"


def test_cycle_is_rejected_naming_its_members() -> None:
    """a -> b -> c -> a is a cycle; d merely hangs off it and is not named."""
    with pytest.raises(ValueError, match=r"^dependency cycle: a -> b -> c -> a \("):
        run(["a", "b", "c", "d"], {"a": ["c"], "b": ["a"], "c": ["b"], "d": ["a"]}, str)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(ValueError, match="a -> a"):
        run(["a"], {"a": ["a"]}, str)


def test_upstreams_outside_names_are_ignored() -> None:
    """Only b is selected: its upstream a (not selected) neither blocks nor runs."""
    calls: list[str] = []

    def task(name: str) -> str:
        calls.append(name)
        return name

    result = run(["b"], {"b": ["a"], "a": ["b"]}, task)

    assert result.ok
    assert calls == ["b"]


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate task names: a"):
        run(["a", "b", "a"], {}, str)
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        run(["a"], {}, str, max_workers=0)


def test_empty_run_is_ok() -> None:
    result = run([], {}, str)
    assert (result.total, result.ok) == (0, True)


def test_keyboard_interrupt_in_a_task_drains_the_pool_and_propagates() -> None:
    """A task's KeyboardInterrupt stops launching, lets running tasks finish, then re-raises."""
    release_b = threading.Event()
    finished: list[str] = []

    def task(name: str) -> str:
        if name == "a":
            raise KeyboardInterrupt
        if name == "b":
            assert release_b.wait(WAIT)
        finished.append(name)
        return name

    def on_event(event: TaskEvent[str]) -> None:
        if event.name == "a" and event.kind == "finished":
            release_b.set()

    with pytest.raises(KeyboardInterrupt):
        run(["a", "b", "c"], {}, task, max_workers=2, on_event=on_event)

    assert finished == ["b"]
