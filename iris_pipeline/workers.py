"""A small process pool whose dead workers cost only their own task, and which always shuts down.

Why not `concurrent.futures.ProcessPoolExecutor`: on Python 3.11, once one of its workers is killed
(the OOM killer, an operator) the pool is broken for good, and `shutdown()` can join a surviving worker
forever, so the interpreter never exits (an `iris_ingest` run would hang while holding the warehouse).
Here each worker has its own pipe and the caller drives the pool while it waits for a result: a worker
that dies is replaced and its task is run again on the replacement; a task that kills its worker
`max_attempts` times, or outlives `task_timeout_s`, fails with `WorkerDied` instead of hanging. Closing
the pool asks each worker to stop, then kills whatever is still alive: it never waits without a bound.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import sys
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

log = logging.getLogger(__name__)


class WorkerDied(RuntimeError):
    """A task's worker process died (or was killed for running too long) on every attempt."""


class InProcess:
    """The pool interface, each task run at once in this process."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _worker_main(conn: Connection, initializer: Callable[[], None] | None) -> None:
    if initializer is not None:
        initializer()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        fn, args = job
        try:
            reply = (True, fn(*args))
        except BaseException as exc:  # report every failure: the parent decides
            reply = (False, exc)
        try:
            conn.send(reply)
        except Exception as exc:  # the result or the exception would not pickle
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


class _Worker:
    def __init__(self, ctx: multiprocessing.context.BaseContext, initializer: Callable[[], None] | None):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, initializer), daemon=True)
        self.process.start()
        child.close()
        self.job: _Job | None = None
        self.started_at = 0.0

    def stop(self, grace_s: float) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class _Job:
    def __init__(self, pool: "WorkerPool", fn: Callable[..., Any], args: tuple):
        self.pool, self.fn, self.args = pool, fn, args
        self.future: Future = Future()
        self.attempts = 0

    def result(self) -> Any:
        while not self.future.done():
            self.pool._pump()
        return self.future.result()

    def done(self) -> bool:
        return self.future.done()


class WorkerPool:
    """`size` worker processes (forkserver: never fork a process that holds DuckDB and its threads).

    `submit` returns a handle whose `result()` runs the pool until that task is done. Tasks are
    dispatched in submission order to idle workers.
    """

    def __init__(
        self, size: int, *, max_attempts: int = 2, task_timeout_s: float = 600.0,
        initializer: Callable[[], None] | None = None, context: str = "forkserver",
    ):
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self._ctx = multiprocessing.get_context(context)
        self._size = size
        self._initializer = initializer
        self._max_attempts = max_attempts
        self._task_timeout_s = task_timeout_s
        self._workers: list[_Worker] = []
        self._queue: collections.deque[_Job] = collections.deque()
        self.deaths = 0  # workers lost so far (for reports and tests)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Job:
        job = _Job(self, fn, args)
        self._queue.append(job)
        self._dispatch()
        return job

    def close(self, grace_s: float = 2.0) -> None:
        for job in self._queue:
            job.future.cancel()
        self._queue.clear()
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop(grace_s)

    # --- driving the pool --------------------------------------------------------------------
    def _dispatch(self) -> None:
        while self._queue:
            worker = next((w for w in self._workers if w.job is None), None)
            if worker is None:
                if len(self._workers) >= self._size:
                    return
                try:
                    worker = _Worker(self._ctx, self._initializer)
                except OSError as exc:  # no process to be had (memory, process limit)
                    if self._workers:
                        return  # the workers there are carry on
                    log.warning("cannot start a loader worker (%s); running a task in this process", exc)
                    job = self._queue.popleft()
                    job.future = InProcess().submit(job.fn, *job.args)
                    continue
                self._workers.append(worker)
            job = self._queue.popleft()
            job.attempts += 1
            worker.job, worker.started_at = job, time.monotonic()
            try:
                worker.conn.send((job.fn, job.args))
            except (OSError, ValueError):  # the worker died while idle
                self._lost(worker, "died while idle")

    def _pump(self) -> None:
        busy = [w for w in self._workers if w.job is not None]
        if not busy:
            self._dispatch()
            return
        waited = {w.conn: w for w in busy} | {w.process.sentinel: w for w in busy}
        oldest = min(w.started_at for w in busy)
        timeout = max(0.0, oldest + self._task_timeout_s - time.monotonic())
        ready = wait(list(waited), timeout=min(timeout, 5.0))
        for worker in {waited[r] for r in ready}:
            if worker.job is None or worker not in self._workers:
                continue
            self._collect(worker)
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.job is not None and now - worker.started_at > self._task_timeout_s:
                worker.process.kill()
                self._lost(worker, f"ran longer than {self._task_timeout_s:.0f}s")
        self._dispatch()

    def _collect(self, worker: _Worker) -> None:
        try:
            if worker.conn.poll():
                ok, value = worker.conn.recv()
                job, worker.job = worker.job, None
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
                return
        except (EOFError, OSError):
            pass  # died mid-reply
        except Exception as exc:  # the reply would not unpickle here
            job, worker.job = worker.job, None
            job.future.set_exception(RuntimeError(f"unreadable reply from a worker: {type(exc).__name__}: {exc}"))
            return
        if not worker.process.is_alive():
            self._lost(worker, f"died (exit code {worker.process.exitcode})")

    def _lost(self, worker: _Worker, how: str) -> None:
        """Replace a dead worker; run its task again, or fail it after `max_attempts`."""
        job, worker.job = worker.job, None
        self.deaths += 1
        self._workers.remove(worker)
        worker.stop(grace_s=0)
        if job is None:
            return
        if job.attempts < self._max_attempts:
            log.warning("loader worker %s %s; running its task again", worker.process.pid, how)
            self._queue.appendleft(job)
        else:
            job.future.set_exception(WorkerDied(f"worker process {how} on each of {job.attempts} attempts"))


def without_pandas() -> None:
    """Keep pandas out of a loader process. pyarrow imports it on first use, to recognise DataFrames
    (0.4–0.8 s per process, measured); the loader never hands it one. Only for processes that run
    nothing else: where pandas is already imported this changes nothing."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


class _NoPandas:
    """An import finder that says pandas is not installed (pyarrow then skips its pandas support)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is kept out of loader processes")
        return None
