"""The model plugin interface.

The harness owns the training loop, the device, the seeds, the budget clock and the
evaluation. A model plugin owns its networks, optimizers and losses: the harness calls
:meth:`Model.train_step` once per batch and never looks inside. What a model can be
scored on follows from the capabilities it declares, never from its name.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Hashable
from typing import ClassVar

import torch
from torch import Tensor, nn

from .factors import Factor
from .likelihood import Likelihood


class Capability(str, enum.Enum):
    """What a trained model can do; metrics and figures apply only where present.

    :data:`CAPABILITIES` says which methods each one requires and what it implies.
    """

    RECONSTRUCT = "reconstruct"  # reconstruct(x, y) -> images in [0, 1]
    LATENT = "latent"            # latent(x, y) -> a deterministic code (N, d): latent figures
    POSTERIOR = "posterior"      # posterior(x, y) -> (mean, log-variance) of a Gaussian q(z|x)
    DECODE = "decode"            # decode(z, y) -> images in [0, 1] from codes: interpolations
    SAMPLE = "sample"            # sample(n, labels) -> images in [0, 1]
    CONDITIONAL = "conditional"  # the methods above take and use the class label y
    LIKELIHOOD = "likelihood"    # log_likelihood(x, y) -> log P(x) per image, nats (see Model.likelihood)


@dataclasses.dataclass(frozen=True)
class Contract:
    """What declaring a capability means: the methods a model must implement, the
    capabilities it brings along, and who uses it."""

    methods: tuple[str, ...]
    implies: tuple[Capability, ...] = ()
    used_by: str = ""


# The one table of capabilities. Adding one is an entry here plus the metrics and
# figures that use it; registration checks models against this table only.
CAPABILITIES: dict[Capability, Contract] = {
    Capability.RECONSTRUCT: Contract(("reconstruct",), used_by="bce, mse, psnr, ssim; reconstruction figures"),
    Capability.LATENT: Contract(("latent",), used_by="latent scatter; interpolation and traversals (with decode); "
                                "disentanglement metrics (with a data set's factors)"),
    Capability.POSTERIOR: Contract(("posterior",), (Capability.LATENT,),
                                   used_by="kl, elbo, iw_ll, active_units; its mean is the latent code"),
    Capability.DECODE: Contract(("decode",), used_by="interpolation, latent traversals; the 2-D latent plane "
                                "(with posterior)"),
    Capability.SAMPLE: Contract(("sample",), used_by="fid, kid, precision, recall; sample grids"),
    Capability.CONDITIONAL: Contract((), used_by="cond_accuracy, fid_per_class; per-class sample rows"),
    Capability.LIKELIHOOD: Contract(("log_likelihood",), used_by="nll, bpd (one column for every model of the "
                                    "same convention; bounds marked)"),
}


def expand(capabilities) -> frozenset[Capability]:
    """Declared capabilities with everything they imply."""
    out = set()
    todo = [Capability(c) for c in capabilities]
    while todo:
        cap = todo.pop()
        if cap not in out:
            out.add(cap)
            todo.extend(CAPABILITIES[cap].implies)
    return frozenset(out)


def missing_methods(cls) -> list[tuple[Capability, str]]:
    """(capability, method) for each declared capability whose method ``cls`` lacks.

    An implied capability needs nothing more: the base class provides its method.
    """
    declared = frozenset(Capability(c) for c in cls.capabilities)
    return [(cap, method) for cap in declared for method in CAPABILITIES[cap].methods
            if getattr(cls, method) is getattr(Model, method)]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model may know about the data before it sees any."""

    name: str
    image_shape: tuple[int, int, int]  # channels, height, width
    num_classes: int
    class_names: tuple[str, ...]
    train_size: int
    factors: tuple[Factor, ...] = ()  # the data set's factors of variation, if it declares any

    @property
    def num_pixels(self) -> int:
        c, h, w = self.image_shape
        return c * h * w


