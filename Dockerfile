# iVGR recipes on verl 0.9.1: the GPU stack of constraints-gpu.txt (torch CUDA 13 build, vllm,
# flash-attn, transformers) installed by scripts/install_gpu.sh, plus the recipe (pip install -e .).
#
#   docker build -t ivgr .
#   docker run --gpus all --ipc=host --shm-size=16g -v /data:/data -it ivgr \
#       bash -c 'python -m recipe.ivgr.preflight --env && bash scripts/train_ivgr_7b.sh'
#
# Base: nvidia/cuda 13.0.2 devel on Ubuntu 24.04, the base verl's install docs recommend for its
# vllm / fsdp extras (docs/start/install.rst, "Pick a base image"; their docker/Dockerfile.uv.cu130).
# verl's docs name no image built for 0.9.1: docker/README.md points at verlai/verl:vllm024.latest
# (vllm 0.24.0, torch 2.11.0, CUDA 13.0.2), a moving tag without verl installed. As BASE_IMAGE it
# should also work (not tried): the venv sees the image's packages, and the install script keeps its
# torch / vllm / flash-attn where they match the pins.
# The devel image carries nvcc, so the flash-attn source build (no prebuilt wheel) works here too.
ARG BASE_IMAGE=nvidia/cuda:13.0.2-devel-ubuntu24.04
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-dev python3-venv git ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# One venv for everything (Ubuntu 24.04's system Python refuses pip installs); Ray workers inherit it.
# --system-site-packages: on a base that already has parts of the stack, pip keeps what matches.
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN python3 -m venv --system-site-packages "$VIRTUAL_ENV" && python -m pip install --upgrade pip

WORKDIR /workspace/ivgr
# The stack first, from the pins only, so editing the recipe does not rebuild torch / flash-attn.
COPY constraints-gpu.txt requirements.txt ./
COPY scripts/install_gpu.sh scripts/
COPY recipe/__init__.py recipe/
COPY recipe/ivgr/__init__.py recipe/ivgr/envcheck.py recipe/ivgr/
# MAX_JOBS / FLASH_ATTN_CUDA_ARCHS matter only for a flash-attn source build (scripts/README.md)
ARG MAX_JOBS
ARG FLASH_ATTN_CUDA_ARCHS="80;90"
RUN PYTHON=python bash scripts/install_gpu.sh --deps-only

# The recipe, then the check (no GPU during a build: a missing GPU is a warning here; the launch
# scripts run the full check on the node).
COPY . .
RUN PYTHON=python bash scripts/install_gpu.sh --allow-no-gpu

CMD ["bash"]
