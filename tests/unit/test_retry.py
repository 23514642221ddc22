"""Retries: which errors are transient, how long we wait, and a real Delta commit conflict."""

import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy.exc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from coolie_core.errors import (
    CatalogError,
    DataError,
    SourceError,
    TransientError,
    WatermarkError,
    WriteError,
)
from coolie_core.models import RetrySpec
from coolie_core.retry import RetryAttempt, call_with_retry, is_transient


def failing(errors: list[BaseException], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A function raising ``errors`` one per call, then returning ``result``; and its call log."""
    calls: list[int] = []

    def fn() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


def no_sleep(seconds: float) -> None:
    pytest.fail(f"unexpected retry after {seconds}s")


def test_fails_twice_then_succeeds_with_exponential_delays() -> None:
    fn, calls = failing([ConnectionError("reset"), TransientError("blip")])
    waits: list[float] = []
    attempts: list[RetryAttempt] = []

    result = call_with_retry(
        fn,
        spec=RetrySpec(count=3, delay=1, backoff="exponential"),
        sleep=waits.append,
        on_retry=attempts.append,
    )

    assert result == "ok"
    assert calls == [1, 2, 3]
    assert waits == [1.0, 2.0]
    assert attempts == [
        RetryAttempt(
            attempt=1, error_type="builtins.ConnectionError", error="ConnectionError('reset')", delay=1.0
        ),
        RetryAttempt(
            attempt=2,
            error_type="coolie_core.errors.TransientError",
            error="TransientError('blip')",
            delay=2.0,
        ),
    ]


def test_fixed_backoff_waits_the_same_each_time() -> None:
    fn, _ = failing([OSError("io")] * 3)
    waits: list[float] = []

    call_with_retry(fn, spec=RetrySpec(count=3, delay=0.25, backoff="fixed"), sleep=waits.append)

    assert waits == [0.25, 0.25, 0.25]


def test_delays_are_capped_at_max_delay() -> None:
    fn, _ = failing([TimeoutError()] * 5)
    waits: list[float] = []

    call_with_retry(fn, spec=RetrySpec(count=5, delay=1, max_delay=5), sleep=waits.append)

    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_within_bounds_and_follows_the_seed() -> None:
    spec = RetrySpec(count=6, delay=1, max_delay=8, jitter=0.5)
    runs: list[list[float]] = []
    for _ in range(2):
        fn, _ = failing([ConnectionError()] * 6)
        waits: list[float] = []
        call_with_retry(fn, spec=spec, sleep=waits.append, rng=random.Random(42))
        runs.append(waits)

    bases = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert runs[0] == runs[1]
    assert all(b <= w <= b + 0.5 for b, w in zip(bases, runs[0], strict=True))
    assert runs[0] != bases  # jitter was actually added


def test_last_failure_propagates_as_the_original_exception() -> None:
    last = ConnectionError("third")
    fn, calls = failing([ConnectionError("first"), ConnectionError("second"), last])
    waits: list[float] = []

    with pytest.raises(ConnectionError) as info:
        call_with_retry(fn, spec=RetrySpec(count=2, delay=1), sleep=waits.append)

    assert info.value is last
    assert calls == [1, 2, 3]
    assert waits == [1.0, 2.0]


@pytest.mark.parametrize("error", [DataError("bad cast"), ValueError("nope"), FileNotFoundError("x.csv")])
def test_non_transient_errors_are_not_retried(error: Exception) -> None:
    fn, calls = failing([error])
    waits: list[float] = []

    with pytest.raises(type(error)):
        call_with_retry(fn, spec=RetrySpec(count=5, delay=1), sleep=waits.append)

    assert calls == [1]
    assert waits == []


def test_count_zero_means_one_attempt() -> None:
    fn, calls = failing([ConnectionError("once")])

    with pytest.raises(ConnectionError):
        call_with_retry(fn, spec=RetrySpec(count=0), sleep=no_sleep)

    assert calls == [1]


def test_custom_predicate_decides_what_is_retried() -> None:
    fn, calls = failing([ValueError("retry me")])

    assert (
        call_with_retry(
            fn, spec=RetrySpec(count=1, delay=0), is_retryable=lambda e: True, sleep=lambda s: None
        )
        == "ok"
    )
    assert calls == [1, 2]


def test_keyboard_interrupt_is_never_retried() -> None:
    fn, calls = failing([KeyboardInterrupt()])

    with pytest.raises(KeyboardInterrupt):
        call_with_retry(fn, spec=RetrySpec(count=3), is_retryable=is_transient, sleep=no_sleep)

    assert calls == [1]


def caused(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransientError("blip"), True),
        (ConnectionResetError(), True),
        (ConnectionError(), True),
        (TimeoutError(), True),
        (OSError("EIO"), True),
        (CommitFailedError("conflict"), True),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")), True),
        (sqlalchemy.exc.DisconnectionError(), True),
        (sqlalchemy.exc.TimeoutError(), True),
        (caused(SourceError("cannot read orders"), ConnectionResetError()), True),
        (caused(WriteError("cannot write orders"), CommitFailedError("conflict")), True),
        (FileNotFoundError("x.csv"), False),
        (PermissionError(), False),
        (IsADirectoryError(), False),
        (NotADirectoryError(), False),
        (caused(SourceError("no such file"), FileNotFoundError("x.csv")), False),
        (SourceError("no such file"), False),
        (CatalogError([]), False),
        (DataError("bad cast"), False),
        (caused(DataError("bad cast"), OSError("EIO")), False),
        (WatermarkError("regress"), False),
        (ValueError(), False),
        (TypeError(), False),
        (pl.exceptions.SchemaError("schema"), False),
        (pl.exceptions.ComputeError("compute"), False),
        (pl.exceptions.ColumnNotFoundError("col"), False),
        (TableNotFoundError("missing"), False),
        (RuntimeError(), False),
        (KeyboardInterrupt(), False),
        # only one level of __cause__ is followed
        (caused(RuntimeError(), caused(RuntimeError(), ConnectionError())), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_is_transient_classification(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def _set_value(table: DeltaTable, key: int, value: str) -> None:
    source = pl.DataFrame({"id": [key], "v": [value]})
    (
        table.merge(source, predicate="t.id = s.id", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .execute()
    )


def test_real_delta_commit_conflict_is_transient_and_retried_until_both_writes_land(tmp_path: Path) -> None:
    """Two writers merge into one table; the stale one hits a commit conflict, retries, and lands."""
    path = str(tmp_path / "orders")
    write_deltalake(path, pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    stale = DeltaTable(path)  # opened at version 0, before the other writer commits
    _set_value(DeltaTable(path), 1, "first")  # version 1

    with pytest.raises(CommitFailedError) as info:
        _set_value(stale, 2, "second")
    assert is_transient(info.value)

    handles = iter([DeltaTable(path, version=0)])  # the first attempt writes from a stale snapshot

    def write() -> int:
        table = next(handles, None) or DeltaTable(path)  # retries re-open the table
        _set_value(table, 2, "second")
        return table.version()

    waits: list[float] = []
    attempts: list[RetryAttempt] = []
    version = call_with_retry(
        write, spec=RetrySpec(count=3, delay=0.1), sleep=waits.append, on_retry=attempts.append
    )

    assert version == 2
    assert waits == [0.1]
    assert [a.error_type.rsplit(".", 1)[-1] for a in attempts] == ["CommitFailedError"]
    final = DeltaTable(path)
    assert final.version() == 2
    assert pl.read_delta(path).sort("id").rows() == [(1, "first"), (2, "second")]
