"""How a suite's runs will execute: serially, in local worker processes or on Ray.

Decided before anything loads, so that a bad combination (a seconds budget over shared
devices, Ray not installed) is one line and nothing is written.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import UserError
from . import speed
from .config import Suite
from .executors import Processes, Serial
from .ray_executor import RayRuns, import_ray


@dataclasses.dataclass
class Plan:
    """How a suite's runs will execute, decided before anything loads."""

    workers: int
    threads: int               # torch threads of each worker
    devices: list[str]         # worker k uses devices[k % len(devices)]
    warnings: list[str]
    ray: bool = False
    address: str | None = None
    gpus_per_run: float | None = None

    def executor(self, suite: Suite, registry, device: torch.device):
        if self.ray:
            return RayRuns(suite, self.workers, self.threads, device, self.address, self.gpus_per_run)
        if self.workers == 1:
            return Serial(suite, registry, device)
        return Processes(suite, self.workers, self.threads, self.devices)


def plan(suite: Suite, device: torch.device, workers: int | None, threads: int | None, executor: str = "local",
         address: str | None = None, gpus_per_run: float | None = None) -> Plan:
    """Devices and threads per worker; refuse a seconds budget whose runs would share a
    device (wall-clock time then measures the sharing, not the model)."""
    devices = [str(device)]
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if executor == "ray":
        import_ray()  # no Ray: one line naming the extra, before anything loads
        threads = threads or 1
        workers = workers or max(1, speed.cores() // threads)
        warnings = [] if address is None or "seconds" not in suite.budget.limits() else [
            "a seconds budget on a Ray cluster means each node's own speed and load; a flops, steps or "
            "epochs budget means the same on every node"]
        if address is None:
            warnings += _seconds_check(suite, device, workers, threads, devices)
        return Plan(workers, threads, devices, warnings, True, address, gpus_per_run)
    workers = workers or 1
    if workers == 1:
        return Plan(1, threads or torch.get_num_threads(), devices, [])
    threads = threads or max(1, speed.cores() // workers)
    return Plan(workers, threads, devices, _seconds_check(suite, device, workers, threads, devices))


def _seconds_check(suite: Suite, device: torch.device, workers: int, threads: int, devices: list[str]) -> list[str]:
    warnings: list[str] = []
    if workers > 1 and "seconds" in suite.budget.limits():
        if device.type == "cuda" and workers > len(devices):
            raise UserError(f"{suite.path}: budget.seconds with --workers {workers}: {workers} runs would share "
                            f"{len(devices)} GPU(s), so each run's seconds would measure the sharing; use --workers "
                            f"{len(devices)} or fewer, or a flops, steps or epochs budget")
        if device.type == "cpu" and workers * threads > speed.cores():
            raise UserError(f"{suite.path}: budget.seconds with --workers {workers} x {threads} threads: more threads "
                            f"than the {speed.cores()} cores, so each run's seconds would measure the sharing; use "
                            f"fewer workers or threads, or a flops, steps or epochs budget")
        if device.type == "cpu":
            warnings.append(f"{workers} runs at once share this machine's memory and caches: under a seconds "
                            f"budget each trains somewhat slower than alone (every record says how many ran beside "
                            f"it); a flops, steps or epochs budget is unaffected")
    return warnings
