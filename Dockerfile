# distilserve images. Targets:
#   cpu     onnxruntime on CPU (the default target)
#   gpu     onnxruntime-gpu with the CUDA / cuDNN runtime libraries from NVIDIA's pip wheels
#   export  torch + transformers; builds the model directory that the runtime targets copy
# Neither runtime target contains torch. See docs/deploy.md.
#
#   docker build --target cpu -t distilserve:cpu .
#   docker build --target gpu -t distilserve:gpu .
#   docker build --target cpu --build-arg MODEL_SOURCE=distilbert-base-uncased -t distilserve:distilbert .

# Any Debian bookworm (python3 3.11) image works: a registry mirror or a locally imported rootfs.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# --- export: torch (CPU) + transformers; writes /models/default -------------------------------
FROM python-base AS export
# torch first and pinned to the CPU build: any other spec pulls gigabytes of CUDA wheels.
ARG TORCH_VERSION=2.13.0
# Empty it when the CPU wheel comes from a local wheelhouse (PIP_FIND_LINKS) instead.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python3 -m venv /opt/export \
    && /opt/export/bin/pip install "torch==${TORCH_VERSION}" \
       ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"}
# Dependencies from pyproject.toml alone (empty packages, built outside /src so no stale build/
# output survives), so a code change reuses this layer.
COPY pyproject.toml /tmp/deps/
RUN mkdir /tmp/deps/app /tmp/deps/model_export \
    && touch /tmp/deps/app/__init__.py /tmp/deps/model_export/__init__.py \
    && /opt/export/bin/pip install "/tmp/deps[cpu,export]" \
    && /opt/export/bin/pip uninstall -y distilserve \
    && rm -rf /tmp/deps
# Only the exporter: a change to the server does not re-export the model.
WORKDIR /src
COPY model_export ./model_export
# Empty: the offline default, two models (the fill-mask demo and all-MiniLM-L6-v2), each in its own
# directory under /models/default, which the server reads as a model repository.
# Otherwise a Hugging Face hub id (the build needs network) or a checkpoint directory inside this
# stage, exported into /models/default/model. A model exported elsewhere is better mounted at
# /models/default at run time (docs/deploy.md).
ARG MODEL_SOURCE=""
# With MODEL_SOURCE: the variants to export (empty: fp32, fp16 and int8, leaving out a variant that
# misses its gate). The offline default's variants are fixed by its build.
ARG MODEL_VARIANTS=""
ENV HF_HOME=/tmp/hf \
    PYTHONPATH=/src
RUN if [ -z "${MODEL_SOURCE}" ]; then \
        /opt/export/bin/python -m model_export.default_model build --out /models/default \
        && rm -rf /models/default/*-checkpoint /models/default/*.stamp.json; \
    else \
        /opt/export/bin/python -m model_export "${MODEL_SOURCE}" \
            --out /models/default/model ${MODEL_VARIANTS:+--variants "${MODEL_VARIANTS}"}; \
    fi \
    && rm -rf /tmp/hf

# --- runtime dependencies: large, and rebuilt only when pyproject.toml changes -----------------
FROM python-base AS deps-cpu
COPY pyproject.toml /tmp/deps/
RUN mkdir /tmp/deps/app /tmp/deps/model_export \
    && touch /tmp/deps/app/__init__.py /tmp/deps/model_export/__init__.py \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install "/tmp/deps[cpu]" \
    && /opt/venv/bin/pip uninstall -y distilserve pip \
    && rm -rf /tmp/deps

FROM python-base AS deps-gpu
COPY pyproject.toml /tmp/deps/
# onnxruntime-gpu's `cuda` and `cudnn` extras install NVIDIA's CUDA runtime, cuBLAS, cuFFT, cuRAND
# and cuDNN 9 as wheels (CUDA 13 for onnxruntime-gpu 1.31), so the image needs no CUDA base image,
# only the host driver that the NVIDIA Container Toolkit mounts. For hosts on a CUDA 12 driver
# pin an older build, e.g. --build-arg ORT_GPU='onnxruntime-gpu[cuda,cudnn]==1.22.0'.
ARG ORT_GPU="onnxruntime-gpu[cuda,cudnn]"
# The libraries are linked into one directory on LD_LIBRARY_PATH, where onnxruntime's dlopen finds them.
RUN mkdir /tmp/deps/app /tmp/deps/model_export \
    && touch /tmp/deps/app/__init__.py /tmp/deps/model_export/__init__.py \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install "/tmp/deps[gpu]" "${ORT_GPU}" \
    && /opt/venv/bin/pip uninstall -y distilserve pip \
    && rm -rf /tmp/deps \
    && mkdir -p /opt/cuda-libs \
    && find /opt/venv/lib/python3*/site-packages/nvidia -name 'lib*.so*' -exec ln -sf {} /opt/cuda-libs/ \;

