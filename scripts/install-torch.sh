#!/usr/bin/env bash
# Installs Debian's PyTorch (python3-torch: torch 1.13, the build of the stored reference timing) with
# OpenBLAS for the PyTorch peer of the benchmark suite (bench/torch/unet_timing.py) and its test
# (test/bench.test.ts). Does nothing when /usr/bin/python3 already imports torch and numpy.
set -euo pipefail
if /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" python3-torch python3-numpy libopenblas0-openmp
/usr/bin/python3 -c "import torch; print('torch', torch.__version__)"
