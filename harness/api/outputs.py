"""Checks on what a model's capability methods return, before anything scores or draws it.

A model that returns images of the wrong size, outside [0, 1], with NaNs or on another
device must fail its run with one message naming the model, the method and the rule it
broke; it must never be clamped quietly and ranked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .model import Model


class ModelOutputError(RuntimeError):
    """A capability method returned something that breaks its contract."""


def _fail(model: Model, method: str, rule: str) -> None:
    raise ModelOutputError(f"model '{model.name}': {method}() {rule}")


def tensor(model: Model, method: str, out, shape: tuple, device: torch.device,
           unit_range: bool = True, floating: bool = True) -> Tensor:
    """``out`` after checking type, shape, dtype, device, finiteness and (images) range."""
    if not isinstance(out, Tensor):
        _fail(model, method, f"returned {type(out).__name__}, expected a tensor")
    if tuple(out.shape) != tuple(shape):
        _fail(model, method, f"returned shape {tuple(out.shape)}, expected {tuple(shape)}")
    if floating and not out.is_floating_point():
        _fail(model, method, f"returned dtype {out.dtype}, expected floating point")
    if out.device.type != device.type or (device.index is not None and out.device.index != device.index):
        _fail(model, method, f"returned a tensor on {out.device}, expected {device}")
    if out.numel():
        if not bool(torch.isfinite(out).all()):
            _fail(model, method, "returned NaN or infinite values")
        if unit_range:
            lo, hi = float(out.min()), float(out.max())
            if lo < 0.0 or hi > 1.0:
                _fail(model, method, f"returned values in [{lo:.4g}, {hi:.4g}], expected images in [0, 1]")
    return out


def images(model: Model, method: str, out, n: int, image_shape: tuple, device: torch.device) -> Tensor:
    return tensor(model, method, out, (n, *image_shape), device)


def codes(model: Model, out, n: int, device: torch.device) -> Tensor:
    """Latent codes (n, d) from ``latent``."""
    if not isinstance(out, Tensor) or out.dim() != 2:
        _fail(model, "latent", "returned something that is not an (N, d) tensor")
    return tensor(model, "latent", out, (n, out.shape[1]), device, unit_range=False)


def posterior(model: Model, out, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(mean, log-variance), each (n, latent_dim)."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        _fail(model, "posterior", f"returned {type(out).__name__}, expected a (mean, log-variance) pair")
    mean, logvar = out
    if not isinstance(mean, Tensor) or mean.dim() != 2:
        _fail(model, "posterior", "returned a mean that is not an (N, latent_dim) tensor")
    shape = (n, mean.shape[1])
    return (tensor(model, "posterior", mean, shape, device, unit_range=False),
            tensor(model, "posterior", logvar, shape, device, unit_range=False))


def log_likelihoods(model: Model, out, n: int, device: torch.device) -> Tensor:
    """log P(x) per image (n,): finite and at most 0, as a probability of discrete pixels is."""
    out = tensor(model, "log_likelihood", out, (n,), device, unit_range=False)
    if out.numel() and float(out.max()) > 1e-3:
        convention = model.likelihood.convention if model.likelihood is not None else "?"
        _fail(model, "log_likelihood", f"returned {float(out.max()):.4g} > 0: a log-probability of "
              f"{convention} pixels is at most 0 (a continuous density? dequantize and subtract D log 256)")
    return out
