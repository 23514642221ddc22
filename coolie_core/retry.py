"""Retry transient failures (I/O blips, Delta commit conflicts, dropped connections) with backoff.

The loop is tenacity's; this module decides *what* is transient and *how long* to wait, from a
:class:`~coolie_core.models.RetrySpec`. Sleep and randomness are injected so tests never sleep.
"""

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from coolie_core.errors import CatalogError, DataError, PermanentSourceError, TransientError, WatermarkError
from coolie_core.models import RetrySpec

__all__ = ["RetryAttempt", "call_with_retry", "is_transient"]

T = TypeVar("T")

# OSErrors that mean "wrong path or rights": the same on every attempt.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
# Permanent whatever caused them: retrying bad metadata or bad data cannot help.
_PERMANENT_ERRORS = (CatalogError, DataError, PermanentSourceError, WatermarkError)


@dataclass(frozen=True, slots=True)
class RetryAttempt:
    """One failed attempt that will be retried.

    Attributes:
        attempt: 1-based number of the attempt that failed.
        error_type: qualified class name of the exception, e.g. ``builtins.ConnectionError``.
        error: ``repr`` of the exception.
        delay: seconds slept before the next attempt.
    """

    attempt: int
    error_type: str
    error: str
    delay: float


@functools.cache
def _transient_types() -> tuple[type[BaseException], ...]:
    """Transient exception classes of optional libraries that are installed."""
    found: list[type[BaseException]] = [TransientError, ConnectionError, TimeoutError]
    try:
        from deltalake.exceptions import CommitFailedError
    except ImportError:  # pragma: no cover - deltalake is optional for the core
        pass
    else:
        found.append(CommitFailedError)
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:  # pragma: no cover - sqlalchemy is optional for the core
        pass
    else:
        found += [sa_exc.OperationalError, sa_exc.DisconnectionError, sa_exc.TimeoutError]
    return tuple(found)


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, _PERMANENT_ERRORS):
        return False
    if isinstance(exc, _transient_types()):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, _PERMANENT_OS_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying might help: I/O, commit conflicts and dropped connections.

    A catalog, data or watermark error never is, nor a :class:`PermanentSourceError` (what a
    python source raises when retrying cannot help); any other exception of a python source
    reaches here as a :class:`TransientError`. Otherwise the exception's ``__cause__`` is
    checked too (one level), so a ``SourceError`` raised from a ``ConnectionError`` is transient.

    >>> is_transient(ConnectionResetError()), is_transient(FileNotFoundError("x.csv"))
    (True, False)
    """
    if isinstance(exc, _PERMANENT_ERRORS):
        return False
    if _is_transient_one(exc):
        return True
    return exc.__cause__ is not None and _is_transient_one(exc.__cause__)


def _backoff(spec: RetrySpec, rng: random.Random) -> Callable[[tenacity.RetryCallState], float]:
    """The wait after a failed attempt: fixed or doubling, capped, plus jitter."""

    def wait(state: tenacity.RetryCallState) -> float:
        base = spec.delay
        if spec.backoff == "exponential":
            base = spec.delay * 2.0 ** (state.attempt_number - 1)
        delay = min(base, spec.max_delay)
        return delay + (rng.uniform(0, spec.jitter) if spec.jitter else 0.0)

    return wait


def call_with_retry(
    fn: Callable[[], T],
    *,
    spec: RetrySpec,
    is_retryable: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[RetryAttempt], None] | None = None,
) -> T:
    """Call ``fn``, retrying retryable errors up to ``spec.count`` times.

    Waits ``delay`` (fixed) or ``delay * 2**(n-1)`` (exponential) after attempt ``n``, at most
    ``max_delay``, plus ``uniform(0, jitter)``. A non-retryable error propagates at once; after
    the last attempt the original exception propagates.

    Args:
        fn: the work; re-run from scratch on each attempt.
        spec: count, delay, backoff, max_delay and jitter.
        is_retryable: which exceptions to retry.
        sleep: waits between attempts.
        rng: source of jitter (a fresh ``random.Random`` when None).
        on_retry: called before each wait.

    Returns:
        What ``fn`` returned.

    >>> from coolie_core.models import RetrySpec
    >>> outcomes = iter([ConnectionError("blip"), "done"])
    >>> def flaky() -> str:
    ...     outcome = next(outcomes)
    ...     if isinstance(outcome, Exception):
    ...         raise outcome
    ...     return outcome
    >>> waits: list[float] = []
    >>> call_with_retry(flaky, spec=RetrySpec(count=2, delay=0.5), sleep=waits.append)
    'done'
    >>> waits
    [0.5]
    """

    def report(state: tenacity.RetryCallState) -> None:
        if on_retry is None or state.outcome is None or state.next_action is None:
            return
        error = state.outcome.exception()
        kind = type(error)
        on_retry(
            RetryAttempt(
                attempt=state.attempt_number,
                error_type=f"{kind.__module__}.{kind.__qualname__}",
                error=repr(error),
                delay=state.next_action.sleep,
            )
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(1 + spec.count),
        wait=_backoff(spec, rng or random.Random()),  # noqa: S311 - jitter, not cryptography
        retry=tenacity.retry_if_exception(is_retryable),
        sleep=sleep,
        before_sleep=report,
        reraise=True,
    )
    return retrying(fn)
