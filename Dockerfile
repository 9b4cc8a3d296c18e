# syntax=docker/dockerfile:1.6
# bioner: CPU image by default; `--target gpu` builds the CUDA variant.
#
#   docker build -t bioner .                                   # CPU, python:3.11-slim base
#   docker build --target gpu -t bioner:gpu .                  # onnxruntime-gpu on a CUDA runtime base
#   docker build --build-arg BASE=localhost/bookworm-py311 .   # any Debian-like base with python3 + venv
#
# Behind a TLS-intercepting proxy, give pip the CA bundle as a build secret (never stored in a layer):
#   docker build --secret id=pipcert,src=/etc/ssl/certs/ca-certificates.crt .

ARG BASE=python:3.11-slim-bookworm
ARG CUDA_BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- CPU builder: venv with the serving deps only
FROM ${BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY service ./service
COPY train ./train
# The lock pins every serving dependency to the versions the tests and the README's examples ran with.
RUN --mount=type=secret,id=pipcert,required=false \
    if [ -f /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi; \
    /opt/venv/bin/pip install --no-compile -c requirements/serving.lock . \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3*/site-packages/pip /opt/venv/lib/python3*/site-packages/train

# ---------------------------------------------------------------- GPU variant: onnxruntime-gpu on CUDA + cuDNN
FROM ${CUDA_BASE} AS gpu-builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY service ./service
COPY train ./train
# onnxruntime-gpu is pinned to the CPU lock's onnxruntime version: the same kernels' release.
RUN --mount=type=secret,id=pipcert,required=false \
    if [ -f /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi; \
    /opt/venv/bin/pip install --no-compile -c requirements/serving.lock . && /opt/venv/bin/pip uninstall -y onnxruntime \
    && /opt/venv/bin/pip install --no-compile --force-reinstall --no-deps \
       "onnxruntime-gpu==$(sed -n 's/^onnxruntime==//p' requirements/serving.lock)" \
    && rm -rf /opt/venv/lib/python3*/site-packages/pip /opt/venv/lib/python3*/site-packages/train

FROM ${CUDA_BASE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home bioner
COPY --from=gpu-builder /opt/venv /opt/venv
COPY models/bioner-minilm-jnlpba /app/models/bioner-minilm-jnlpba
COPY models/bioner-minilm-joint /app/models/bioner-minilm-joint
COPY models/bioner-minilm-l3-jnlpba /app/models/bioner-minilm-l3-jnlpba
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 \
    BIONER_HOST=0.0.0.0 BIONER_PORT=8000 BIONER_PROVIDER=cuda \
    BIONER_MODELS_DIR=/app/models BIONER_DEFAULT_MODEL=bioner-minilm-joint
USER 10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os,sys,urllib.request as u; sys.exit(0 if u.urlopen(f\"http://127.0.0.1:{os.environ.get('BIONER_PORT','8000')}/ready\", timeout=2).status == 200 else 1)"]
ENTRYPOINT ["bioner", "serve"]

# ---------------------------------------------------------------- CPU runtime (default target: last stage)
FROM ${BASE} AS cpu
RUN (command -v useradd >/dev/null && useradd --system --uid 10001 --no-create-home bioner) \
    || echo "bioner:x:10001:10001::/nonexistent:/usr/sbin/nologin" >> /etc/passwd
COPY --from=builder /opt/venv /opt/venv
COPY models/bioner-minilm-jnlpba /app/models/bioner-minilm-jnlpba
COPY models/bioner-minilm-joint /app/models/bioner-minilm-joint
COPY models/bioner-minilm-l3-jnlpba /app/models/bioner-minilm-l3-jnlpba
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 \
    BIONER_HOST=0.0.0.0 BIONER_PORT=8000 BIONER_PROVIDER=cpu \
    BIONER_MODELS_DIR=/app/models BIONER_DEFAULT_MODEL=bioner-minilm-joint
USER 10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os,sys,urllib.request as u; sys.exit(0 if u.urlopen(f\"http://127.0.0.1:{os.environ.get('BIONER_PORT','8000')}/ready\", timeout=2).status == 200 else 1)"]
ENTRYPOINT ["bioner", "serve"]
