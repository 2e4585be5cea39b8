# syntax=docker/dockerfile:1
# The embplat image: the `platform` CLI, run as Celery worker and migration one-shot by
# docker-compose.yml (`docker compose build`, or `docker build -t embplat:0.1.0 .`).
#
# torch: `pip install torch==2.14.1 torchvision==0.29.1` from PyPI installs the CUDA build on
# Linux x86_64 (a few GB with its nvidia-* wheels). That build also runs on CPU, so one image
# serves both the CPU worker and the `gpu`-profile worker; the GPU driver comes from the host
# through the NVIDIA container toolkit, so no CUDA base image is needed.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EMBPLAT_HOME=/var/lib/embplat \
    TORCH_HOME=/models/torch

# A fixed non-root user. /models exists in the image owned by it, so the named volume mounted
# there starts with that ownership and the worker can write into it.
RUN groupadd --system --gid 10001 embplat \
 && useradd --system --uid 10001 --gid embplat --create-home --home-dir /home/embplat embplat \
 && mkdir -p /var/lib/embplat /models/torch \
 && chown -R embplat:embplat /var/lib/embplat /models

WORKDIR /opt/embplat

# The pinned dependencies (torch included) in their own layer, read from pyproject.toml, so
# editing the source does not reinstall them.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['serve']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY src ./src
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps . \
 && platform --help > /dev/null

USER embplat
ENTRYPOINT ["platform"]
CMD ["worker", "--queues", "gpu,cpu"]
