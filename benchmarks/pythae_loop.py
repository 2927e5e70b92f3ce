"""genbench's training loop against pythae's BaseTrainer and a plain loop, on 3x32x32 colour
(issue 29, item 6; not a test: run it by hand, alone on the machine).

One network, genbench's built-in ``conv_vae`` at 3x32x32 (three stride-2 convolutions
32-64-128, latent 16, mirrored decoder; Bernoulli pixels, Adam 1e-3, batch 64), trains for
the same number of steps over the same ``color_shapes`` images three ways, alternately, in
one process:

- **genbench**: the plugin through ``genbench.engine.train`` (what ``genbench run`` does);
- **pythae**: the same modules wrapped as pythae's ``BaseEncoder``/``BaseDecoder`` in its
  ``VAE`` (BCE reconstruction), trained by ``pythae.trainers.BaseTrainer`` for the same
  epochs (its own DataLoader, logging and end-of-training checkpoint included: what a
  pythae user waits for);
- **plain**: a hand-written loop over ``DataLoader(TensorDataset)``.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'   # pythae from PyPI
    .venv/bin/python benchmarks/pythae_loop.py [--images 10000] [--epochs 1] [--repeats 3]

It prints each repetition's images/s and the medians of the per-repetition ratios.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from genbench.api import DataInfo
from genbench.api.dataset import ImageSet
from genbench.engine.data import DeviceData
from genbench.engine.pluginmanager import get_registry
from genbench.engine.train import train
from genbench.plugins.colorshapes import generate

BATCH, LATENT = 64, 16


def conv_vae(seed: int, info: DataInfo):
    cls = get_registry().models["conv_vae"]
    torch.manual_seed(seed)
    return cls(cls.Options(latent_dim=LATENT), info)


def genbench_run(data: DeviceData, epochs: int, seed: int) -> float:
    model = conv_vae(seed, data.info)
    model.optimizers = model.configure_optimizers()
    result = train(model, data, {"epochs": epochs}, BATCH, seed)
    # all of training's wall time, with the untimed first steps the budget clock leaves out
    return result.used["images"] / (result.used["seconds"] + result.throughput["untimed_seconds"])


def plain_run(images: torch.Tensor, info: DataInfo, epochs: int, seed: int) -> float:
    vae = conv_vae(seed, info)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(images), batch_size=BATCH, shuffle=True, drop_last=True)
    started, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for (x,) in loader:
            mean, logvar = vae.encode(x)
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
            logits = vae.decoder_output(z)
            rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp()) / len(x)
            opt.zero_grad()
            (rec + kl).backward()
            opt.step()
            seen += len(x)
    return seen / (time.perf_counter() - started)


def pythae_run(images: torch.Tensor, info: DataInfo, epochs: int, seed: int) -> float:
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    vae = conv_vae(seed, info)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.encoder, self.to_mean, self.to_logvar = vae.encoder, vae.to_mean, vae.to_logvar

        def forward(self, x):
            h = self.encoder(x)
            return ModelOutput(embedding=self.to_mean(h), log_covariance=self.to_logvar(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.from_z, self.decoder = vae.from_z, vae.decoder

        def forward(self, z):
            logits = self.decoder(self.from_z(z).view(-1, *vae.feature_shape))
            return ModelOutput(reconstruction=torch.sigmoid(logits))

    config = VAEConfig(input_dim=tuple(info.image_shape), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(model_config=config, encoder=Encoder(), decoder=Decoder())
    with tempfile.TemporaryDirectory() as out:
        trainer_config = BaseTrainerConfig(output_dir=out, num_epochs=epochs, learning_rate=1e-3,
                                           per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
                                           optimizer_cls="Adam", steps_saving=None, seed=seed, no_cuda=True)
        dataset = BaseDataset(images, torch.zeros(len(images)))  # what pythae's pipeline hands its trainer
        trainer = BaseTrainer(model=model, train_dataset=dataset, eval_dataset=None, training_config=trainer_config)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return epochs * len(images) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pythae").setLevel(logging.WARNING)
    pixels, labels = generate(args.images, 0)
    images = pixels.float() / 255
    info = DataInfo("color_shapes", (3, 32, 32), 10, tuple(str(k) for k in range(10)), args.images)
    data = DeviceData(info, ImageSet(pixels, labels), ImageSet(pixels[:256], labels[:256]), "test")
    genbench_run(data, 1, 99), plain_run(images[:2048], info, 1, 99), pythae_run(images[:2048], info, 1, 99)  # warm-up
    rows = []
    for rep in range(args.repeats):
        # back to back in each repetition, so a shared machine's drift cancels in the ratios
        row = (genbench_run(data, args.epochs, rep), pythae_run(images, info, args.epochs, rep),
               plain_run(images, info, args.epochs, rep))
        rows.append(row)
        print(f"repetition {rep + 1}: genbench {row[0]:,.0f}, pythae {row[1]:,.0f}, plain {row[2]:,.0f} images/s",
              flush=True)
    med = [statistics.median(r[i] for r in rows) for i in range(3)]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images x {args.epochs} "
          f"epochs of batch {BATCH}, {args.repeats} repetitions, medians:")
    for name, value in zip(("genbench", "pythae", "plain"), med):
        print(f"  {name:<9} {value:>8,.0f} images/s")
    print(f"  genbench / pythae {statistics.median(r[0] / r[1] for r in rows):.2f}x, genbench / plain "
          f"{statistics.median(r[0] / r[2] for r in rows):.2f}x (medians of the repetitions' ratios)")


if __name__ == "__main__":
    main()
