"""How fast is genbench's training loop? (issue 11, item 6; not a test: run it by hand)

The same dense VAE (784-400-20, batch 128, Adam 1e-3) trains for one epoch of
Fashion-MNIST's 60,000 images, alternately by genbench's loop (the built-in ``vae``
plugin through ``genbench.engine.train``) and by a plain PyTorch loop over
``DataLoader(TensorDataset)`` with sigmoid + BCE, for several repetitions in one process.
It prints the median images/s of each, their ratio, the bound set by the step's matrix
products timed alone (forward, grad-input and grad-weight of every layer), and the
ceiling of any float32 loop: those products, genbench's optimizer step (fused Adam on the
same parameters) and the reconstruction loss (BCE from logits, forward and backward),
each timed alone, with every other operation free.

    GENBENCH_DATA=../shared/data .venv/bin/python benchmarks/loop.py [--repeats 7] [--threads N]
        [--precision fp32|bf16|fp16] [--compile] [--plain-precision fp32|bf16]

``--precision`` and ``--compile`` apply the suite's ``training:`` settings to genbench's
loop only; the plain loop stays the float32 script it stands for unless
``--plain-precision bf16`` runs its forward pass and loss under the same bf16 autocast,
which separates what the loop gains from what the precision gains.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from genbench.api.dataset import to_float
from genbench.engine.config import DatasetConfig
from genbench.engine import precision
from genbench.engine.data import prepare
from genbench.engine.precision import TrainingOptions
from genbench.engine.pluginmanager import get_registry
from genbench.engine.train import train

HIDDEN, LATENT, BATCH, PIXELS = 400, 20, 128, 784


class PlainVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(PIXELS, HIDDEN)
        self.mean, self.logvar = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)
        self.dec1, self.dec2 = nn.Linear(LATENT, HIDDEN), nn.Linear(HIDDEN, PIXELS)

    def forward(self, x):
        h = F.relu(self.enc(x))
        mean, logvar = self.mean(h), self.logvar(h)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return torch.sigmoid(self.dec2(F.relu(self.dec1(z)))), mean, logvar


def plain_epoch(images: torch.Tensor, seed: int, bf16: bool = False) -> float:
    """One epoch the way a hand-written script does it; returns images/s."""
    torch.manual_seed(seed)
    model = PlainVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(images), batch_size=BATCH, shuffle=True)
    started = time.perf_counter()
    for (x,) in loader:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            recon, mean, logvar = model(x)
            # The loss in float32 (.float() is a no-op without autocast), as genbench's
            # autocast does for its BCE from logits: bf16 would round small probabilities.
            bce = F.binary_cross_entropy(recon.float(), x, reduction="sum")
            kl = -0.5 * torch.sum(1 + logvar.float() - mean.float().pow(2) - logvar.float().exp())
            loss = (bce + kl) / len(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return len(images) / (time.perf_counter() - started)


def genbench_epoch(registry, data, seed: int, training: TrainingOptions) -> float:
    cls = registry.models["vae"]
    torch.manual_seed(seed)
    model = cls(cls.Options(hidden_dim=HIDDEN, latent_dim=LATENT), data.info)
    model.optimizers = model.configure_optimizers()
    wrap = precision.prepare(model, training, torch.device("cpu"))
    result = train(model, data, {"epochs": 1}, BATCH, seed, precision=wrap)
    # All of training's wall time, with the untimed first steps (FLOP count, compilation)
    # the budget clock leaves out: the plain loop's figure includes its first step too.
    return result.used["images"] / (result.used["seconds"] + result.throughput["untimed_seconds"])


def median_seconds(fn, repeats: int, warmup: int = 10) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_bound(repeats: int = 50) -> tuple[float, float]:
    """Images/s if a step cost only its matrix products, and their FLOP/s."""
    layers = [(PIXELS, HIDDEN), (HIDDEN, 2 * LATENT), (LATENT, HIDDEN), (HIDDEN, PIXELS)]
    g = torch.Generator().manual_seed(0)
    work = []
    for i, (m, n) in enumerate(layers):
        x, w, gy = (torch.randn(BATCH, m, generator=g), torch.randn(n, m, generator=g),
                    torch.randn(BATCH, n, generator=g))
        work.append(lambda x=x, w=w: x @ w.t())         # forward
        if i:                                            # the first layer needs no input gradient
            work.append(lambda gy=gy, w=w: gy @ w)       # grad-input
        work.append(lambda gy=gy, x=x: gy.t() @ x)       # grad-weight
    flops = sum(2 * BATCH * m * n for m, n in layers) * 3 - 2 * BATCH * PIXELS * HIDDEN
    step = median_seconds(lambda: [fn() for fn in work], repeats, warmup=1)
    return BATCH / step, flops / step


def optimizer_seconds(registry, data, repeats: int = 200) -> float:
    """Median seconds of one step of the built-in VAE's optimizer (fused Adam), timed alone."""
    cls = registry.models["vae"]
    model = cls(cls.Options(hidden_dim=HIDDEN, latent_dim=LATENT), data.info)
    opt = model.configure_optimizers()["adam"]
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return median_seconds(opt.step, repeats)


