"""Runs as Ray actors, on this machine or on a Ray cluster (the optional ``genbench[ray]``).

Each of ``workers`` actors declares ``num_cpus`` (its torch threads) and ``num_gpus``
(fractions allowed) and takes one run at a time, like a local worker process. The data
set travels once, from the driver through Ray's object store, so nodes need no data
files and no shared filesystem; what a run produces (record, snapshot arrays, model
state) travels back the same way and only the driver writes the results folder. Nodes
need genbench and the suite's plugin packages installed. Progress and training logs
reach the driver through a ``ray.util.queue.Queue``. An actor that dies (its process
killed, its node lost) is replaced and its run retried once, as with local workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import UserError, install_hint
from .config import Suite
from .data import DeviceData
from .execute import RunOutput, execute_run
from .executors import OnEvent, Task, WorkerDied, blas_env, retry_or_give_up


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: " + install_hint("genbench[ray]")) from None
    return ray


class RunActor:
    """One Ray worker: the data and plugins loaded once, then one run per ``run`` call."""

    def __init__(self, suite: Suite, data: DeviceData, threads: int, device: str, events):
        torch.set_num_threads(threads)
        from .pluginmanager import get_registry

        self.suite, self.threads, self.events = suite, threads, events
        self.device = torch.device(device)
        self.registry = get_registry()
        self.data = data.to(self.device)

    def run(self, task: Task) -> RunOutput:
        def emit(kind, payload):
            self.events.put_nowait((task.run_id, kind, payload))
        emit("start", {})
        return execute_run(self.suite, task.run, task.run_id, self.registry, self.data, self.device, emit)


class RayRuns:
    """The executor: ``run(tasks, on_event)`` yields each run's output as it finishes."""

    def __init__(self, suite: Suite, workers: int, threads: int, device: torch.device,
                 address: str | None = None, gpus_per_run: float | None = None):
        ray = self.ray = import_ray()
        self.workers, self.threads = workers, threads
        self.device = "cuda" if device.type == "cuda" else "cpu"
        gpus = (1.0 if device.type == "cuda" else 0.0) if gpus_per_run is None else gpus_per_run
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            try:
                ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise UserError(f"--executor ray: cannot reach Ray at {address or 'a new local instance'}: "
                                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        from ray.util.queue import Queue

        self.events = Queue()
        self.data_ref = None
        self.actor_cls = ray.remote(num_cpus=threads, num_gpus=gpus, max_restarts=0,
                                    runtime_env={"env_vars": blas_env(threads)})(RunActor)
        self.suite = suite
        self.actors: list = []

    def _new_actor(self):
        actor = self.actor_cls.remote(self.suite, self.data_ref, self.threads, self.device, self.events)
        self.actors.append(actor)
        return actor

    def start(self) -> None:
        pass

    def run(self, tasks: list[Task], on_event: OnEvent, data: DeviceData) -> Iterator[tuple[Task, RunOutput | WorkerDied]]:
        ray = self.ray
        if self.data_ref is None:
            self.data_ref = ray.put(data.to("cpu"))  # once, for every actor on every node
        # Actors live for the whole suite (a search calls run once per round): between
        # calls each is idle, and new ones are made only up to the number of workers.
        while len(self.actors) < min(self.workers, len(tasks)):
            self._new_actor()
        waiting = list(tasks)
        idle = list(self.actors)
        pending: dict = {}  # result ref -> (actor, task)
        by_id: dict[str, Task] = {}
        while waiting or pending:
            while idle and waiting:
                actor, task = idle.pop(), waiting.pop(0)
                by_id[task.run_id] = task
                pending[actor.run.remote(task)] = (actor, task)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            self._drain(by_id, on_event)
            for ref in done:
                actor, task = pending.pop(ref)
                try:
                    output = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    self.actors.remove(actor)
                    yield from retry_or_give_up(task, _death(err), waiting, on_event)
                    if waiting:
                        idle.append(self._new_actor())
                    continue
                self._drain(by_id, on_event)  # its last progress and logs before its result
                idle.append(actor)
                yield task, output

    def _drain(self, by_id: dict[str, Task], on_event: OnEvent) -> None:
        while True:
            try:
                run_id, kind, payload = self.events.get_nowait()
            except Exception:  # queue.Empty: nothing more for now
                return
            if run_id in by_id:
                on_event(by_id[run_id], kind, payload)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:
                pass
        self.actors.clear()
        if self.started_ray:
            self.ray.shutdown()


def _death(err: Exception) -> str:
    text = str(err)
    if "SIGKILL" in text or "killed" in text.lower():
        return "was killed (Ray reported its actor died)"
    return "died (Ray: " + (text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__) + ")"
