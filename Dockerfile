# ferronn for CUDA nodes: the CUDA build of torch, ferronn with its dependencies and the shipped models.
#
#   docker build -t ferronn:cuda .                        # add --build-arg WITH_QE=true for ferronn.label/active
#   docker run --gpus all -v /path/to/shared:/opt/shared:ro -v "$PWD/runs:/opt/ferronn/runs" \
#       ferronn:cuda --config recipes/batio3.yaml          # arguments go to `python -m ferronn.train`
#   docker run --gpus all --entrypoint python ferronn:cuda -m ferronn.md --config recipes/batio3_dielectric.yaml
#
# Recipes name ../shared/... for the DFT data: mount it at /opt/shared (beside /opt/ferronn).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG WITH_QE=false

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && if [ "$WITH_QE" = "true" ]; then \
        apt-get install -y --no-install-recommends quantum-espresso libopenblas0-pthread openmpi-bin; fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# torch first, from the CUDA index: otherwise the dependency resolution of ferronn picks a build on its own.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/ferronn
COPY pyproject.toml README.md ./
COPY ferronn ./ferronn
# hadolint ignore=DL3013
RUN pip install ".[wandb]"
COPY recipes ./recipes
COPY checkpoints ./checkpoints

# A non-root user for the runs (uid 10001: the base image's uid 1000 is taken by 'ubuntu'); mounted folders must
# be writable by it (or run with --user).
RUN useradd --create-home --uid 10001 ferronn && mkdir -p runs && chown 10001 runs
USER 10001

ENTRYPOINT ["python", "-m", "ferronn.train"]
CMD ["--help"]
