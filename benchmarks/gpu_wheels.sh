#!/usr/bin/env bash
# Download the cp312 wheels that benchmarks/gpu_check.sh installs on a GPU machine without
# network: the packages eqcg needs that the GPU image lacks (its Python 3.12 holds torch, e3nn,
# torch-geometric, h5py, scipy, pyyaml, tqdm, matplotlib and tensorboard). Their own
# dependencies (numpy, scipy, packaging, pyparsing, typing-extensions) are in that image, so
# --no-deps. The versions are those this project tests with (vesin-torch ships builds for torch
# 2.3-2.14). Into the git-ignored folder given (default .gpu-wheels), about 15 MiB:
#   bash benchmarks/gpu_wheels.sh [DIR]
set -euo pipefail

DIR=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.gpu-wheels"}
PACKAGES=(mdtraj==1.11.1.post2 ase==3.29.0 pymetis==2025.2.2 vesin==0.6.2 vesin-torch==0.6.2)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

mkdir -p "$DIR"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]/#/--platform=}" -d "$DIR" "${PACKAGES[@]}"
ls -l "$DIR"
du -sh "$DIR"
