"""Where runs execute: in the driver process, or in local worker processes.

An executor takes the runs still to do and yields each one's :class:`RunOutput` as it
finishes, calling ``on_event(task, kind, payload)`` meanwhile ("start", "progress",
"train_log", "eval_log"). It writes nothing: the driver does (see ``runner``).

Worker processes are started with ``spawn`` (a forked copy of a process that has run
torch's thread pools is not safe), load the data set once each, and ignore Ctrl-C: the
driver stops them. A worker that dies mid-run (killed, out of memory) is replaced and
its run retried once; a second death records the run as failed.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait

import torch

from ..errors import UserError
from .config import RunSpec, Suite
from .execute import RunOutput, execute_run

OnEvent = Callable[["Task", str, dict], None]

# numpy's BLAS (used by torch-fidelity's KID, for one) takes its thread count from these
# when it loads; set to the worker's torch threads, its scores match a serial run's with
# the same threads digit for digit.
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def blas_env(threads: int) -> dict[str, str]:
    return {key: str(threads) for key in BLAS_THREADS}


@dataclasses.dataclass(frozen=True)
class Task:
    index: int    # 1-based position in the suite, for "3/18"
    run: RunSpec
    run_id: str
    attempt: int = 1


class Serial:
    """Every run in this process, one after another (the data is already loaded)."""

    workers = 1

    def __init__(self, suite: Suite, registry, device: torch.device):
        self.suite, self.registry, self.device = suite, registry, device

    def start(self) -> None:
        pass

    def run(self, tasks: list[Task], on_event: OnEvent, data) -> Iterator[tuple[Task, RunOutput]]:
        for task in tasks:
            on_event(task, "start", {})
            yield task, execute_run(self.suite, task.run, task.run_id, self.registry, data, self.device,
                                    lambda kind, payload, task=task: on_event(task, kind, payload))

    def close(self) -> None:
        pass


def _worker_main(suite: Suite, device_name: str, threads: int, conn) -> None:
    """A worker process: load the data once, then run the tasks the driver sends until
    it sends None. Everything goes back over the worker's own pipe, so a worker killed
    mid-message breaks only its own channel."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since before it started
    torch.set_num_threads(threads)
    from .execute import load_run_data
    from .pluginmanager import get_registry

    try:
        registry = get_registry()
        device = torch.device(device_name)
        data = load_run_data(suite, registry, device)
    except Exception as err:  # its own reason, for the driver's one line
        conn.send(("failed", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    while True:
        task = conn.recv()
        if task is None:
            return
        conn.send(("event", ("start", {})))
        output = execute_run(suite, task.run, task.run_id, registry, data, device,
                             lambda kind, payload: conn.send(("event", (kind, payload))))
        conn.send(("done", output))


@dataclasses.dataclass
class _Worker:
    proc: mp.process.BaseProcess
    conn: Connection
    ready: bool = False
    task: Task | None = None


class Processes:
    """Up to ``workers`` runs at once, each in its own worker process; worker k uses
    ``devices[k % len(devices)]`` and ``threads`` torch threads."""

    def __init__(self, suite: Suite, workers: int, threads: int, devices: list[str]):
        self.suite, self.workers, self.threads, self.devices = suite, workers, threads, devices
        self.device = devices[0]
        self.ctx = mp.get_context("spawn")
        self.pool: list[_Worker] = []
        self.started = 0
        self.start_error: str | None = None  # the first worker's own reason for dying at start

    def _start_worker(self) -> None:
        mine, theirs = self.ctx.Pipe()
        device = self.devices[self.started % len(self.devices)]
        proc = self.ctx.Process(target=_worker_main, name=f"genbench-worker-{self.started}", daemon=True,
                                args=(self.suite, device, self.threads, theirs))
        self.started += 1
        # Started with SIGINT blocked (the mask survives the exec), so a Ctrl-C during its
        # start-up is not a traceback in the child: it ignores SIGINT before unblocking.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        saved = {k: os.environ.get(k) for k in BLAS_THREADS}
        os.environ.update(blas_env(self.threads))  # the child's numpy reads them as it starts
        try:
            proc.start()
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        theirs.close()  # the child holds it now: its death then reads as EOF here
        self.pool.append(_Worker(proc, mine))

    def start(self) -> None:
        """Start every worker now: each imports torch and loads the data meanwhile."""
        while len(self.pool) < self.workers:
            self._start_worker()

    def run(self, tasks: list[Task], on_event: OnEvent, data=None) -> Iterator[tuple[Task, RunOutput | WorkerDied]]:
        """``data`` is unused: each worker loads its own."""
        waiting = list(tasks)
        self.start()
        while waiting or any(w.task for w in self.pool):
            for worker in self.pool:
                if worker.ready and worker.task is None and waiting:
                    worker.task = waiting.pop(0)
                    worker.conn.send(worker.task)
            if not self.pool:
                raise WorkerStartFailed(
                    "every worker process died before its first run; the first one said: " + self.start_error
                    if self.start_error else "every worker process died before its first run (while importing "
                    "torch or the plugins); run without --workers to see why")
            for conn in wait([w.conn for w in self.pool], timeout=1.0):
                worker = next(w for w in self.pool if w.conn is conn)
                try:
                    kind, payload = conn.recv()
                except Exception:  # EOF, or half a message from a worker killed mid-send
                    yield from self._lost(worker, waiting, on_event)
                    continue
                if kind == "ready":
                    worker.ready = True
                elif kind == "failed":
                    self.start_error = self.start_error or payload
                elif kind == "event" and worker.task is not None:
                    on_event(worker.task, *payload)
                elif kind == "done" and worker.task is not None:
                    task, worker.task = worker.task, None
                    yield task, payload

    def _lost(self, worker: _Worker, waiting: list[Task], on_event: OnEvent):
        """A worker's pipe closed: it died. Retry its run once, then report the run as died."""
        worker.proc.join(5.0)
        self.pool.remove(worker)
        if worker.task is not None:
            yield from retry_or_give_up(worker.task, _exit_reason(worker.proc.exitcode), waiting, on_event)
        if worker.ready and (waiting or any(w.task for w in self.pool)):
            self._start_worker()  # a worker that never got ready would only die again

    def close(self) -> None:
        """Stop every worker: politely if idle, then by force."""
        for worker in self.pool:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for worker in self.pool:
            worker.proc.join(max(0.0, deadline - time.monotonic()))
            if worker.proc.is_alive():
                worker.proc.kill()
                worker.proc.join(2.0)
            worker.conn.close()
        self.pool.clear()


class WorkerStartFailed(UserError):
    """Every worker process died before it could take a run: one line, exit status 1."""

    exit_code = 1


class WorkerDied(RuntimeError):
    """What an executor yields, instead of a run's output, for a run whose worker died."""


def retry_or_give_up(task: Task, how: str, waiting: list[Task], on_event: OnEvent):
    """A run whose worker died: put it back at the front of the queue once; the second
    time, yield it with a :class:`WorkerDied` for the driver to record as failed."""
    if task.attempt == 1:
        on_event(task, "retry", {"reason": how})
        waiting.insert(0, dataclasses.replace(task, attempt=2))
    else:
        yield task, WorkerDied(f"its worker process {how}, twice (the run was retried once)")


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
