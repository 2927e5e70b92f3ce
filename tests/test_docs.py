"""README keeps up with what ships (issue 27, item 5)."""

from __future__ import annotations

from conftest import ROOT


def test_every_shipped_suite_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `suites/")]
    listed = {line.split("`")[1] for line in table}
    shipped = {f"suites/{p.name}" for p in (ROOT / "suites").glob("*.yaml")}
    assert shipped - listed == set(), "add these suites to README's suite table"
    assert listed - shipped == set(), "README lists suites that are not shipped"


def test_the_mnist_message_says_how_to_get_it(registry, tmp_path, monkeypatch):
    import pytest

    from genbench.api import DataNotFound

    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache copy either
    with pytest.raises(DataNotFound) as err:
        registry.datasets["mnist"]().load("train", tmp_path, download=False)
    text = str(err.value)
    assert "no Debian package holds MNIST" in text and "MD5" in text and "$GENBENCH_DATA/mnist/" in text


def test_the_python_examples_run(tmp_path):
    """README's Python examples, as written, in a fresh process (issue 28, item 4)."""
    import re
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    proc = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "'fid'" in out and "sha256" in out and "bce_ci95" in out and "vae[latent_dim=2]" in out