def loss_seconds(repeats: int = 200) -> float:
    """Median seconds of the reconstruction loss alone: BCE from logits over a batch,
    forward and backward (every loop computes it, the plain one as sigmoid + BCE)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, PIXELS, generator=g)
    logits = torch.randn(BATCH, PIXELS, generator=g, requires_grad=True)

    def step():
        F.binary_cross_entropy_with_logits(logits, x, reduction="sum").div(BATCH).backward()
        logits.grad = None
    return median_seconds(step, repeats)


class Repetition(NamedTuple):
    genbench: float   # images/s
    plain: float      # images/s
    bound: float      # images/s of the matrix products alone
    flops: float      # their FLOP/s
    optimizer: float  # seconds of one optimizer step alone
    loss: float       # seconds of the loss, forward and backward, alone

    @property
    def ceiling(self) -> float:
        """Images/s of a float32 step that cost only its products, optimizer step and loss."""
        return BATCH / (BATCH / self.bound + self.optimizer + self.loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--plain-precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    training = TrainingOptions(precision=args.precision, compile=args.compile)
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = get_registry()
    data = prepare(registry.datasets["fashion_mnist"](), DatasetConfig(name="fashion_mnist"), torch.device("cpu"),
                   download=False)
    images = to_float(data.train.images).flatten(1)
    rows: list[Repetition] = []
    genbench_epoch(registry, data, 99, training)  # warm-up: allocator, kernels, first FLOP count
    plain_bf16 = args.plain_precision == "bf16"
    plain_epoch(images, 99, plain_bf16)
    for rep in range(args.repeats):
        # Each repetition measures everything back to back, so a shared machine's drifting
        # speed cancels in the per-repetition ratios, whose medians are reported.
        row = Repetition(genbench_epoch(registry, data, rep, training), plain_epoch(images, rep, plain_bf16),
                         *matmul_bound(), optimizer_seconds(registry, data), loss_seconds())
        rows.append(row)
        print(f"repetition {rep + 1}: genbench {row.genbench:,.0f} images/s, plain {row.plain:,.0f} images/s, "
              f"ratio {row.genbench / row.plain:.2f}x, matmul bound {row.bound:,.0f} images/s", flush=True)

    def median(fn):
        return statistics.median(fn(row) for row in rows)

    parameters = sum(p.numel() for p in PlainVAE().parameters())
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repetitions, "
          f"genbench with {training}, plain loop in {args.plain_precision}, medians:")
    print(f"  genbench loop      {median(lambda r: r.genbench):>9,.0f} images/s")
    print(f"  plain loop         {median(lambda r: r.plain):>9,.0f} images/s")
    print(f"  ratio              {median(lambda r: r.genbench / r.plain):>9.2f}x (median of the repetitions' ratios)")
    print(f"  matmul bound       {median(lambda r: r.bound):>9,.0f} images/s ({median(lambda r: r.flops) / 1e9:.0f} "
          f"GFLOP/s); genbench at {median(lambda r: r.genbench / r.bound):.0%} of it")
    print(f"  optimizer step     {median(lambda r: r.optimizer) * 1e3:>9.3f} ms alone (fused Adam, {parameters:,} "
          f"parameters)")
    print(f"  loss               {median(lambda r: r.loss) * 1e3:>9.3f} ms alone (BCE from logits, forward and "
          f"backward)")
    against = (f"{median(lambda r: r.ceiling / r.plain):.2f}x the plain loop" if not plain_bf16
               else "no ratio: the plain loop ran in bf16")
    print(f"  float32 ceiling    {median(lambda r: r.ceiling):>9,.0f} images/s, {against}: products, optimizer step "
          f"and loss alone, every other operation free")


if __name__ == "__main__":
    main()
