"""`image_folder`: any folder of images as a data set (issue 29, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.cli import main
from genbench.plugins import imagefolder
from genbench.plugins.imagefolder import ImageFolder, ImageFolderOptions
from genbench.testing import check_dataset


def make_folder(root, per_class=(6, 5, 4), size=(24, 16), mode="RGB", seed=0):
    """Class sub-folders of random images (width x height ``size``)."""
    rng = np.random.default_rng(seed)
    for c, count in enumerate(per_class):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{i}.png")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from genbench.api import dataset

    monkeypatch.setattr(dataset, "CACHE_DIR", tmp_path / "cache")
    return tmp_path / "cache"


def test_a_folder_of_class_folders_loads_split_by_class_and_cached(tmp_path, cache, monkeypatch):
    folder = make_folder(tmp_path / "imgs")
    options = ImageFolderOptions(path=str(folder), size=16, test_fraction=0.25)
    check_dataset(ImageFolder, options)
    data = ImageFolder(options)
    train, test = data.load("train", None, False), data.load("test", None, False)
    assert train.images.shape[1:] == (3, 16, 16) and len(train) + len(test) == 15
    assert sorted(test.labels.tolist()) == [0, 0, 1, 2]  # a quarter of each class, at least one
    # centre crop of a 24x16 image to 16x16: the middle columns, no resampling
    original = np.asarray(Image.open(folder / "class0" / "0.png")).transpose(2, 0, 1)[:, :, 4:20].copy()
    everything = torch.cat([train.images, test.images])
    assert any(torch.equal(torch.from_numpy(original), im) for im in everything)
    assert len(list(cache.rglob("*.npz"))) == 1
    # the second load reads the cache; a changed file is decoded again
    real_decode = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", lambda *a: pytest.fail("decoded again"))
    assert torch.equal(ImageFolder(options).load("test", None, False).images, test.images)
    monkeypatch.setattr(imagefolder, "decode", real_decode)
    Image.new("RGB", (24, 16), (9, 9, 9)).save(folder / "class2" / "0.png")
    assert len(list(cache.rglob("*.npz"))) == 1
    ImageFolder(options).load("train", None, False)
    assert len(list(cache.rglob("*.npz"))) == 2


def test_a_split_file_and_a_flat_folder(tmp_path, cache):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(5):
        Image.new("L", (8, 8), i * 40).save(folder / f"{i}.png")
    (tmp_path / "test.txt").write_text("1.png\n3.png\n")
    data = ImageFolder(ImageFolderOptions(path=str(folder), size=8, channels=1, split_file=str(tmp_path / "test.txt")))
    test = data.load("test", None, False)
    assert test.images[:, 0, 0, 0].tolist() == [40, 120] and test.labels.tolist() == [0, 0]
    (tmp_path / "test.txt").write_text("nope.png\n")
    with pytest.raises(Exception, match="lists 'nope.png', which is not an image"):
        ImageFolder(ImageFolderOptions(path=str(folder), size=8, channels=1,
                                       split_file=str(tmp_path / "test.txt"))).load("test", None, False)


def _bad(kind, folder):
    if kind == "no images":
        (folder / "class0").mkdir(parents=True)
        (folder / "class0" / "notes.txt").write_text("no images here")
        return folder
    make_folder(folder, per_class=(3, 3))
    target = folder / "class1" / "2.png"
    if kind == "grey beside RGB":
        Image.new("L", (24, 16)).save(target)
    elif kind == "RGBA":
        Image.new("RGBA", (24, 16)).save(target)
    elif kind == "16-bit":
        Image.fromarray(np.zeros((16, 24), dtype=np.uint16)).save(target)
    elif kind == "truncated":
        target.write_bytes(target.read_bytes()[:60])
    elif kind == "not an image":
        target.write_text("hello")
    elif kind == "mixed layout":
        Image.new("RGB", (24, 16)).save(folder / "stray.png")
    return target


@pytest.mark.parametrize("kind, expected", [("grey beside RGB", "image mode L"), ("RGBA", "image mode RGBA"),
                                            ("16-bit", "image mode I;16"), ("truncated", "not a readable image"),
                                            ("not an image", "not a readable image"),
                                            ("mixed layout", "both in it (stray.png) and in sub-folders"),
                                            ("no images", "no .png")])
def test_bad_folders_are_one_line_naming_the_file(tmp_path, cache, write_suite, capsys, kind, expected):
    target = _bad(kind, tmp_path / "imgs")
    path = write_suite(f"""
        name: folder
        dataset: {{name: image_folder, options: {{path: '{tmp_path / "imgs"}', size: 16}}}}
        budget: {{steps: 1}}
        metrics: [bce]
        runs: [{{model: conv_vae}}]
    """)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert (str(target) in err) or kind == "mixed layout"
    assert list(cache.rglob("*.npz")) == []  # nothing half-written


def test_a_suite_trains_on_a_folder_and_validate_checks_the_chosen_size(tmp_path, cache, write_suite, capsys):
    make_folder(tmp_path / "imgs", per_class=(12, 12))
    suite = """
        name: folder
        dataset: {{name: image_folder, options: {{path: '{path}', size: {size}}}}}
        budget: {{steps: 3}}
        batch_size: 8
        metrics: [bce, ssim]
        runs: [{{model: {model}}}]
    """
    odd = write_suite(suite.format(path=tmp_path / "imgs", size=27, model="flow"), "odd.yaml")
    assert main(["validate", str(odd), "--no-data"]) == 2
    assert "cannot take the 3x27x27 images of data set 'image_folder'" in capsys.readouterr().err
    ok = write_suite(suite.format(path=tmp_path / "imgs", size=16, model="conv_vae"), "ok.yaml")
    assert main(["run", str(ok), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "figures" / "reconstructions.png").is_file()
