"""The suite's ``training:`` section: numeric precision and compilation of the training step.

bf16 and fp16 run each ``train_step`` under ``torch.autocast``: matrix products and
convolutions in the low precision, losses and the weights kept in float32. fp16 also
needs a gradient scaler, which a model reaches through :meth:`genbench.Model.optimize`.
Evaluation always runs in float32, so precision changes how a model trains, never how
it is scored. ``compile`` compiles each of the model's networks in place with
``torch.compile``; the first step of each batch shape pays for the compilation, off the
budget clock (see :mod:`genbench.engine.train`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Literal

import torch
from torch import nn

from ..api.options import as_dict, option

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    precision: Literal["fp32", "bf16", "fp16"] = option(
        "fp32", "fp32, or bf16/fp16 matrix products under torch.autocast (fp16 with a gradient scaler)")
    compile: bool = option(False, "compile the model's networks with torch.compile (needs a C++ compiler on CPU)")

    def as_config(self) -> dict:
        """The settings that change a run's outcome, for its configuration hash: none at the
        defaults, so folders written before this section existed keep their hashes."""
        default = as_dict(TrainingOptions())
        return {k: v for k, v in as_dict(self).items() if v != default[k]}


class Precision:
    """What the training loop does around each step for one run."""

    def __init__(self, options: TrainingOptions, device: torch.device):
        self.dtype = DTYPES.get(options.precision)
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if options.precision == "fp16" else None
        self.compiles = options.compile

    @classmethod
    def fp32(cls) -> Precision:
        return cls(TrainingOptions(), torch.device("cpu"))

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def after_step(self) -> None:
        if self.scaler is not None:
            self.scaler.update()  # once per step, after every optimizer of the step has run

    def state(self) -> dict:
        """What to record: the gradient scale reached (fp16 only)."""
        return {"grad_scale": float(self.scaler.get_scale())} if self.scaler is not None else {}


def prepare(model: nn.Module, options: TrainingOptions, device: torch.device) -> Precision:
    """Give ``model`` its gradient scaler and compile its networks; returns the step's wrapper."""
    precision = Precision(options, device)
    model.grad_scaler = precision.scaler
    if options.compile:
        for child in model.children():
            _compile(child)
    return precision


def _compile(net: nn.Module) -> None:
    """Compile ``net``'s calls in place: its parameters, state_dict keys and the model's own
    code stay as they are. (``nn.Module.compile`` would do this, but Dynamo skips its frame.)"""
    def call(*args, **kwargs):
        return net._call_impl(*args, **kwargs)
    # Dynamo keeps compiled graphs on the code object, at most recompile_limit (8) of
    # them; a copy per network keeps networks and runs from using up each other's.
    call.__code__ = call.__code__.replace()
    net._compiled_call_impl = torch.compile(call)


def check(options: TrainingOptions, device: torch.device, where: tuple = ("training",)) -> list[tuple[tuple, str]]:
    """(path, problem) for settings this device or installation cannot run."""
    problems = []
    if options.precision in DTYPES:
        problem = _autocast_problem(DTYPES[options.precision], device)
        if problem:
            problems.append((where + ("precision",), f"{options.precision} cannot run on {device}: {problem}; "
                             f"use fp32" + (" or bf16" if options.precision == "fp16" else "")))
    if options.compile:
        problem = _compile_problem(device)
        if problem:
            problems.append((where + ("compile",), f"torch.compile is unavailable here: {problem}; "
                             "set compile: false"))
    return problems


def check_suite(suite, device: torch.device) -> list[tuple[tuple, str]]:
    """:func:`check` of the suite's ``training:`` and of each run entry's own."""
    return [problem for where, options in suite.trainings() for problem in check(options, device, where)]


def _autocast_problem(dtype: torch.dtype, device: torch.device) -> str | None:
    """Why autocast to ``dtype`` does not work on ``device``, found by trying a tiny step."""
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16 support"
    try:
        layer = nn.Linear(4, 2).to(device)
        with torch.autocast(device.type, dtype=dtype):
            out = layer(torch.ones(3, 4, device=device))
        out.float().sum().backward()
    except Exception as err:  # noqa: BLE001 - any failure means "not on this device"
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if out.dtype != dtype:  # autocast warns and does nothing where it is unsupported
        return f"autocast left the product in {out.dtype}"
    return None


def _compile_problem(device: torch.device) -> str | None:
    try:
        import torch._dynamo
        if not torch._dynamo.is_dynamo_supported():
            return "TorchDynamo does not support this Python or platform"
        if device.type == "cpu":
            from torch._inductor.cpp_builder import get_cpp_compiler
            get_cpp_compiler()
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no C++ compiler found'}"
    return None
