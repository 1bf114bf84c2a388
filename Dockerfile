# xpnet in a container: the trainer on an NVIDIA CUDA 12 runtime, CuPy from the pinned backends/cuda12.txt
# (cupy-cuda12x[ctk]: CuPy plus NVIDIA's CUDA 12.9 wheels: NVRTC, the CUDA headers, cuBLAS, cuRAND, ...).
#
#   docker build -t xpnet .
#   docker run --gpus all -v "$PWD/data:/data" xpnet --device cuda --epochs 5   # trains on the GPU
#   docker run -v "$PWD/data:/data" xpnet --device cuda --epochs 5              # no GPU: warns, trains on CPU
#   docker run --gpus all --entrypoint xpnet-doctor xpnet                       # what works, and why not
#   docker build --target smoke .                                               # smoke training at build time
#   docker build --build-arg BACKEND=cuda13 \
#     --build-arg BASE_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04 -t xpnet:cuda13 .  # a CUDA 13-only driver
#
# CUDA headers: a -runtime base ships none, and CuPy 14 then compiles no kernel at all ("Failed to find CUDA
# headers"); the [ctk] wheels bring them and NVRTC, so CuPy never needs the base's toolkit. The NVIDIA driver comes
# from the host. The 12.8.1 base's NVIDIA_REQUIRE_CUDA is "cuda>=12.8" plus a list of older
# datacenter driver branches (`docker inspect` shows it): the NVIDIA Container Toolkit refuses to start it on a
# driver that supports less than CUDA 12.8 (older than R570) unless it is one of those branches. The CUDA 12.9 wheels
# run natively on a driver for CUDA 12.9 (R575 or newer), and on R525..R570 only through CUDA minor-version
# compatibility (CuPy compiles cubins, not PTX, which that allows; not measured here). A CUDA 13-only driver (R580+
# with a CUDA 13 image) wants BACKEND=cuda13 and a 13.x base. `xpnet-doctor` prints the driver's CUDA version and the
# CuPy build that matches it. BASE_IMAGE must be Debian/Ubuntu-like with Python 3.11+ (the pinned NumPy and
# Matplotlib need it), so use ubuntu24.04 bases, not ubuntu22.04 (Python 3.10).
# scripts/check_image.sh builds this file with podman from a local Debian base (no registry needed).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# ---- base: the CUDA runtime plus Python 3 and a virtual environment --------------------------------------
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The NVIDIA images ship no Python, so apt installs the release's python3; a base that already has python3
# with venv (e.g. the local Debian base of scripts/check_image.sh) skips apt altogether.
# DL3008 (pin apt versions) is ignored on purpose: the packages come from whatever Ubuntu/Debian release
# BASE_IMAGE is, so a pinned version would fail on every other base; the Python packages are the ones pinned.
# hadolint ignore=DL3008
RUN if python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        echo "base image has $(python3 --version) with venv: skipping apt"; \
    else \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/xpnet
ENV PATH=/opt/xpnet/bin:$PATH \
    VIRTUAL_ENV=/opt/xpnet \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- wheel: build xpnet's wheel with hash-pinned setuptools (backends/build.txt), kept out of the image ----
FROM base AS wheel
COPY backends/build.txt /tmp/backends/build.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/backends/build.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY xpnet ./xpnet
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

# ---- app: pinned dependencies (with hashes), xpnet itself, a non-root user, data on the /data volume ------
FROM base AS app
# cuda12 for the published image; cuda13 (with a 13.x BASE_IMAGE) for a CUDA 13-only driver; BACKEND=cpu gives a
# CPU-only image with the same layout.
ARG BACKEND=cuda12
COPY backends/${BACKEND}.txt /tmp/backends/requirements.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/backends/requirements.txt \
    && rm -rf /tmp/backends
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/xpnet-*.whl \
    && rm -rf /tmp/wheels \
    && useradd --uid 10001 --gid 0 --home-dir /data --no-create-home --shell /usr/sbin/nologin xpnet \
    && mkdir -p /data/cache \
    && chown -R 10001:0 /data \
    && chmod -R g=u /data
# Everything the container writes goes under /data: datasets, runs, and every cache (pip's is off).
ENV HOME=/data \
    XPNET_DATA_DIR=/data \
    XDG_CACHE_HOME=/data/cache \
    MPLCONFIGDIR=/data/cache/matplotlib \
    CUPY_CACHE_DIR=/data/cache/cupy
LABEL org.opencontainers.image.title="xpnet" \
      org.opencontainers.image.description="Deep Learning from Scratch trainer: NumPy on CPU, CuPy on CUDA" \
      org.opencontainers.image.licenses="MIT"
VOLUME ["/data"]
WORKDIR /data
USER 10001:0
# xpnet-train runs as PID 1 and handles SIGTERM like Ctrl-C: it finishes the current step (or the epoch's
# evaluation, if that is under way), saves checkpoint.npz, writes summary.json with status "interrupted" and
# exits 143. `docker stop -t SECONDS` (default 10) must cover that step plus one checkpoint write; on a CPU
# that is well under 10 s for the book's nets (1-1.5 s measured), a big model on a slow volume may need
# `docker stop -t 60` or `docker run --stop-timeout 60`. Past it Docker sends SIGKILL and the run continues
# from the last checkpoint (--checkpoint-every, default 10m, bounds what that loses).
STOPSIGNAL SIGTERM
ENTRYPOINT ["xpnet-train"]

# ---- smoke: `--target smoke` checks the image by running it at build time ---------------------------------
# Builds have no GPU, so this is the image's no-GPU path: with CuPy installed, every xpnet kernel must compile with
# NVRTC for sm_80 (no GPU needed; a missing header fails here, not on the first GPU run); the doctor must find a
# working CPU backend (exit 0) and say why CUDA is unusable; `--device cuda` must then warn and train on the CPU.
# XPNET_OFFLINE=1: no
# download is tried, the bundled MNIST sample is used. SMOKE_ARGS is split into arguments on purpose; an empty
# SMOKE_ARGS runs the doctor only.
FROM app AS smoke
ARG BACKEND=cuda12
ARG SMOKE_ARGS="--device cuda --epochs 1 --limit-train 2000 --quiet --out /tmp/smoke"
# Any new value reruns the smoke step with the layers above cached (scripts/check_image.sh passes the time).
ARG SMOKE_RUN_ID=0
RUN echo "smoke run ${SMOKE_RUN_ID}: xpnet-doctor, then xpnet-train ${SMOKE_ARGS:-(skipped)}" \
    && if [ "${BACKEND}" != cpu ]; then python -m xpnet.cuda_source --arch 80 --dtype float32; fi \
    && xpnet-doctor \
    && if [ -n "${SMOKE_ARGS}" ]; then XPNET_OFFLINE=1 xpnet-train ${SMOKE_ARGS}; fi

# ---- runtime: the default target (last stage), the image `docker build -t xpnet .` produces --------------
FROM app AS runtime
