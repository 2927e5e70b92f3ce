"""Feature extractors for any data set: `genbench extractor train` and torch-fidelity (issue 10, item 9)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from genbench.api import ExtractorSpec
from genbench.api import extractor as ext
from genbench.cli import main


def _train(folder, capsys):
    folder.mkdir()
    out = folder / "ext.pt"
    assert main(["extractor", "train", "synthetic", "--out", str(out), "--epochs", "2", "--batch-size", "64"]) == 0
    return out, capsys.readouterr().out


def test_an_extractor_for_any_data_set(synthetic_dataset, tmp_path, capsys):
    out, printed = _train(tmp_path / "a", capsys)
    sha = ext.file_sha256(out)
    assert f"sha256 {sha}" in printed and "num_classes=4, in_channels=3" in printed
    accuracy = float(printed.split("test accuracy ")[-1].split(";")[0])
    assert accuracy > 0.95  # the synthetic classes are easy
    net = ext.load(ExtractorSpec(out, sha, num_classes=4, in_channels=3))
    images = torch.rand(5, 3, 16, 16)
    features, logits = ext.extract(net, images)
    assert features.shape == (5, ext.FEATURES) and logits.shape == (5, 4)
    again, _ = _train(tmp_path / "b", capsys)  # seeded and deterministic: the same bytes
    assert ext.file_sha256(again) == sha


def test_extractor_train_names_an_unknown_data_set(capsys, tmp_path):
    assert main(["extractor", "train", "mnsit", "--out", str(tmp_path / "x.pt")]) == 2
    assert "data set 'mnsit' is not installed; did you mean 'mnist'?" in capsys.readouterr().err


def test_torch_fidelity_uses_the_shipped_extractors_after_one_call(data_root):
    """README's example, in a fresh process: the same FID as genbench's own computation."""
    code = textwrap.dedent("""
        import genbench
        print(genbench.register_extractors())  # first: it also makes torchvision importable here
        import torch, torch_fidelity
        from genbench.api import fidelity, read_idx, to_float
        from genbench.api import extractor as ext
        from genbench.plugins.datasets import MNIST
        x = torch.from_numpy(read_idx(__import__("pathlib").Path(%r) / "mnist/t10k-images-idx3-ubyte.gz").copy())
        a, b = x[:1000].unsqueeze(1), x[1000:2000].unsqueeze(1)
        class Images(torch.utils.data.Dataset):
            def __init__(self, t): self.t = t
            def __len__(self): return len(self.t)
            def __getitem__(self, i): return self.t[i]
        out = torch_fidelity.calculate_metrics(input1=Images(a), input2=Images(b), fid=True, cuda=False,
                                               feature_extractor="genbench-mnist_v2", verbose=False, batch_size=500)
        net = ext.load(MNIST.extractor)
        ours = fidelity.fid(ext.extract(net, to_float(b))[0], ext.extract(net, to_float(a))[0])
        print(out["frechet_inception_distance"], ours)
    """ % str(data_root))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names, values = proc.stdout.strip().splitlines()[-2:]
    assert names == ("['genbench-color_dsprites_v2', 'genbench-color_shapes_v2', 'genbench-fashion_mnist_v2', "
                     "'genbench-mnist_v2', 'genbench-noisy_dsprites_v2']")
    theirs, ours = map(float, values.split())
    assert abs(theirs - ours) <= 1e-3 * ours and ours > 0


def test_shipped_extractors_have_no_dead_features(registry, data_root):
    """The classifier-only v1 networks had 24 (MNIST) and 16 (Fashion-MNIST) of 128 features
    always zero; v2 takes its features before any activation."""
    for name in ("mnist", "fashion_mnist"):
        cls = registry.datasets[name]
        assert cls.extractor.architecture == "v2"
        assert ext.architecture_of(torch.load(cls.extractor.path, weights_only=True)) == "v2"  # and so is the file
        images = cls().load("test", None, False).images[:2000].float() / 255
        features, logits = ext.extract(ext.load(cls.extractor), images)
        assert int((features.std(0) < 1e-6).sum()) == 0 and features.shape[1] == ext.FEATURES
