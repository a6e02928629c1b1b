"""Timing and memory helpers shared by the benchmark scripts of this folder.

Every clock is :func:`time.perf_counter`; every memory figure is in KiB, as Linux reports
it. The scripts are run as ``python benchmarks/NAME.py``, so this folder is ``sys.path[0]``
and they import it as ``from timing import ...``.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any


class Stopwatch:
    """Wall-clock seconds of a ``with`` block.

    Examples
    --------
    >>> with Stopwatch() as sw:
    ...     pass
    >>> sw.seconds >= 0
    True
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._stop: float | None = None

    def __enter__(self) -> Stopwatch:
        self._stop = None
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds from entering the block to leaving it (to now while it runs).

        Raises
        ------
        RuntimeError
            If the block has not been entered.
        """
        if self._start is None:
            raise RuntimeError("Stopwatch not started: use it as `with Stopwatch() as sw:`")
        stop = time.perf_counter() if self._stop is None else self._stop
        return stop - self._start


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Time one call.

    Parameters
    ----------
    fn : callable
        Called once as ``fn(*args, **kwargs)``.
    *args, **kwargs
        Its arguments.

    Returns
    -------
    seconds : float
        Wall-clock seconds of the call.
    result : object
        What it returned.
    """
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def best_of(fn: Callable[[], Any], repeats: int, release: bool = False) -> tuple[float, Any]:
    """Fastest of several calls.

    Parameters
    ----------
    fn : callable
        Called ``repeats`` times without arguments.
    repeats : int
        Number of calls (at least 1).
    release : bool, optional
        Drop the previous call's result before the next call, so that at most one result
        is alive (for results too large to hold twice). By default it is held during the
        next call.

    Returns
    -------
    seconds : float
        The shortest wall-clock time of one call.
    result : object
        What the last call returned.
    """
    best, result = float("inf"), None
    for _ in range(repeats):
        if release:
            result = None
        seconds, result = timed(fn)
        best = min(best, seconds)
    return best, result


def median_of(fn: Callable[[], Any], repeats: int, release: bool = False) -> tuple[float, Any]:
    """Median time of several calls.

    Parameters
    ----------
    fn : callable
        Called ``repeats`` times without arguments.
    repeats : int
        Number of calls (at least 1).
    release : bool, optional
        Drop the previous call's result before the next call (as in :func:`best_of`).

    Returns
    -------
    seconds : float
        The median wall-clock time of one call (:func:`statistics.median`).
    result : object
        What the last call returned.
    """
    times, result = [], None
    for _ in range(repeats):
        if release:
            result = None
        seconds, result = timed(fn)
        times.append(seconds)
    return statistics.median(times), result


def rate(n: float, seconds: float) -> float:
    """Items per second: ``n / seconds``.

    Parameters
    ----------
    n : float
        Items processed.
    seconds : float
        Time they took.

    Returns
    -------
    float
        The rate.
    """
    return n / seconds


def max_rss_kib() -> int:
    """``ru_maxrss`` of this process (KiB on Linux).

    Returns
    -------
    int
        The peak resident set size as getrusage reports it. After fork + exec it can hold
        the parent's peak at the time of the exec: in a fresh subprocess prefer
        :func:`peak_rss_kib`.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kib() -> int:
    """Peak resident memory of this process alone (KiB).

    Returns
    -------
    int
        ``VmHWM`` of ``/proc/self/status``, which, unlike ``ru_maxrss``, does not inherit
        the parent's peak across fork + exec; :func:`max_rss_kib` where there is no
        ``/proc``.
    """
    from skysift.score.decode import peak_kib

    peak = peak_kib()
    return max_rss_kib() if peak is None else peak