# --- the server's code: a small last layer, so a code change rebuilds nothing big --------------
FROM python-base AS source
WORKDIR /opt/distilserve
COPY app ./app
COPY model_export ./model_export
# The default model's training inputs are export-time only; the server never reads them.
# Bytecode is compiled here because the read-only root filesystem cannot take it at run time.
RUN rm -f model_export/default_model/*.safetensors \
    && python3 -m compileall -q --invalidation-mode unchecked-hash app model_export

# --- runtime targets ----------------------------------------------------------------------------
FROM python-base AS runtime
RUN groupadd --system --gid 10001 distilserve \
    && useradd --system --uid 10001 --gid distilserve --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin distilserve
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/opt/distilserve \
    HOME=/tmp \
    DISTILSERVE_MODEL_DIR=/models/default \
    DISTILSERVE_CACHE_DIR=/tmp/distilserve
EXPOSE 8000
# Nothing is written outside /tmp (mount it as tmpfs/emptyDir with a read-only root filesystem).
VOLUME ["/tmp"]
USER 10001:10001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
# No --model-dir here: a flag would win over DISTILSERVE_MODEL_DIR from compose or a ConfigMap.
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS gpu
COPY --from=deps-gpu /opt/venv /opt/venv
COPY --from=deps-gpu /opt/cuda-libs /opt/cuda-libs
COPY --from=export /models/default /models/default
COPY --from=source /opt/distilserve /opt/distilserve
# fp16 is what the server picks on CUDA; set DISTILSERVE_STRICT_PROVIDERS=true to refuse to start
# when CUDA is not usable instead of falling back to the CPU.
ENV LD_LIBRARY_PATH=/opt/cuda-libs \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DISTILSERVE_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
# Reported by /info as `sha` and `docker_label`: --build-arg BUILD_SHA=$(git rev-parse HEAD).
ARG BUILD_SHA=unknown
ARG DOCKER_LABEL=distilserve:gpu
# podman/buildah reuse a cached ENV layer when only the ARG it reads changed (buildah#5501);
# a RUN that reads the ARGs keys the cache on their values.
RUN echo "distilserve ${DOCKER_LABEL} ${BUILD_SHA}"
LABEL org.opencontainers.image.revision=${BUILD_SHA}
ENV DISTILSERVE_BUILD_SHA=${BUILD_SHA} \
    DISTILSERVE_DOCKER_LABEL=${DOCKER_LABEL}

# The default target (last stage) is the CPU image.
FROM runtime AS cpu
ENV DISTILSERVE_PROVIDERS=CPUExecutionProvider
COPY --from=deps-cpu /opt/venv /opt/venv
COPY --from=export /models/default /models/default
COPY --from=source /opt/distilserve /opt/distilserve
# Reported by /info as `sha` and `docker_label`: --build-arg BUILD_SHA=$(git rev-parse HEAD).
ARG BUILD_SHA=unknown
ARG DOCKER_LABEL=distilserve:cpu
# podman/buildah reuse a cached ENV layer when only the ARG it reads changed (buildah#5501);
# a RUN that reads the ARGs keys the cache on their values.
RUN echo "distilserve ${DOCKER_LABEL} ${BUILD_SHA}"
LABEL org.opencontainers.image.revision=${BUILD_SHA}
ENV DISTILSERVE_BUILD_SHA=${BUILD_SHA} \
    DISTILSERVE_DOCKER_LABEL=${DOCKER_LABEL}
