"""The fixed training budget: seconds, FLOPs, steps and epochs, whichever is reached first.

FLOPs, steps and epochs mean the same on every machine; seconds mean "on this machine,
at this load".
"""

from __future__ import annotations

import time


class BudgetClock:
    """Counts training time only; evaluation runs with the clock paused."""

    def __init__(self, limits: dict[str, float], train_size: int):
        self.limits = dict(limits)
        self.train_size = train_size
        self.steps = 0
        self.images = 0
        self.flops = 0
        self._seconds = 0.0
        self._started: float | None = None
        self.cpu_seconds = 0.0  # this process's CPU time while the clock ran (all threads)
        self._cpu_started = 0.0

    def start(self) -> None:
        if self._started is None:
            self._started = time.perf_counter()
            self._cpu_started = time.process_time()

    def pause(self) -> None:
        if self._started is not None:
            self._seconds += time.perf_counter() - self._started
            self.cpu_seconds += time.process_time() - self._cpu_started
            self._started = None

    @property
    def seconds(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._seconds + running

    @property
    def epochs(self) -> float:
        return self.images / self.train_size

    def tick(self, images: int, flops: int = 0) -> None:
        """Count one optimisation step over ``images`` images that cost ``flops``."""
        self.steps += 1
        self.images += images
        self.flops += flops

    def used(self) -> dict[str, float]:
        return {"seconds": round(self.seconds, 3), "steps": self.steps,
                "epochs": round(self.epochs, 4), "images": self.images, "flops": self.flops}

    def _now(self) -> dict[str, float]:
        return {"seconds": self.seconds, "steps": self.steps, "epochs": self.epochs, "flops": self.flops}

    def fraction(self) -> float:
        """How much of the budget is spent, 0..1, by the limit closest to its end."""
        now = self._now()
        return min(1.0, max(now[k] / v for k, v in self.limits.items()))

    def reached(self) -> str | None:
        """The name of the limit reached, or None while training may go on."""
        now = self._now()
        for key, limit in self.limits.items():
            # a tiny tolerance so that e.g. 3 epochs of 1/3-epoch steps end exactly
            if now[key] >= limit - 1e-9:
                return key
        return None

    def left(self) -> str:
        parts = []
        if "seconds" in self.limits:
            parts.append(f"{max(0.0, self.limits['seconds'] - self.seconds):.0f}s")
        if "steps" in self.limits:
            parts.append(f"{max(0, int(self.limits['steps']) - self.steps)} steps")
        if "epochs" in self.limits:
            parts.append(f"{max(0.0, self.limits['epochs'] - self.epochs):.2f} epochs")
        if "flops" in self.limits:
            parts.append(f"{max(0.0, self.limits['flops'] - self.flops) / 1e12:.3g} TFLOP")
        return ", ".join(parts) + " left"
