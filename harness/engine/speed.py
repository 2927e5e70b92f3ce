"""How fast a run trained, how loaded the machine was, and whether that bent its result.

Under a seconds budget a run's score depends on the machine's load; these numbers make
such a run impossible to miss. Under a FLOP, step or epoch budget they are informative
only: the run does the same work however fast it goes.
"""

from __future__ import annotations

import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..api.dataset import to_float
from ..api.model import Batch, Step
from .budget import BudgetClock

CPU_SHARE_MIN = 0.5     # a CPU run that got less than half its threads' time was crowded out
SLOWER_THAN_BEFORE = 0.5  # throughput below half the same configuration's best in the folder
HINT = ("for parallel jobs give each one thread (--threads 1), use a flops or steps budget, "
        "or run on a quiet machine")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load() -> float | None:
    """The one-minute load average, where the platform has one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def throughput(clock: BudgetClock, device: torch.device, load_start, load_end) -> dict:
    """Speed on the budget clock, and what shows contention: CPU time against wall time
    (a CPU run that got its threads' share uses about threads x wall), the load average
    around training, the thread count."""
    seconds = max(clock.seconds, 1e-9)
    threads = torch.get_num_threads()
    out = {"images_per_second": round(clock.images / seconds, 1),
           "steps_per_second": round(clock.steps / seconds, 2),
           "flops_per_second": round(clock.flops / seconds), "cpu_seconds": round(clock.cpu_seconds, 3),
           "threads": threads, "cores": cores(), "load_start": load_start, "load_end": load_end}
    if device.type == "cpu":
        out["cpu_share"] = round(clock.cpu_seconds / (seconds * min(threads, cores())), 3)
    return out


def contention(speed: dict, best_before: float | None) -> list[str]:
    """Why a run looks crowded out (empty if it does not)."""
    reasons = []
    share = speed.get("cpu_share")
    if share is not None and share < CPU_SHARE_MIN:
        reasons.append(f"it got {share:.0%} of its {min(speed['threads'], speed['cores'])} threads' CPU time")
    peak_load = max((x for x in (speed.get("load_start"), speed.get("load_end")) if x is not None), default=None)
    if peak_load is not None and peak_load > speed["cores"] + 0.5:
        reasons.append(f"the machine's load average was {peak_load:g} on {speed['cores']} cores")
    ips = speed.get("images_per_second")
    if best_before and ips is not None and ips < SLOWER_THAN_BEFORE * best_before:
        reasons.append(f"{ips:,.0f} images/s against {best_before:,.0f} for the same configuration before")
    return reasons


def judge(rec: dict, peak: float | None, best_before: float | None) -> list[str]:
    """Add the fraction of the device's matmul peak (at most 1) to a finished run's
    throughput, and flag it ``contended`` with the reasons, under any budget; returns them.

    Under a seconds budget contention bends the scores; under a FLOP, step or epoch budget
    only the training timing cells (train s, img/s, % peak)."""
    speed = rec.get("throughput") or {}
    if peak:
        speed["peak_fraction"] = round(min(1.0, speed.get("flops_per_second", 0) / peak), 4)
        speed["peak_flops_per_second"] = round(peak)
    reasons = contention(speed, best_before)
    rec["contended"] = reasons
    return reasons


def counted_step(model, batch: Batch, step: Step) -> tuple[dict, int]:
    """``model.train_step`` and its FLOPs: matrix products and convolutions, forward and
    backward, as torch's FlopCounterMode counts them (not the optimizer's element-wise
    updates). The counter slows the step it watches, so the loop counts each kind once.
    Compiled networks run eagerly here: under the counter Dynamo would give up on them."""
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        losses = model.train_step(batch, step)
    return losses, int(counter.get_total_flops())


def one_step_flops(model, batch: Batch) -> int:
    """FLOPs of one training step of ``model`` on ``batch``."""
    return counted_step(model, batch, Step(0, 0, 0.0))[1]


def check_flop_budget(suite, registry, data) -> list[tuple[tuple, str]]:
    """(path, problem) for a FLOP budget smaller than one training step of a configuration."""
    limit = suite.budget.limits().get("flops")
    if limit is None:
        return []
    n = min(suite.batch_size, len(data.train))
    batch = Batch(to_float(data.train.images[:n]).cpu(), data.train.labels[:n].cpu())
    problems, seen = [], set()
    for run in suite.runs:
        if run.label in seen:
            continue
        seen.add(run.label)
        try:
            with torch.random.fork_rng():
                model = registry.models[run.model](run.options, data.info)
                model.optimizers = model.configure_optimizers()
                cost = one_step_flops(model, batch)
        except Exception:  # a broken model fails its run, with its own message
            continue
        if cost > limit:
            problems.append((("budget", "flops"), f"{limit:.3g} is less than one training step of '{run.label}' "
                             f"({cost:.3g} FLOPs at batch size {n}); give at least {cost:.3g}"))
    return problems


PEAK_METHOD = ("best of {n} timings of square fp32 matrix products (1024 x 1024, {seconds:g} s each) at suite "
               "start, taken again whenever a run's achieved FLOP/s beat it")


def matmul_peak(device: torch.device, size: int = 1024, seconds: float = 0.1, repeats: int = 5) -> float:
    """FLOP/s of a square fp32 matrix product on ``device``, the best of ``repeats`` short
    timings: the yardstick a run's achieved FLOP/s is compared with. A single timing under
    whatever load was there could read low, so runs then showed over 100%."""
    a = torch.randn(size, size, device=device, generator=torch.Generator(device=device).manual_seed(0))
    b = a.clone()
    torch.mm(a, b)  # warm-up: kernels chosen, memory allocated
    sync(device)
    best = 0.0
    for _ in range(repeats):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(4):
                torch.mm(a, b)
            sync(device)
            done += 4
        best = max(best, 2 * size ** 3 * done / (time.perf_counter() - started))
    return best


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a clock counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
