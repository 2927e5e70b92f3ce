"""The training loop: the hot path. The harness owns it; models own train_step."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch

from ..api.model import Model, Step
from . import speed
from .budget import BudgetClock
from .data import DeviceData
from .precision import Precision


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


class NeedsOptimize(RuntimeError):
    """Under fp16 a model stepped its optimizers itself, past the gradient scaler."""


@dataclasses.dataclass
class TrainResult:
    used: dict[str, float]       # seconds, steps, epochs, images actually used
    stopped_by: str              # the budget limit that ended training
    history: list[dict]          # mean loss components per logging window
    final: dict[str, float]      # the last window's losses
    eval_history: list[dict] = dataclasses.field(default_factory=list)  # scores during training
    eval_seconds: float = 0.0    # time spent on them (not on the budget clock)
    throughput: dict = dataclasses.field(default_factory=dict)  # speed and how the machine was loaded
    step_flops: list[dict] = dataclasses.field(default_factory=list)  # each distinct step's counted FLOPs


ProgressFn = Callable[[BudgetClock, dict[str, float]], None]
ScoreFn = Callable[[], dict[str, float | None]]
LogFn = Callable[[dict], None]


def train(model: Model, data: DeviceData, limits: dict[str, float], batch_size: int, seed: int,
          progress: ProgressFn | None = None, refresh_seconds: float = 0.25,
          score: ScoreFn | None = None, score_every: float = 1.0,
          on_log: LogFn | None = None, on_eval: LogFn | None = None,
          precision: Precision | None = None) -> TrainResult:
    """Train ``model`` until the first budget limit is reached.

    ``score``, if given, is called every ``score_every`` epochs with the clock paused.
    ``on_log`` receives each history entry and ``on_eval`` each score entry, also with
    the clock paused (for the suite's loggers). ``precision`` wraps each step (autocast,
    gradient scaler). The first step of each kind is counted for its FLOPs and, under
    ``compile``, compiles the networks: it runs off the clock (its images, steps and
    FLOPs count; its seconds are recorded as ``untimed_seconds``).
    """
    device = data.train.images.device
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(data.train)
    steps_per_epoch = math.ceil(n / batch_size)
    log_every = max(1, min(50, steps_per_epoch // 5))
    clock = BudgetClock(limits, n)
    history: list[dict] = []
    window: dict[str, torch.Tensor] = {}
    window_steps = 0
    last_refresh = 0.0
    stopped_by = None
    evals: list[dict] = []
    eval_seconds, next_score = 0.0, score_every
    costs: dict = {}
    untimed, fresh = 0.0, set()
    precision = precision or Precision.fp32()
    load_start = speed.load()
    model.train()
    clock.start()
    epoch = 0
    while stopped_by is None:
        for batch in data.batches(batch_size, generator):
            step = Step(clock.steps, epoch, clock.epochs)
            key = (len(batch.x), model.step_cost_key(step))
            # Off the clock: the first step of each kind (counted for its FLOPs) and, under
            # compile, the step after it (which compiles the networks for that shape).
            timed = key in costs and not (precision.compiles and key in fresh)
            if not timed:
                clock.pause()
                started = time.perf_counter()
            with precision.autocast():
                if key in costs:
                    losses = model.train_step(batch, step)
                else:
                    losses, costs[key] = speed.counted_step(model, batch, step)
                    _check_scaled(model, precision)
            if not timed:
                if key in fresh:  # its compiling step is done
                    fresh.discard(key)
                elif precision.compiles:  # counted just now; the next step of its kind compiles
                    fresh.add(key)
                speed.sync(device)
                untimed += time.perf_counter() - started
                clock.start()
            precision.after_step()
            clock.tick(len(batch.x), costs[key])
            # Sum as tensors: converting to float here would sync the GPU every step.
            for key, value in losses.items():
                window[key] = window[key] + value.detach() if key in window else value.detach()
            window_steps += 1
            stopped_by = clock.reached()
            now = time.perf_counter()
            if window_steps >= log_every or stopped_by or now - last_refresh > refresh_seconds:
                speed.sync(device)  # so the clock counts queued GPU work
                means = {k: float(v) / window_steps for k, v in window.items()}
                bad = [k for k, v in means.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingDiverged(f"loss '{bad[0]}' became {means[bad[0]]} at step {clock.steps}")
                if window_steps >= log_every or stopped_by:
                    history.append({"step": clock.steps, "epoch": round(clock.epochs, 4),
                                    "seconds": round(clock.seconds, 3), **means})
                    window, window_steps = {}, 0
                    if on_log is not None:
                        clock.pause()
                        on_log(dict(history[-1]))
                        clock.start()
                if progress is not None:
                    progress(clock, means)
                last_refresh = now
            if score is not None and clock.epochs >= next_score - 1e-9:
                speed.sync(device)
                clock.pause()
                started = time.perf_counter()
                evals.append({"step": clock.steps, "epoch": round(clock.epochs, 4),
                              "seconds": round(clock.seconds, 3), "flops": clock.flops, **score()})
                if on_eval is not None:
                    on_eval(dict(evals[-1]))
                eval_seconds += time.perf_counter() - started
                next_score += score_every
                clock.start()
            if stopped_by:
                break
        else:
            epoch += 1
    clock.pause()
    final = {k: v for k, v in history[-1].items() if k not in ("step", "epoch", "seconds")}
    step_flops = [{"batch_size": size, "key": repr(kind), "flops": flops} for (size, kind), flops in costs.items()]
    speeds = speed.throughput(clock, device, load_start, speed.load())
    speeds["untimed_seconds"] = round(untimed, 3)
    return TrainResult(clock.used(), stopped_by, history, final, evals, round(eval_seconds, 3),
                       {**speeds, **precision.state()}, step_flops)


def _check_scaled(model: Model, precision: Precision) -> None:
    if precision.scaler is not None and model.optimize_calls == 0:
        raise NeedsOptimize(f"precision fp16 needs model '{model.name}' to step its optimizers through "
                            "self.optimize(loss, optimizer), which applies the gradient scaler; it called "
                            "backward() itself (use fp32 or bf16, or update the plugin)")

