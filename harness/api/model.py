"""The model plugin interface.

The harness owns the training loop, the device, the seeds, the budget clock and the
evaluation. A model plugin owns its networks, optimizers and losses: the harness calls
:meth:`Model.train_step` once per batch and never looks inside. What a model can be
scored on follows from the capabilities it declares, never from its name.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import ClassVar

import torch
from torch import Tensor, nn


class Capability(str, enum.Enum):
    """What a trained model can do; metrics and figures apply only where present."""

    RECONSTRUCT = "reconstruct"  # reconstruct(x, y) -> images in [0, 1]
    POSTERIOR = "posterior"      # posterior(x, y) -> (mean, log-variance) of q(z|x)
    SAMPLE = "sample"            # sample(n, labels) -> images in [0, 1]
    CONDITIONAL = "conditional"  # reconstruct/posterior/sample use the class label


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model may know about the data before it sees any."""

    name: str
    image_shape: tuple[int, int, int]  # channels, height, width
    num_classes: int
    class_names: tuple[str, ...]
    train_size: int

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

    def __init__(self, options, data: DataInfo):
        super().__init__()
        self.options = options
        self.data = data
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Create the optimizers (called once, after the move to the device).

        Return them by name; a GAN returns two. They are saved with the model.
        """
        raise NotImplementedError

    def train_step(self, batch: Batch, step: Step) -> dict[str, Tensor]:
        """Run one optimisation step (all of it: losses, backward, optimizer steps).

        Return the loss components as detached scalar tensors; the key ``"loss"`` is
        the one shown in the progress bar and plotted first. Returning tensors, not
        floats, lets the harness avoid a device sync on every step.
        """
        raise NotImplementedError

    # Capability methods: implement those you declare. Inputs and outputs are on the
    # model's device; images are floats in [0, 1] with shape (N, C, H, W).

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Reconstructions of ``x`` in [0, 1] (deterministic: use the posterior mean)."""
        raise NotImplementedError

    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of a diagonal Gaussian q(z|x), each (N, latent_dim)."""
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Images in [0, 1] decoded from latent codes ``z`` (models with a posterior)."""
        raise NotImplementedError

    def sample(self, n: int, labels: Tensor | None = None) -> Tensor:
        """``n`` new images in [0, 1]; a conditional model draws the classes ``labels``.

        Use torch's global random generator: the harness seeds it.
        """
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (CPU for a model without any)."""
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @classmethod
    def has(cls, capability: Capability) -> bool:
        return capability in cls.capabilities
