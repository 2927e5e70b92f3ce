"""Image shapes beyond 28x28 grey: each model says at validate time what it cannot take,
and the conv VAE picks its depth from the image size (issue 29, item 1)."""

from __future__ import annotations

import pytest
import torch

from genbench.api import Dataset, ImageSet, halvings
from genbench.cli import main
from genbench.testing import check_model


def test_halvings_follow_the_image_size():
    assert [halvings(s, s) for s in (28, 16, 32, 64, 30, 7, 8)] == [2, 2, 3, 4, 1, 0, 1]


def shaped_dataset(shape):
    class Shaped(Dataset):
        name = "shaped"
        description = "procedural images of any shape (tests only)"
        image_shape = shape
        class_names = ("a", "b")

        def load(self, split, root, download):
            g = torch.Generator().manual_seed(0 if split == "train" else 1)
            n = 256 if split == "train" else 64
            return ImageSet(torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), torch.arange(n) % 2)
    return Shaped


def test_validate_names_each_model_that_cannot_take_the_shape(mock_plugins, write_suite, capsys):
    mock_plugins("mock_shaped", register_datasets=lambda register: register(shaped_dataset((3, 30, 30))))
    path = write_suite("""
        name: odd
        dataset: {name: shaped}
        budget: {steps: 2}
        metrics: [bce]
        runs:
          - {model: conv_vae}
          - {model: vae}
          - {model: flow}
          - {model: ddpm}
          - {model: gan, options: {architecture: dcgan}}
          - {model: gan, label: dense_gan}
          - {model: pixelcnn}
    """)
    assert main(["validate", str(path), "--no-data"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "cannot take" in line]
    assert len(lines) == 3, err
    for model, index in (("flow", 2), ("ddpm", 3), ("gan", 4)):
        assert any(f"runs[{index}].model: model '{model}' cannot take the 3x30x30 images of data set 'shaped'" in line
                   for line in lines), err
    assert "multiples of 4" in err and "Traceback" not in err


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 30, 30), (3, 32, 32), (3, 64, 64)])
def test_the_conv_vae_takes_every_even_size_at_a_depth_that_follows_it(registry, shape):
    cls = registry.models["conv_vae"]
    check_model(cls, cls.Options(channels=(8, 16), latent_dim=4), image_shape=shape, steps=2, batch_size=8)
    model = cls(cls.Options(channels=(8, 16)), _info(shape))
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64][:halvings(*shape[1:])]
    assert model.feature_shape[1:] == (shape[1] >> len(convs), shape[2] >> len(convs))


def test_the_conv_vae_at_28x28_is_the_network_it_was(registry):
    """The depth rule keeps every saved 28x28 conv VAE loadable: the same layers, in order."""
    model = registry.models["conv_vae"](registry.models["conv_vae"].Options(), _info((1, 28, 28)))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(("encoder", "decoder"))}
    assert shapes == {"encoder.0.weight": (32, 1, 4, 4), "encoder.0.bias": (32,), "encoder.2.weight": (64, 32, 4, 4),
                      "encoder.2.bias": (64,), "decoder.0.weight": (64, 32, 4, 4), "decoder.0.bias": (32,),
                      "decoder.2.weight": (32, 1, 4, 4), "decoder.2.bias": (1,)}


def _info(shape):
    from genbench.api import DataInfo

    return DataInfo(name="x", image_shape=shape, num_classes=2, class_names=("a", "b"), train_size=256)
