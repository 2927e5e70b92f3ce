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
    mock_plugins("mock_shaped", register_datasets=lambda register: register(shaped_dataset((3, 27, 27))))
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
    assert len(lines) == 4, err
    for model, index in (("conv_vae", 0), ("flow", 2), ("ddpm", 3), ("gan", 4)):
        assert any(f"runs[{index}].model: model '{model}' cannot take the 3x27x27 images of data set 'shaped'" in line
                   for line in lines), err
    assert "must be even" in err and "Traceback" not in err


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


SMALL = {
    "gan": {"architecture": "dcgan", "hidden_dim": 32, "latent_dim": 8},
    "ddpm": {"channels": 8, "timesteps": 20, "sample_steps": 3, "bound_timesteps": 3},
    "flow": {"steps": [1], "hidden": 8},
    "beta_tc_vae": {"hidden_dim": 32, "latent_dim": 4},
    "pixelcnn": {"channels": 4, "layers": 1},
    "cpixelcnn": {"channels": 4, "layers": 1},
}
SLOW = {"pixelcnn", "cpixelcnn"}  # 4,096 sequential draws per 64x64 sample


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SMALL])
def test_every_other_builtin_model_passes_the_kit_on_grey_28_and_colour_32_and_64(registry, name):
    """test_testing_kit checks the dense models and the conv VAE at their defaults."""
    from genbench.api import options as opt

    cls = registry.models[name]
    check_model(cls, opt.build(cls.Options, SMALL[name])[0], steps=2, batch_size=8)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_the_conv_models_pick_their_depth_from_the_image_size(registry, shape):
    levels = halvings(*shape[1:])
    info = _info(shape)
    gan = registry.models["gan"]
    generator = gan(gan.Options(architecture="dcgan", hidden_dim=32), info).generator
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in generator) == levels
    ddpm = registry.models["ddpm"](registry.models["ddpm"].Options(channels=8), info)
    assert len(ddpm.net.pool) == levels and len(ddpm.net.up) == levels + 1
    flow = registry.models["flow"](registry.models["flow"].Options(steps=(1,), hidden=4), info)
    assert len(flow.levels) == min(levels, 3)
    pixelcnn = registry.models["pixelcnn"](registry.models["pixelcnn"].Options(channels=4), info)
    assert len(pixelcnn.layers) - 1 == {28: 5, 32: 6, 64: 11}[shape[1]]


def test_the_28x28_networks_are_the_networks_they_were(registry):
    """Saved 28x28 models stay loadable: the depth rules give the same layers as before."""
    info = _info((1, 28, 28))
    # (tensors, numbers) in each state_dict, counted with the code before the rules (commit 264893b)
    expected = {("gan", (("architecture", "dcgan"),)): (27, 679685), ("ddpm", ()): (96, 583681),
                ("flow", ()): (144, 360544), ("pixelcnn", ()): (52, 134784)}
    for (name, options), count in expected.items():
        state = registry.models[name](registry.models[name].Options(**dict(options)), info).state_dict()
        assert (len(state), sum(v.numel() for v in state.values())) == count, name