@dataclasses.dataclass(frozen=True)
class Batch:
    """One training batch: ``x`` float images in [0, 1], shape (B, C, H, W); ``y`` labels (B,)."""

    x: Tensor
    y: Tensor


@dataclasses.dataclass(frozen=True)
class Step:
    """Where training stands when a batch arrives (before it is used)."""

    step: int        # optimisation steps done so far
    epoch: int       # whole epochs done so far
    epochs: float    # epochs done, with the fraction of the current one


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A model without options."""


class Model(nn.Module):
    """Base class of model plugins. Subclass it, set the class attributes, register it.

    Class attributes:
        name: what users type in a suite file (``[a-z][a-z0-9_]*``).
        description: one line for ``genbench plugins``.
        Options: a frozen dataclass whose fields are declared with
            :func:`genbench.option`; the suite's ``options:`` are validated against it
            and the instance is passed to ``__init__``.
        capabilities: the :class:`Capability` values this model implements.
        likelihood: with ``LIKELIHOOD``, a :class:`Likelihood` saying what
            :meth:`log_likelihood` returns (convention; exact or a lower bound).

    Life cycle, driven by the harness:
        1. ``model = Cls(options, data_info)`` builds the networks (on the CPU).
        2. The harness moves the model to the device, then calls
           :meth:`configure_optimizers` and keeps the result in ``self.optimizers``.
        3. :meth:`train_step` is called once per batch until the budget is spent.
        4. The model is put in eval mode and the capability methods are called under
           ``torch.no_grad()`` for scoring.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    likelihood: ClassVar[Likelihood | None] = None

    def __init__(self, options, data: DataInfo):
        super().__init__()
        self.options = options
        self.data = data
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.grad_scaler: torch.amp.GradScaler | None = None  # set by the harness under fp16
        self.optimize_calls = 0

    @classmethod
    def unsupported_shape(cls, options, image_shape: tuple[int, int, int]) -> str | None:
        """Why this model cannot take images of ``image_shape`` (C, H, W) under
        ``options``, or None when it can.

        Called by ``genbench validate`` and ``run`` for every run before any data is
        loaded, so a shape the model cannot take is one line naming the model and the
        shape, never a failure halfway through a suite. The default accepts every shape;
        override it when ``__init__`` or the networks have a rule (e.g. "height and width
        must be multiples of 4").
        """
        return None

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Create the optimizers (called once, after the move to the device).

        Return them by name; a GAN returns two. They are saved with the model. Pass
        ``fused=self.fused`` to torch's Adam, AdamW or SGD: one kernel per step instead of
        several per parameter, where the device has one.
        """
        raise NotImplementedError

    def train_step(self, batch: Batch, step: Step) -> dict[str, Tensor]:
        """Run one optimisation step (all of it: losses, backward, optimizer steps).

        Compute the losses and call :meth:`optimize` once per optimizer. The harness
        runs this under ``torch.autocast`` when the suite asks for bf16 or fp16, so
        compute losses from logits (``binary_cross_entropy_with_logits``), which
        autocast keeps in float32.

        Return the loss components as detached scalar tensors; the key ``"loss"`` is
        the one shown in the progress bar and plotted first. Returning tensors, not
        floats, lets the harness avoid a device sync on every step.
        """
        raise NotImplementedError

    def optimize(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Zero ``optimizer``'s gradients, backpropagate ``loss`` and step ``optimizer``.

        Use it in :meth:`train_step` instead of calling ``backward`` and ``step`` yourself:
        under ``training: {precision: fp16}`` it scales the loss and steps through the
        run's gradient scaler (which skips a step whose gradients overflowed). A model that
        calls ``backward`` itself still trains in fp32 and bf16, but fails under fp16.
        """
        optimizer.zero_grad(set_to_none=True)
        self.optimize_calls += 1
        if self.grad_scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(optimizer)

    def step_cost_key(self, step: Step) -> Hashable:
        """What, besides the batch size, makes two training steps cost different FLOPs.

        The harness counts a step's FLOPs (for ``budget: {flops: N}`` and the recorded
        FLOP/s) once for each distinct (batch size, key) and reuses the count. The default,
        None, says every step of a batch size does the same work; override it if
        ``train_step`` does different work on different steps, e.g. return
        ``step.step % 5 == 0`` for a critic updated five times per generator update.
        """
        return None

    # Capability methods: implement those you declare. Inputs and outputs are on the
    # model's device; images are floats in [0, 1] with shape (N, C, H, W).

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Reconstructions of ``x`` in [0, 1] (deterministic: use the posterior mean)."""
        raise NotImplementedError

    # Optional, no capability of their own: a model whose decoder ends in logits may
    # define ``reconstruct_logits(x, y)`` and ``decode_logits(z, y)``, each returning
    # pixel logits (N, C*H*W); ``bce``, ``elbo`` and ``iw_ll`` then score from logits,
    # exactly, instead of from float32 probabilities. A decoder that is not a Bernoulli
    # defines ``decoder_log_prob(x, z, y)`` -> log p(x|z) per image (N,), which ``elbo``,
    # ``bce_sampled`` and ``iw_ll`` then use.

    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of a diagonal Gaussian q(z|x), each (N, latent_dim)."""
        raise NotImplementedError

    def latent(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``LATENT``: a deterministic code of each image, (N, d) floats on the model's device.

        A model with ``POSTERIOR`` has this already: the posterior mean.
        """
        return self.posterior(x, y)[0]

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """``DECODE``: images in [0, 1], (N, C, H, W), from codes ``z`` of ``latent``."""
        raise NotImplementedError

    def sample(self, n: int, labels: Tensor | None = None) -> Tensor:
        """``n`` new images in [0, 1]; a conditional model draws the classes ``labels``.

        Use torch's global random generator: the harness seeds it.
        """
        raise NotImplementedError

    def log_likelihood(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``LIKELIHOOD``: log P(x) of each 8-bit image, in nats, shape (N,).

        ``x`` holds images whose pixels are exactly k/255 (the evaluation split). Follow
        the convention ``self.likelihood`` declares (:data:`genbench.api.likelihood.CONVENTIONS`):
        a probability of discrete pixels, never a continuous density, so every value is at
        most 0. A bound must be a lower bound, declared with ``Likelihood(exact=False)``.
        Random draws (dequantization noise, importance samples) come from torch's global
        generator, which the harness seeds.
        """
        raise NotImplementedError

    def unavailable(self) -> dict[Capability, str]:
        """Declared capabilities this instance does not offer under its options, each with
        the reason; their metrics leave a dash and record the reason. For example a VAE
        with a Bernoulli decoder on grey pixels has no likelihood of the 8-bit image."""
        return {}

    @property
    def fused(self) -> bool | None:
        """``fused=`` for torch's optimizers: True on CPU and CUDA, which have fused
        kernels; None (torch's default choice) elsewhere."""
        return True if self.device.type in ("cpu", "cuda") else None

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (CPU for a model without any)."""
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @classmethod
    def has(cls, capability: Capability) -> bool:
        """Declared, or implied by a declared capability (``POSTERIOR`` implies ``LATENT``)."""
        return capability in expand(cls.capabilities)


def halvings(height: int, width: int, smallest: int = 4, most: int = 4) -> int:
    """How many times a convolutional network can halve an image exactly: while both sides
    are even and the halves stay at least ``smallest``, at most ``most`` times. 28x28: 2
    (28, 14, 7); 16x16: 2; 32x32: 3; 64x64: 4; 30x30: 1. Built-in models pick their depth
    from it, so one suite file works at every size."""
    count = 0
    while count < most and height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= smallest:
        height, width, count = height // 2, width // 2, count + 1
    return count
