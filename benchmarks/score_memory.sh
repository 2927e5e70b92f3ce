#!/usr/bin/env bash
# Peak memory of `genbench score` on folders of 10,000 and 100,000 PNG images: the images
# stream in batches, so the peak grows only by the features kept (128 floats an image).
#   benchmarks/score_memory.sh [SCRATCH]     (writes 110,000 small PNGs under SCRATCH)
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-$(mktemp -d)}"
.venv/bin/python - "$scratch" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from genbench.engine.pluginmanager import get_registry

root = Path(sys.argv[1])
data = get_registry().datasets["fashion_mnist"]
train = None
for count in (10_000, 100_000):
    folder = root / f"pngs{count}"
    if folder.is_dir():
        continue
    folder.mkdir(parents=True)
    if train is None:
        images = data().load("train", None, False).images.numpy()[:, 0]
        train = np.concatenate([images, images])  # 120,000 images
    for i in range(count):
        Image.fromarray(train[i]).save(folder / f"{i:06d}.png")
PY
for count in 10000 100000; do
  rm -rf "$scratch/out$count"
  /usr/bin/time -v .venv/bin/genbench score "$scratch/pngs$count" --dataset fashion_mnist --metrics fid,kid \
    --out "$scratch/out$count" 2>&1 >/dev/null | grep -E "Maximum resident|Elapsed" | sed "s/^/$count images: /"
done
