#!/usr/bin/env bash
# Install genbench into ./.venv; README.md and .ci/run both use this script.
#   ./install.sh          genbench + Fashion-MNIST from Debian's package where apt is usable
#   ./install.sh --test   genbench + the test tools (tests read data from $GENBENCH_DATA)
# constraints.txt pins the torch/torchvision pair so pip never pulls a newer torch
# (and with it several GB of CUDA packages) on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")"
extras=""
data=1
if [ "${1:-}" = "--test" ]; then extras="[test]"; data=0; fi

python3 -m venv .venv
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".${extras}"

if [ "$data" = 1 ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1 && { $sudo apt-get install -y -q dataset-fashion-mnist \
      || { $sudo apt-get update -q && $sudo apt-get install -y -q dataset-fashion-mnist; }; } >/dev/null 2>&1; then
    echo "install.sh: Fashion-MNIST installed to /usr/share/datasets/fashion-mnist"
  else
    echo "install.sh: could not install Debian's dataset-fashion-mnist; set GENBENCH_DATA to a folder" \
         "holding fashion-mnist/ (genbench also tries a torchvision download when online)" >&2
  fi
fi
echo "install.sh: done; run .venv/bin/genbench --help"
