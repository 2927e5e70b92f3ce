#!/usr/bin/env bash
# Install genbench into ./.venv; README.md and .ci/run both use this script.
#   ./install.sh          genbench (with t-SNE and Optuna search support) + Fashion-MNIST from Debian's package
#   ./install.sh --test   genbench + the test tools + Debian's chromium for the report.html test
#                         (tests read data from $GENBENCH_DATA)
# constraints.txt pins the torch/torchvision pair so pip never pulls a newer torch
# (and with it several GB of CUDA packages) on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")"
extras="[tsne,optuna]"
packages="dataset-fashion-mnist"
if [ "${1:-}" = "--test" ]; then extras="[test]"; packages="chromium"; fi

python3 -m venv .venv
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".${extras}"

# Debian packages are optional extras: install them where apt is usable, else say what is missing.
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
  command -v apt-get >/dev/null 2>&1 && { $sudo apt-get install -y -q "$@" \
    || { $sudo apt-get update -q && $sudo apt-get install -y -q "$@"; }; } >/dev/null 2>&1
}
if [ "$packages" = chromium ]; then
  if command -v chromium >/dev/null 2>&1 || apt_install chromium; then
    echo "install.sh: chromium is available for the report.html browser test"
  else
    echo "install.sh: could not install Debian's chromium; the browser test will be skipped" >&2
  fi
elif [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if apt_install dataset-fashion-mnist; then
    echo "install.sh: Fashion-MNIST installed to /usr/share/datasets/fashion-mnist"
  else
    echo "install.sh: could not install Debian's dataset-fashion-mnist; set GENBENCH_DATA to a folder" \
         "holding fashion-mnist/ (genbench also tries a torchvision download when online)" >&2
  fi
fi
echo "install.sh: done; run .venv/bin/genbench --help"
